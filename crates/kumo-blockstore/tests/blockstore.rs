//! The block store against blocks the real state machine executed.

use kumo_blockstore::{
    BlockMeta, BlockRecord, BlockStore, BlockStoreError, EventCursor, ExecutedBlock, Put,
    StoredEvent, TxCode,
};
use kumo_chain::testkit::{Actor, FEE, Harness};
use kumo_types::Msg;

/// A chain with two funded actors, and the blocks it produced.
struct Chain {
    h: Harness,
    alice: Actor,
    bob: Actor,
    parent: [u8; 32],
}

impl Chain {
    fn new() -> Chain {
        let alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        Chain {
            // Enough for ~500,000 fees, short of the 999,999,999,999 a test fails to send.
            h: Harness::new(&[alice.addr, bob.addr], "100000000000ukumo"),
            alice,
            bob,
            parent: [0; 32],
        }
    }

    /// Runs a block of `txs` and returns its record.
    fn block(&mut self, txs: Vec<Vec<u8>>) -> BlockRecord {
        let (meta, r) = self.execute(&txs);
        BlockRecord::from_execution(meta, &txs, &r.txs, &r.end_events)
    }

    /// Runs a block of `txs` and returns its header and what execution returned.
    fn execute(&mut self, txs: &[Vec<u8>]) -> (BlockMeta, kumo_chain::BlockResult) {
        let r = self.h.block(txs);
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&r.height.to_be_bytes());
        let meta = BlockMeta {
            height: r.height,
            hash,
            parent: self.parent,
            time_ms: 1_700_000_000_000 + r.height * 250,
            proposer: [9; 32],
            state_root: r.root,
        };
        self.parent = hash;
        (meta, r)
    }

    fn send(&mut self, from_alice: bool, amount: &str) -> Vec<u8> {
        let (a, to) = if from_alice {
            (&mut self.alice, self.bob.addr)
        } else {
            (&mut self.bob, self.alice.addr)
        };
        a.sign(
            FEE,
            vec![Msg::Send {
                to,
                amount: amount.parse().unwrap(),
            }],
        )
    }
}

/// Every event from height 1, read `limit` at a time, each page resuming at the last one's end.
fn every_page(store: &BlockStore, limit: usize) -> Vec<StoredEvent> {
    let mut got = Vec::new();
    let mut cursor = EventCursor::at_height(1);
    loop {
        let page = store.events(cursor, limit).unwrap();
        assert!(page.len() <= limit);
        let Some(last) = page.last() else {
            return got;
        };
        cursor = last.next_cursor();
        got.extend(page);
    }
}

fn open(dir: &tempfile::TempDir) -> BlockStore {
    BlockStore::open(dir.path().join("blocks.redb")).unwrap()
}

