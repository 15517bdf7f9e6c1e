//! Times `BlockStore::put_block` on blocks of transfers the real state machine executed, the
//! shape of `kumo bench node`'s load: `--blocks` blocks of `--txs` sends from 1,000 accounts.
//! Prints JSON: `{"blocks", "txs_per_block", "put_ms_mean", "put_us_per_tx"}`.
//!
//! `cargo run --release -p kumo-blockstore --example put_bench -- [BLOCKS] [TXS] [INDEX_BATCH]`

use std::time::Instant;

use kumo_blockstore::{BlockMeta, BlockRecord, BlockStore};
use kumo_chain::testkit::{Actor, FEE, Harness};
use kumo_types::Msg;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let blocks = args.next().unwrap_or(60);
    let per_block = args.next().unwrap_or(2000);
    let index_batch = args.next().unwrap_or(kumo_blockstore::INDEX_BATCH);
    let mut actors: Vec<Actor> = (0..1000).map(Actor::numbered).collect();
    let addrs: Vec<_> = actors.iter().map(|a| a.addr).collect();
    let mut h = Harness::new(&addrs, "1000000000000ukumo");
    let mut records = Vec::new();
    let mut parent = [0u8; 32];
    eprintln!("executing {blocks} blocks of {per_block} sends");
    for b in 0..blocks {
        let txs: Vec<Vec<u8>> = (0..per_block)
            .map(|i| {
                let n = (b * per_block + i) % actors.len();
                let to = addrs[(n + 1) % addrs.len()];
                actors[n].sign(
                    FEE,
                    vec![Msg::Send {
                        to,
                        amount: "1ukumo".parse().expect("coins"),
                    }],
                )
            })
            .collect();
        let r = h.block(&txs);
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&r.height.to_be_bytes());
        records.push(BlockRecord::from_execution(
            BlockMeta {
                height: r.height,
                hash,
                parent,
                time_ms: r.height * 250,
                proposer: [9; 32],
                state_root: r.root,
            },
            &txs,
            &r.txs,
            &r.end_events,
        ));
        parent = hash;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path().join("blocks.redb"))
        .expect("open")
        .with_index_batch(index_batch);
    let start = Instant::now();
    for r in &records {
        store.put_block(r).expect("put");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"blocks\":{blocks},\"txs_per_block\":{per_block},\"put_ms_mean\":{:.2},\"put_us_per_tx\":{:.2}}}",
        secs * 1000.0 / blocks as f64,
        secs * 1e6 / (blocks * per_block) as f64
    );
}
