//! The end of a block costs O(accounts that run dry in it), not O(leases): counted in store
//! operations, which unlike timings are the same on every machine.

use std::cell::Cell;

use kumo_chain::{App, MemStore, StateRoot, Store, bench::escrow_world};

/// A store that counts its operations.
struct Counting {
    inner: MemStore,
    ops: Cell<[usize; 4]>,
}

impl Counting {
    fn bump(&self, i: usize) {
        let mut o = self.ops.get();
        o[i] += 1;
        self.ops.set(o);
    }
}

impl Store for Counting {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.bump(0);
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.bump(1);
        self.inner.put(key, value);
    }
    fn delete(&mut self, key: &[u8]) {
        self.bump(2);
        self.inner.delete(key);
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.bump(3);
        let r = self.inner.scan_prefix(prefix);
        // Count every entry a scan returns as a read too: a scan that grew with the state would
        // show up here.
        let mut o = self.ops.get();
        o[0] += r.len();
        self.ops.set(o);
        r
    }
}

impl StateRoot for Counting {
    fn root(&mut self) -> [u8; 32] {
        self.inner.root()
    }
}

/// Store operations of the end of each of `blocks` blocks in which 2 accounts run dry.
fn end_block_ops(leases: u32, blocks: u32) -> Vec<[usize; 4]> {
    let (mut h, first_dry) = escrow_world(leases, blocks, 2);
    h.advance_to(first_dry - 1);
    let mut app = App::load(Counting {
        inner: h.app.into_store(),
        ops: Cell::new([0; 4]),
    })
    .unwrap();
    (0..blocks)
        .map(|_| {
            app.begin_block(app.height() + 1).unwrap();
            let before = app.store().ops.get();
            let events = app.end_block().unwrap();
            assert_eq!(
                events
                    .iter()
                    .filter(|e| matches!(e.event, kumo_chain::Event::LeaseClosed { .. }))
                    .count(),
                2
            );
            let after = app.store().ops.get();
            std::array::from_fn(|i| after[i] - before[i])
        })
        .collect()
}

#[test]
fn end_block_work_does_not_grow_with_the_number_of_leases() {
    let small = end_block_ops(20, 3);
    let large = end_block_ops(1500, 3);
    assert_eq!(
        small, large,
        "end_block did more store work with more leases"
    );
    // And it is small: a few dozen operations for two closures.
    let total: usize = large[0].iter().sum();
    assert!(total < 100, "{large:?}");
}