#[test]
fn roundtrip_block_txs_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.latest_height().unwrap(), None);
    let mut c = Chain::new();
    let ok = c.send(true, "5ukumo");
    let failed = c.send(true, "999999999999ukumo");
    let mut stale = c.alice.clone();
    stale.nonce = 0;
    let rejected = stale.sign(FEE, vec![Msg::DeleteProvider]);
    let b = c.block(vec![ok.clone(), failed.clone(), rejected.clone()]);
    assert_eq!(store.put_block(&b).unwrap(), Put::Written);

    assert_eq!(store.latest_height().unwrap(), Some(1));
    assert_eq!(store.block(1).unwrap().as_ref(), Some(&b));
    assert_eq!(store.block_by_hash(&b.hash).unwrap().as_ref(), Some(&b));
    assert_eq!(store.block(2).unwrap(), None);
    let header = store.header(1).unwrap().unwrap();
    assert_eq!(
        (
            header.height,
            header.hash,
            header.state_root,
            header.tx_count
        ),
        (1, b.hash, b.state_root, 3)
    );
    assert_eq!(store.header(2).unwrap(), None);
    assert_eq!(store.block_by_hash(&[0xee; 32]).unwrap(), None);

    let codes: Vec<TxCode> = [&ok, &failed, &rejected]
        .iter()
        .map(|t| {
            let (h, rec) = store.tx(&kumo_types::tx::tx_hash(t)).unwrap().unwrap();
            assert_eq!(h, 1);
            assert_eq!(&rec.bytes, *t);
            rec.result.code
        })
        .collect();
    assert_eq!(codes, [TxCode::Ok, TxCode::Failed, TxCode::Rejected]);
    let (_, rej) = store
        .tx(&kumo_types::tx::tx_hash(&rejected))
        .unwrap()
        .unwrap();
    assert_eq!(rej.result.error.unwrap().kind, "nonce");
    let (_, f) = store
        .tx(&kumo_types::tx::tx_hash(&failed))
        .unwrap()
        .unwrap();
    let err = f.result.error.unwrap();
    assert_eq!((err.kind.as_str(), err.msg_index), ("msg_failed", Some(0)));
    assert_eq!(f.result.sender, Some(c.alice.addr));

    // Summaries: the same places and outcomes, without bytes and events; unknown hashes none.
    let hashes: Vec<_> = [&ok, &failed, &rejected, &vec![0u8]]
        .iter()
        .map(|t| kumo_types::tx::tx_hash(t))
        .collect();
    let summaries = store.tx_summaries(&hashes).unwrap();
    let full = store.txs(&hashes).unwrap();
    assert!(summaries[3].is_none() && full[3].is_none());
    for (s, f) in summaries.iter().zip(&full).take(3) {
        let ((sh, s), (fh, f)) = (s.as_ref().unwrap(), f.as_ref().unwrap());
        assert_eq!(
            (sh, s.index, s.code, &s.error),
            (fh, f.index, f.result.code, &f.result.error)
        );
    }

    // Events: the ok tx's fee and transfer, the failed tx's fee; in order, numbered.
    let events = store.events(EventCursor::at_height(0), 100).unwrap();
    let expected: Vec<StoredEvent> = b.events().collect();
    assert_eq!(events, expected);
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.index as usize == i && e.height == 1)
    );
    assert_eq!(events[0].tx_hash, Some(kumo_types::tx::tx_hash(&ok)));
    assert_eq!(events[2].tx_hash, Some(kumo_types::tx::tx_hash(&failed)));
    assert!(store.tx(&[0; 32]).unwrap().is_none());
}

#[test]
fn replaying_a_height_is_a_no_op_and_a_different_block_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut c = Chain::new();
    let tx = c.send(true, "5ukumo");
    let b1 = c.block(vec![tx]);
    let b2 = c.block(vec![]);
    store.put_block(&b1).unwrap();
    store.put_block(&b2).unwrap();
    let events_before = store.events(EventCursor::default(), 100).unwrap();

    // A node that crashed after writing block 1 replays it.
    assert_eq!(store.put_block(&b1).unwrap(), Put::AlreadyStored);
    assert_eq!(store.put_block(&b2).unwrap(), Put::AlreadyStored);
    assert_eq!(
        store.events(EventCursor::default(), 100).unwrap(),
        events_before
    );
    assert_eq!(store.block(1).unwrap().unwrap(), b1);
    assert_eq!(store.latest_height().unwrap(), Some(2));

    let mut forged = b1.clone();
    forged.time_ms += 1;
    let err = store.put_block(&forged).unwrap_err();
    assert!(
        matches!(err, BlockStoreError::Conflict { height: 1 }),
        "{err}"
    );
    assert_eq!(store.block(1).unwrap().unwrap(), b1);
}

