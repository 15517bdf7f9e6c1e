//! A block's transactions and events stored [`CHUNK`] to a row.
//!
//! One redb row per transaction and per event made `put_block` rebuild a B-tree leaf for every
//! row: about three inserts per transaction, most of the cost of storing a block. Rows of
//! [`CHUNK`] items cut the inserts by that factor and keep reads of one item cheap: a row is
//! the item count, each item's end offset, then the items (each an `encoding.rs` value), so an
//! item is a slice of its row, found without decoding the others.
//!
//! Item `i` of a block is at key `(height, i / CHUNK)`, position `i % CHUNK`.

/// Items per row.
pub(crate) const CHUNK: u32 = 64;

/// The row key and the position within the row of item `index` of block `height`.
pub(crate) fn locate(height: u64, index: u32) -> ((u64, u32), usize) {
    ((height, index / CHUNK), (index % CHUNK) as usize)
}

/// Builds rows of [`CHUNK`] items: `push` each item's encoding in order, `finish` when a row is
/// full or the items end.
#[derive(Default)]
pub(crate) struct RowBuilder {
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl RowBuilder {
    /// Adds the next item: `write` appends its bytes.
    pub(crate) fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        // A row holds 64 items of at most a block's size: far below 4 GiB.
        self.ends.push(self.bytes.len() as u32);
    }

    /// Whether the row has [`CHUNK`] items.
    pub(crate) fn is_full(&self) -> bool {
        self.ends.len() == CHUNK as usize
    }

    /// Whether the row has no items.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The row's bytes; the builder is empty again.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut row = Vec::with_capacity(4 + 4 * self.ends.len() + self.bytes.len());
        row.extend_from_slice(&(self.ends.len() as u32).to_le_bytes());
        for end in &self.ends {
            row.extend_from_slice(&end.to_le_bytes());
        }
        row.extend_from_slice(&self.bytes);
        self.ends.clear();
        self.bytes.clear();
        row
    }
}

/// A stored row, read.
pub(crate) struct Row<'a> {
    ends: &'a [u8],
    items: &'a [u8],
}

impl<'a> Row<'a> {
    /// Checks the row's frame (its items are checked when decoded).
    pub(crate) fn parse(row: &'a [u8]) -> Result<Row<'a>, String> {
        let count = row
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or("a row shorter than its count")?;
        if count > CHUNK as usize {
            return Err(format!("a row of {count} items (at most {CHUNK})"));
        }
        let ends = row
            .get(4..4 + 4 * count)
            .ok_or("a row shorter than its offsets")?;
        let items = &row[4 + 4 * count..];
        let r = Row { ends, items };
        let mut last = 0;
        for i in 0..count {
            let end = r.end(i);
            if end < last || end > items.len() {
                return Err(format!("item {i} of a row ends at {end}, out of order"));
            }
            last = end;
        }
        if last != items.len() {
            return Err("a row with bytes after its last item".into());
        }
        Ok(r)
    }

    fn end(&self, i: usize) -> usize {
        u32::from_le_bytes(self.ends[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize
    }

    /// How many items it holds.
    pub(crate) fn len(&self) -> usize {
        self.ends.len() / 4
    }

    /// Item `i`, if the row has it.
    pub(crate) fn get(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.len() {
            return None;
        }
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        Some(&self.items[start..self.end(i)])
    }

    /// Its items in order, from position `from`.
    pub(crate) fn items_from(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        (from..self.len()).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_give_back_each_item() {
        let items: Vec<Vec<u8>> = (0..150u32)
            .map(|i| vec![i as u8; (i % 7) as usize])
            .collect();
        let mut b = RowBuilder::default();
        let mut rows = Vec::new();
        for it in &items {
            b.push_with(|row| row.extend_from_slice(it));
            if b.is_full() {
                rows.push(b.finish());
            }
        }
        if !b.is_empty() {
            rows.push(b.finish());
        }
        assert_eq!(rows.len(), 3);
        for (i, it) in items.iter().enumerate() {
            let ((h, chunk), pos) = locate(9, i as u32);
            assert_eq!(h, 9);
            let row = Row::parse(&rows[chunk as usize]).unwrap();
            assert_eq!(row.get(pos), Some(it.as_slice()));
        }
        let last = Row::parse(&rows[2]).unwrap();
        assert_eq!(last.len(), 150 - 128);
        assert_eq!(last.get(150 - 128), None);
        assert_eq!(last.items_from(20).count(), 2);
    }

    #[test]
    fn damaged_rows_are_refused() {
        let mut b = RowBuilder::default();
        b.push_with(|row| row.extend_from_slice(b"abc"));
        b.push_with(|row| row.extend_from_slice(b"de"));
        let row = b.finish();
        assert!(Row::parse(&row).is_ok());
        assert!(Row::parse(&row[..3]).is_err());
        assert!(Row::parse(&row[..row.len() - 1]).is_err());
        let mut longer = row.clone();
        longer.push(0);
        assert!(Row::parse(&longer).is_err());
        let mut swapped = row.clone();
        swapped[4..8].copy_from_slice(&9u32.to_le_bytes());
        assert!(Row::parse(&swapped).is_err());
        let mut many = row;
        many[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(Row::parse(&many).is_err());
    }
}