/// The node's path (`put_executed`, from execution's output, borrowed) stores exactly what
/// `put_block` stores for the same block's record: ok, failed and rejected transactions, their
/// events, the end-of-block events, every read.
#[test]
fn an_executed_block_is_stored_as_its_record_is() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (by_record, by_execution) = (open(&dirs.0), open(&dirs.1));
    let mut c = Chain::new();
    let mut all = Vec::new();
    for round in 0..3 {
        let ok = c.send(true, "5ukumo");
        let failed = c.send(false, "999999999999ukumo");
        let mut stale = c.alice.clone();
        stale.nonce = 0;
        let rejected = stale.sign(FEE, vec![Msg::DeleteProvider]);
        let txs = match round {
            0 => vec![ok, failed, rejected],
            1 => vec![],
            _ => (0..70).map(|_| c.send(round % 2 == 0, "1ukumo")).collect(),
        };
        let (meta, r) = c.execute(&txs);
        let hashes: Vec<[u8; 32]> = txs.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
        let executed = ExecutedBlock {
            meta: &meta,
            txs: &txs,
            tx_hashes: &hashes,
            results: &r.txs,
            end_events: &r.end_events,
        };
        let record = executed.to_record();
        assert_eq!(by_record.put_block(&record).unwrap(), Put::Written);
        assert_eq!(by_execution.put_executed(&executed).unwrap(), Put::Written);
        assert_eq!(
            by_execution.block(meta.height).unwrap(),
            Some(record.clone())
        );
        // Replays, either way, are no-ops; a different block at the height is refused.
        assert_eq!(
            by_execution.put_executed(&executed).unwrap(),
            Put::AlreadyStored
        );
        assert_eq!(by_execution.put_block(&record).unwrap(), Put::AlreadyStored);
        let later = BlockMeta {
            time_ms: meta.time_ms + 1,
            ..meta.clone()
        };
        let forged = ExecutedBlock {
            meta: &later,
            ..executed
        };
        assert!(matches!(
            by_execution.put_executed(&forged).unwrap_err(),
            BlockStoreError::Conflict { .. }
        ));
        all.extend(hashes);
    }
    assert_eq!(
        by_execution.txs(&all).unwrap(),
        by_record.txs(&all).unwrap()
    );
    assert_eq!(every_page(&by_execution, 7), every_page(&by_record, 7));
    assert!(!every_page(&by_record, 100).is_empty());
}

#[test]
fn a_gap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut c = Chain::new();
    let b1 = c.block(vec![]);
    let _b2 = c.block(vec![]);
    let b3 = c.block(vec![]);
    store.put_block(&b1).unwrap();
    let err = store.put_block(&b3).unwrap_err();
    assert!(matches!(err, BlockStoreError::Gap { last: 1, got: 3 }));
    assert!(err.to_string().contains("write block 2 first"), "{err}");
    assert_eq!(store.latest_height().unwrap(), Some(1));
    assert_eq!(store.block(3).unwrap(), None);
}

#[test]
fn a_block_that_contradicts_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut c = Chain::new();
    let tx = c.send(true, "5ukumo");
    let mut b = c.block(vec![tx]);
    b.txs[0].index = 4;
    assert!(matches!(
        store.put_block(&b).unwrap_err(),
        BlockStoreError::Invalid { height: 1, .. }
    ));
    assert_eq!(store.latest_height().unwrap(), None);
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new();
    let blocks: Vec<BlockRecord> = (0..3)
        .map(|i| {
            let tx = c.send(i % 2 == 0, "7ukumo");
            c.block(vec![tx])
        })
        .collect();
    {
        let store = open(&dir);
        for b in &blocks {
            store.put_block(b).unwrap();
        }
    }
    let store = open(&dir);
    assert_eq!(store.latest_height().unwrap(), Some(3));
    for b in &blocks {
        assert_eq!(store.block(b.height).unwrap().as_ref(), Some(b));
        assert_eq!(store.block_by_hash(&b.hash).unwrap().as_ref(), Some(b));
        assert_eq!(store.tx(&b.txs[0].hash).unwrap().unwrap().0, b.height);
    }
    let all: Vec<StoredEvent> = blocks.iter().flat_map(|b| b.events()).collect();
    assert_eq!(store.events(EventCursor::default(), 1000).unwrap(), all);
    // And it goes on from where it was.
    let next = c.block(vec![]);
    assert_eq!(store.put_block(&next).unwrap(), Put::Written);
}

#[test]
fn events_page_in_order_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut c = Chain::new();
    let mut all = Vec::new();
    for i in 0..6 {
        let txs = (0..i % 3).map(|k| c.send(k % 2 == 0, "1ukumo")).collect();
        let b = c.block(txs);
        all.extend(b.events());
        store.put_block(&b).unwrap();
    }
    assert!(all.len() > 8, "enough events to page: {}", all.len());
    for limit in [1, 2, 3, 5] {
        assert_eq!(every_page(&store, limit), all, "limit {limit}");
    }
    // From a height: only that height's and later events.
    let from3 = store.events(EventCursor::at_height(3), 1000).unwrap();
    assert!(from3.iter().all(|e| e.height >= 3));
    assert_eq!(
        from3.len(),
        all.iter().filter(|e| e.height >= 3).count(),
        "every event from height 3"
    );
}

#[test]
fn a_replayed_tx_keeps_pointing_at_the_inclusion_that_took_effect() {
    // The hash index is written in batches: check it written with every block (1), with a
    // replay pending while what it replays is written (3), all from memory (1000), and after a
    // restart that read the unwritten hashes back.
    for batch in [1, 3, 1000] {
        for reopen in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut store = open(&dir).with_index_batch(batch);
            let mut c = Chain::new();
            let first = c.send(true, "5ukumo");
            let early = c.send(true, "6ukumo");
            // `early` comes before its turn: rejected (nonce), then included again and ok.
            let b1 = c.block(vec![early.clone()]);
            let b2 = c.block(vec![first.clone(), early.clone()]);
            // A proposer includes the same bytes again: rejected (stale nonce).
            let b3 = c.block(vec![first.clone(), early.clone()]);
            assert_eq!(b1.txs[0].result.code, TxCode::Rejected);
            assert_eq!(b3.txs[0].result.code, TxCode::Rejected);
            for b in [&b1, &b2, &b3] {
                store.put_block(b).unwrap();
            }
            if reopen {
                drop(store);
                store = open(&dir).with_index_batch(batch);
            }
            let what = format!("batch {batch}, reopened {reopen}");
            for (tx, index) in [(&first, 0), (&early, 1)] {
                let (h, rec) = store.tx(&kumo_types::tx::tx_hash(tx)).unwrap().unwrap();
                assert_eq!(
                    (h, rec.index, rec.result.code),
                    (2, index, TxCode::Ok),
                    "{what}"
                );
            }
            // A hash only ever rejected points at its first inclusion.
            let never = c.send(false, "1ukumo");
            let skip = c.send(false, "1ukumo");
            let b4 = c.block(vec![skip.clone()]);
            let b5 = c.block(vec![skip.clone()]);
            store.put_block(&b4).unwrap();
            store.put_block(&b5).unwrap();
            let (h, rec) = store.tx(&kumo_types::tx::tx_hash(&skip)).unwrap().unwrap();
            assert_eq!((h, rec.result.code), (4, TxCode::Rejected), "{what}");
            assert!(
                store
                    .tx(&kumo_types::tx::tx_hash(&never))
                    .unwrap()
                    .is_none()
            );
        }
    }
}

#[test]
fn merged_index_runs_keep_every_hash_and_the_inclusion_that_took_effect() {
    // A flush with every block: 100 runs, merged FAN_IN at a time, and the merged runs again.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new();
    let mut blocks = Vec::new();
    let first = c.send(true, "5ukumo");
    let early = c.send(true, "6ukumo");
    // Alice's second transaction before her first: rejected (nonce), included again later.
    blocks.push(c.block(vec![early.clone()]));
    let mut stale = c.bob.clone();
    let mut replay = None;
    for height in 2..=100u64 {
        let txs = match height {
            41 => vec![first.clone(), early.clone()],
            // The same bytes again: rejected (stale nonce).
            81 => vec![first.clone(), early.clone()],
            10 => {
                // Signed with a nonce Bob has used: rejected here and again at 90.
                stale.nonce = 0;
                let tx = stale.sign(FEE, vec![Msg::DeleteProvider]);
                replay = Some(tx.clone());
                vec![tx, c.send(false, "1ukumo")]
            }
            90 => vec![replay.clone().unwrap()],
            // Alice sends again once her earlier nonces are used.
            h => vec![c.send(h > 41 && h % 2 == 0, "1ukumo")],
        };
        blocks.push(c.block(txs));
    }
    assert_eq!(blocks[40].txs[1].result.code, TxCode::Ok);
    assert_eq!(blocks[80].txs[1].result.code, TxCode::Rejected);
    assert_eq!(blocks[89].txs[0].result.code, TxCode::Rejected);

    let check = |store: &BlockStore| {
        let want = |tx: &[u8], height: u64, index: u32, code: TxCode| {
            let (h, rec) = store.tx(&kumo_types::tx::tx_hash(tx)).unwrap().unwrap();
            assert_eq!((h, rec.index, rec.result.code), (height, index, code));
        };
        want(&first, 41, 0, TxCode::Ok);
        want(&early, 41, 1, TxCode::Ok);
        want(replay.as_ref().unwrap(), 10, 0, TxCode::Rejected);
        for b in &blocks {
            for t in &b.txs {
                let (h, rec) = store.tx(&t.hash).unwrap().unwrap();
                if t.result.code == TxCode::Ok {
                    assert_eq!((h, &rec), (b.height, t));
                }
            }
        }
        let stats = store.index_stats().unwrap();
        // Blocks of 1–2 hashes: at most FAN_IN - 1 runs of each of three size classes.
        assert!(stats.runs < 3 * (kumo_blockstore::FAN_IN - 1), "{stats:?}");
        // Each hash once per run it is in: a replay in another run until they merge.
        let all: Vec<_> = blocks
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.hash))
            .collect();
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        let held = stats.indexed as usize + stats.pending;
        assert!(distinct.len() <= held && held <= all.len(), "{stats:?}");
    };
    {
        let store = open(&dir).with_index_batch(1);
        for b in &blocks {
            store.put_block(b).unwrap();
        }
        check(&store);
        assert!(store.index_stats().unwrap().runs > 1);
    }
    check(&open(&dir).with_index_batch(1));
}

#[test]
fn every_hash_is_found_before_and_after_the_index_is_written_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new();
    let blocks: Vec<BlockRecord> = (0..7)
        .map(|i| {
            let txs = (0..3).map(|k| c.send((i + k) % 2 == 0, "1ukumo")).collect();
            c.block(txs)
        })
        .collect();
    let check = |store: &BlockStore, upto: usize| {
        for b in &blocks[..upto] {
            let hashes: Vec<[u8; 32]> = b.txs.iter().map(|t| t.hash).collect();
            for (t, found) in b.txs.iter().zip(store.txs(&hashes).unwrap()) {
                let (h, rec) = found.expect("every stored tx is found by hash");
                assert_eq!((h, &rec), (b.height, t));
            }
        }
    };
    {
        // 7 hashes per flush: a flush every third block, the last blocks' hashes unflushed.
        let store = open(&dir).with_index_batch(7);
        for (i, b) in blocks.iter().enumerate() {
            store.put_block(b).unwrap();
            check(&store, i + 1);
        }
        // Dropped without a word, as after `kill -9`.
    }
    check(&open(&dir).with_index_batch(7), blocks.len());
    // An old store without the mark counts as fully indexed; here the mark is kept, so a
    // default store (a larger batch) reads the same back.
    check(&open(&dir), blocks.len());
}

#[test]
fn waiting_look_ups_find_every_tx_at_or_above_their_floor() {
    // What a client waiting for its commit asks: hashes admitted when `since` was the last
    // committed height. Flushes every third block, so some answers come from the runs, some
    // from the pending hashes.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new();
    let store = open(&dir).with_index_batch(7);
    let mut blocks: Vec<BlockRecord> = Vec::new();
    for i in 0..9 {
        let txs = (0..3).map(|k| c.send((i + k) % 2 == 0, "1ukumo")).collect();
        let b = c.block(txs);
        store.put_block(&b).unwrap();
        blocks.push(b);
        // 7 hashes per flush, 3 per block: every third block flushes.
        let flushed_through = 3 * (blocks.len() as u64 / 3);
        for since in 0..=blocks.len() as u64 + 1 {
            for b in &blocks {
                let hashes: Vec<[u8; 32]> = b.txs.iter().map(|t| t.hash).collect();
                let found = store.tx_summaries_since(&hashes, since).unwrap();
                for (t, found) in b.txs.iter().zip(found) {
                    if b.height >= since {
                        let (h, s) = found.expect("a tx at or above the floor is found");
                        assert_eq!((h, s.code), (b.height, t.result.code));
                        let (h, rec) = store.tx_since(&t.hash, since).unwrap().unwrap();
                        assert_eq!((h, &rec), (b.height, t));
                    } else if since > flushed_through && b.height <= flushed_through {
                        // Flushed before the floor: not searched.
                        assert_eq!(found, None, "block {} since {since}", b.height);
                    }
                }
            }
        }
    }
}

#[test]
fn json_shape_uses_hex() {
    let mut c = Chain::new();
    let tx = c.send(true, "5ukumo");
    let b = c.block(vec![tx.clone()]);
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["txs"][0]["bytes"], hex::encode(&tx));
    assert_eq!(v["hash"], hex::encode(b.hash));
    assert_eq!(v["txs"][0]["result"]["code"], "ok");
    assert_eq!(
        v["txs"][0]["result"]["sender"],
        c.alice.addr.to_string().as_str()
    );
    let back: BlockRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back, b);
}

#[test]
fn readers_racing_the_writer_find_every_stored_hash() {
    // A writer stores blocks (the index written every few blocks) while readers look up the
    // hashes of every block already stored: none may be missing, before, during or after the
    // write of the index.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new();
    let blocks: Vec<BlockRecord> = (0..40)
        .map(|i| {
            let txs = (0..4).map(|k| c.send((i + k) % 2 == 0, "1ukumo")).collect();
            c.block(txs)
        })
        .collect();
    let store = std::sync::Arc::new(open(&dir).with_index_batch(10));
    let stored = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, stored, blocks) = (store.clone(), stored.clone(), blocks.clone());
            std::thread::spawn(move || {
                let mut checks = 0;
                loop {
                    let upto = stored.load(std::sync::atomic::Ordering::SeqCst);
                    let hashes: Vec<[u8; 32]> = blocks[..upto]
                        .iter()
                        .flat_map(|b| b.txs.iter().map(|t| t.hash))
                        .collect();
                    let found = store.txs(&hashes).unwrap();
                    assert!(
                        found.iter().all(Option::is_some),
                        "a stored hash is missing"
                    );
                    checks += 1;
                    if upto == blocks.len() {
                        return checks;
                    }
                }
            })
        })
        .collect();
    for (i, b) in blocks.iter().enumerate() {
        store.put_block(b).unwrap();
        stored.store(i + 1, std::sync::atomic::Ordering::SeqCst);
    }
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

/// Blocks are stored 64 transactions and 64 events to a row: blocks whose transactions and
/// events span several rows read back whole, one by one, by hash, page by page and after a
/// reopen.
#[test]
fn blocks_larger_than_a_row_read_back_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new();
    let mut blocks = Vec::new();
    // 0, 1, 64, 65 and 150 transactions (each with a fee and a transfer event).
    for n in [0usize, 1, 64, 65, 150] {
        let txs = (0..n).map(|k| c.send(k % 2 == 0, "1ukumo")).collect();
        blocks.push(c.block(txs));
    }
    let all: Vec<StoredEvent> = blocks.iter().flat_map(|b| b.events()).collect();
    let per_block: Vec<usize> = blocks.iter().map(|b| b.events().count()).collect();
    assert_eq!(
        per_block,
        [0, 2, 128, 130, 300],
        "every transaction pays and sends"
    );
    {
        let store = open(&dir).with_index_batch(100);
        for b in &blocks {
            store.put_block(b).unwrap();
        }
    }
    // Reopened: the hashes past the index's mark are read back from the rows.
    let store = open(&dir);
    for b in &blocks {
        assert_eq!(store.block(b.height).unwrap().as_ref(), Some(b));
        let hashes: Vec<_> = b.txs.iter().map(|t| t.hash).collect();
        for (t, found) in b.txs.iter().zip(store.txs(&hashes).unwrap()) {
            assert_eq!(found, Some((b.height, t.clone())));
        }
    }
    for limit in [1, 7, 64, 100, 1000] {
        assert_eq!(every_page(&store, limit), all, "limit {limit}");
    }
    // A cursor in the middle of a row, in a later row, past a block's end.
    let last = blocks.last().unwrap();
    for from in [0u32, 63, 64, 65, 200, 299, 300, 10_000] {
        let cursor = EventCursor {
            height: last.height,
            index: from,
        };
        let expected: Vec<_> = last.events().skip(from as usize).take(5).collect();
        assert_eq!(store.events(cursor, 5).unwrap(), expected, "from {from}");
    }
}

/// A store written with another table layout is refused at open with an error saying so, and
/// left as it was.
#[test]
fn a_store_of_another_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    {
        let store = BlockStore::open(&path).unwrap();
        store.put_block(&Chain::new().block(vec![])).unwrap();
    }
    {
        let db = redb::Database::open(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .remove("layout")
            .unwrap();
        w.commit().unwrap();
    }
    let e = BlockStore::open(&path).unwrap_err();
    assert!(matches!(e, BlockStoreError::Layout { found: 1 }), "{e}");
    assert!(e.to_string().contains("fresh home"), "{e}");
}
