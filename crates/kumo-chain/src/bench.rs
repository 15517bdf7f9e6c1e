//! Benchmarks of the state machine, as `kumo bench chain|escrow -o json` reports them.
//!
//! - [`chain`]: a realistic mix of signed marketplace transactions (sends, deployments, bids,
//!   leases, withdrawals) executed end to end in blocks (batch signature verification included,
//!   state-root computation excluded: that is the node's store's cost), beside the rate at
//!   which the same signatures verify, one by one and in one batch per block, measured in the
//!   same run. The ratio is against the batch rate: the physical limit of executing blocks
//!   whose signatures are checked in batches, as a node's are.
//! - [`escrow`]: the time of `end_block` with 100 and with 100,000 active leases, a few of which
//!   run dry in each measured block.
//!
//! Run them in release mode: `cargo run --release -p kumo-chain --example bench -- chain`.

use std::time::Instant;

use kumo_types::{Coin, Dec, DecCoin, DeploymentId, Msg, tx::TxEnvelope};
use serde::Serialize;

use crate::testkit::{Actor, FEE, Harness, group, provider_fields};

/// Output of [`chain`].
#[derive(Debug, Clone, Serialize)]
pub struct ChainBench {
    /// Signed transactions executed per second.
    pub txs_per_sec: f64,
    /// Single ed25519 verifications per second.
    pub sig_verifications_per_sec: f64,
    /// ed25519 verifications per second in one batch per block (as execution does them).
    pub batch_verifications_per_sec: f64,
    /// `txs_per_sec / batch_verifications_per_sec`: how close execution comes to verifying the
    /// block's signatures and nothing else (at most about 1; goal: ≥ 0.5).
    pub ratio: f64,
}

/// Output of [`escrow`].
#[derive(Debug, Clone, Serialize)]
pub struct EscrowBench {
    /// Median `end_block` time with 100 active leases, in milliseconds.
    pub end_block_ms_100: f64,
    /// Median `end_block` time with 100,000 active leases, in milliseconds.
    pub end_block_ms_100000: f64,
    /// `end_block_ms_100000 / end_block_ms_100` (goal: ≤ 2).
    pub ratio: f64,
}

/// Size of the [`chain`] benchmark.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Tenants; each sends, deploys, leases once per round.
    pub tenants: u32,
    /// Providers; they bid (two per order) and withdraw.
    pub providers: u32,
    /// Rounds of three blocks each.
    pub rounds: u32,
    /// Verify each block's signatures in one batch (as a node does); `false` verifies them one
    /// by one.
    pub batch_verify: bool,
}

impl Default for ChainConfig {
    fn default() -> ChainConfig {
        ChainConfig {
            tenants: 300,
            providers: 10,
            rounds: 8,
            batch_verify: true,
        }
    }
}

/// Runs the transaction-throughput benchmark.
pub fn chain(cfg: &ChainConfig) -> ChainBench {
    chain_with_progress(cfg, &|_| {})
}

/// [`chain`], telling `progress` what it is doing before each long step.
pub fn chain_with_progress(cfg: &ChainConfig, progress: &dyn Fn(&str)) -> ChainBench {
    progress(&format!(
        "signing {} rounds of transactions for {} tenants and {} providers",
        cfg.rounds, cfg.tenants, cfg.providers
    ));
    let mut tenants: Vec<Actor> = (0..cfg.tenants).map(Actor::numbered).collect();
    let mut providers: Vec<Actor> = (0..cfg.providers)
        .map(|i| Actor::numbered(1_000_000 + i))
        .collect();
    let addrs: Vec<_> = tenants.iter().chain(&providers).map(|a| a.addr).collect();
    let mut h = Harness::new(&addrs, "1000000000000000ukumo,1000000000000000uusd");
    let setup: Vec<Vec<u8>> = providers
        .iter_mut()
        .map(|p| {
            p.sign(
                FEE,
                vec![Msg::CreateProvider(provider_fields(&[(
                    "region", "us-west",
                )]))],
            )
        })
        .collect();
    h.block(&setup);

    // Build every block first (signing is the client's cost), then time execution only.
    let nt = tenants.len();
    let np = providers.len();
    let mut blocks: Vec<Vec<Vec<u8>>> = Vec::new();
    for round in 1..=u64::from(cfg.rounds) {
        let mut deploy = Vec::new();
        for (i, t) in tenants.iter_mut().enumerate() {
            let to = kumo_types::Address::from_public_key(
                &Actor::numbered(((i + 1) % nt) as u32).key.public_key(),
            );
            deploy.push(t.sign(
                FEE,
                vec![Msg::Send {
                    to,
                    amount: "1000ukumo".parse().expect("coins"),
                }],
            ));
            deploy.push(t.sign(
                FEE,
                vec![Msg::CreateDeployment {
                    id: DeploymentId {
                        owner: t.addr,
                        dseq: round,
                    },
                    groups: vec![group("web", &[("region", "us-west")], "1000uusd")],
                    hash: [round as u8; 32],
                    deposit: Coin::new("uusd", 5_000_000),
                }],
            ));
        }
        let mut bids = Vec::new();
        for (i, t) in tenants.iter().enumerate() {
            let order = DeploymentId {
                owner: t.addr,
                dseq: round,
            }
            .group(1)
            .order(1);
            for k in 0..2 {
                let p = &mut providers[(i + k) % np];
                bids.push(p.sign(
                    FEE,
                    vec![Msg::CreateBid {
                        order,
                        price: DecCoin::new("uusd", Dec::from_int(900 - 10 * k as u64)),
                        deposit: Coin::new("ukumo", 500_000),
                        gpus: vec![],
                    }],
                ));
            }
        }
        let mut leases = Vec::new();
        for (i, t) in tenants.iter_mut().enumerate() {
            let order = DeploymentId {
                owner: t.addr,
                dseq: round,
            }
            .group(1)
            .order(1);
            let winner = providers[i % np].addr;
            leases.push(t.sign(
                FEE,
                vec![Msg::CreateLease {
                    bid: order.bid(winner),
                }],
            ));
            if round > 1 {
                let prev = DeploymentId {
                    owner: t.addr,
                    dseq: round - 1,
                }
                .group(1)
                .order(1)
                .bid(winner);
                leases.push(providers[i % np].sign(FEE, vec![Msg::WithdrawLease { id: prev }]));
            }
        }
        blocks.extend([deploy, bids, leases]);
    }

    let total: usize = blocks.iter().map(Vec::len).sum();
    progress(&format!(
        "executing {total} transactions, then verifying their signatures"
    ));
    let start = Instant::now();
    for txs in &blocks {
        let height = h.next_height();
        let results = if cfg.batch_verify {
            h.app.execute_txs(height, txs).expect("heights follow").0
        } else {
            h.app.begin_block(height).expect("heights follow");
            let r: Vec<_> = txs.iter().map(|t| h.app.deliver_tx(t)).collect();
            h.app.end_block().expect("block open");
            r
        };
        for r in &results {
            let ok = r.as_ref().map(|r| r.result.is_ok()).unwrap_or(false);
            assert!(ok, "benchmark tx failed: {r:?}");
        }
    }
    let exec = start.elapsed().as_secs_f64();

    let envelopes: Vec<TxEnvelope<'_>> = blocks
        .iter()
        .flatten()
        .map(|t| TxEnvelope::parse(t, usize::MAX).expect("well formed"))
        .collect();
    let start = Instant::now();
    for e in &envelopes {
        e.signer()
            .verify(e.signed_bytes(), &e.signature())
            .expect("valid signature");
    }
    let verify = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for txs in &blocks {
        let block: Vec<TxEnvelope<'_>> = txs
            .iter()
            .map(|t| TxEnvelope::parse(t, usize::MAX).expect("well formed"))
            .collect();
        for r in kumo_types::tx::verify_batch(&block) {
            r.expect("valid signature");
        }
    }
    let batch_verify = start.elapsed().as_secs_f64();

    let txs_per_sec = total as f64 / exec;
    let batch_verifications_per_sec = total as f64 / batch_verify;
    ChainBench {
        txs_per_sec,
        sig_verifications_per_sec: envelopes.len() as f64 / verify,
        batch_verifications_per_sec,
        ratio: txs_per_sec / batch_verifications_per_sec,
    }
}

/// Size of the [`escrow`] benchmark.
#[derive(Debug, Clone)]
pub struct EscrowConfig {
    /// The small population.
    pub small: u32,
    /// The large population.
    pub large: u32,
    /// Measured blocks per population.
    pub blocks: u32,
    /// Accounts running dry in each measured block.
    pub dry_per_block: u32,
    /// Evict the CPU caches (by writing a 128 MiB buffer) before each measured `end_block`,
    /// as the rest of a node's work between two blocks would. Off by default: the warm
    /// measurement favours the small state, whose every byte stays in cache.
    pub cold_cache: bool,
}

impl Default for EscrowConfig {
    fn default() -> EscrowConfig {
        EscrowConfig {
            small: 100,
            large: 100_000,
            blocks: 31,
            dry_per_block: 3,
            cold_cache: false,
        }
    }
}

/// A chain with `n` active leases (one per deployment, one provider), of which `dry_per_block`
/// run dry in each of `blocks` consecutive blocks. Returns the harness (at the lease height) and
/// the first of those heights.
pub fn escrow_world(n: u32, blocks: u32, dry_per_block: u32) -> (Harness, u64) {
    const PER_TX: usize = 32;
    let n_tenants = n.div_ceil(1000).max(1);
    let mut tenants: Vec<Actor> = (0..n_tenants).map(Actor::numbered).collect();
    let mut provider = Actor::numbered(2_000_000);
    let addrs: Vec<_> = tenants.iter().chain([&provider]).map(|a| a.addr).collect();
    let mut h = Harness::new(&addrs, "1000000000000000000ukumo,1000000000000000000uusd");
    h.ok(
        &mut provider,
        vec![Msg::CreateProvider(provider_fields(&[]))],
    );
    let ids: Vec<DeploymentId> = (0..n)
        .map(|i| DeploymentId {
            owner: tenants[(i % n_tenants) as usize].addr,
            dseq: u64::from(i) + 1,
        })
        .collect();
    let run = |h: &mut Harness, txs: Vec<Vec<u8>>| {
        for chunk in txs.chunks(500) {
            for r in h.block(chunk).txs {
                assert!(r.expect("accepted").result.is_ok());
            }
        }
    };
    // Deployments: the first `dry` ones with the minimum deposit, the rest with plenty.
    let dry = (blocks * dry_per_block).min(n) as usize;
    let deposit = |i: usize| if i < dry { 500_000 } else { 1_000_000_000_000 };
    let mut txs = Vec::new();
    for (t, tenant) in tenants.iter_mut().enumerate() {
        let mine: Vec<usize> = (0..n as usize)
            .filter(|i| i % n_tenants as usize == t)
            .collect();
        for chunk in mine.chunks(PER_TX) {
            let msgs = chunk
                .iter()
                .map(|&i| Msg::CreateDeployment {
                    id: ids[i],
                    groups: vec![group("web", &[], "1000000ukumo")],
                    hash: [0; 32],
                    deposit: Coin::new("ukumo", deposit(i)),
                })
                .collect();
            txs.push(tenant.sign(FEE * 10, msgs));
        }
    }
    run(&mut h, txs);
    // Bids: the dry ones priced so that account i runs dry in measured block i / dry_per_block.
    let bid_blocks = (n as usize).div_ceil(PER_TX).div_ceil(500) as u64;
    let lease_height = h.app.height() + bid_blocks + 1;
    let first_dry = lease_height + 10;
    let price = |i: usize| -> Dec {
        if i < dry {
            let blocks = first_dry - lease_height + (i as u64 / u64::from(dry_per_block));
            Dec::from_atto(500_000 * 1_000_000_000_000_000_000 / u128::from(blocks))
        } else {
            Dec::from_int(1)
        }
    };
    let bids: Vec<Vec<u8>> = (0..n as usize)
        .collect::<Vec<_>>()
        .chunks(PER_TX)
        .map(|chunk| {
            let msgs = chunk
                .iter()
                .map(|&i| Msg::CreateBid {
                    order: ids[i].group(1).order(1),
                    price: DecCoin::new("ukumo", price(i)),
                    deposit: Coin::new("ukumo", 500_000),
                    gpus: vec![],
                })
                .collect();
            provider.sign(FEE * 10, msgs)
        })
        .collect();
    run(&mut h, bids);
    let mut leases = Vec::new();
    for (t, tenant) in tenants.iter_mut().enumerate() {
        let mine: Vec<usize> = (0..n as usize)
            .filter(|i| i % n_tenants as usize == t)
            .collect();
        for chunk in mine.chunks(PER_TX) {
            let msgs = chunk
                .iter()
                .map(|&i| Msg::CreateLease {
                    bid: ids[i].group(1).order(1).bid(provider.addr),
                })
                .collect();
            leases.push(tenant.sign(FEE * 10, msgs));
        }
    }
    // All leases in one block, so they share a start height.
    h.advance_to(lease_height - 1);
    for r in h.block(&leases).txs {
        assert!(r.expect("accepted").result.is_ok());
    }
    assert_eq!(h.app.height(), lease_height);
    (h, first_dry)
}

/// Median end_block time over `blocks` blocks, each closing `dry_per_block` accounts.
fn time_end_blocks(n: u32, cfg: &EscrowConfig, progress: &dyn Fn(&str)) -> f64 {
    progress(&format!("building a chain with {n} active leases"));
    let (mut h, first_dry) = escrow_world(n, cfg.blocks, cfg.dry_per_block);
    progress(&format!(
        "timing end_block with {n} leases over {} blocks",
        cfg.blocks
    ));
    h.advance_to(first_dry - 1);
    let mut times = Vec::new();
    let mut junk = if cfg.cold_cache {
        vec![0u8; 128 << 20]
    } else {
        Vec::new()
    };
    for b in 0..cfg.blocks {
        let height = h.next_height();
        h.app.begin_block(height).expect("next height");
        for (i, x) in junk.iter_mut().enumerate().step_by(64) {
            *x = x.wrapping_add(b as u8 ^ i as u8);
        }
        let start = Instant::now();
        let events = h.app.end_block().expect("block open");
        times.push(start.elapsed().as_secs_f64());
        let closed = events
            .iter()
            .filter(|e| matches!(e.event, crate::Event::LeaseClosed { .. }))
            .count();
        assert_eq!(
            closed as u32,
            cfg.dry_per_block.min(n),
            "wrong number of leases ran dry at {height}"
        );
    }
    std::hint::black_box(&junk);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2] * 1000.0
}

/// Runs the end-of-block benchmark.
pub fn escrow(cfg: &EscrowConfig) -> EscrowBench {
    escrow_with_progress(cfg, &|_| {})
}

/// [`escrow`], telling `progress` what it is doing before each long step.
pub fn escrow_with_progress(cfg: &EscrowConfig, progress: &dyn Fn(&str)) -> EscrowBench {
    let small = time_end_blocks(cfg.small, cfg, progress);
    let large = time_end_blocks(cfg.large, cfg, progress);
    EscrowBench {
        end_block_ms_100: small,
        end_block_ms_100000: large,
        ratio: large / small,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmarks_run_small() {
        let c = chain(&ChainConfig {
            tenants: 6,
            providers: 3,
            rounds: 2,
            batch_verify: false,
        });
        assert!(c.txs_per_sec > 0.0 && c.sig_verifications_per_sec > 0.0);
        assert!(c.batch_verifications_per_sec > 0.0);
        assert_eq!(c.ratio, c.txs_per_sec / c.batch_verifications_per_sec);
        let e = escrow(&EscrowConfig {
            small: 10,
            large: 200,
            blocks: 3,
            dry_per_block: 2,
            cold_cache: false,
        });
        assert!(e.end_block_ms_100 > 0.0 && e.end_block_ms_100000 > 0.0);
        let json = serde_json::to_value(&e).unwrap();
        assert!(json.get("end_block_ms_100000").is_some());
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("sig_verifications_per_sec").is_some());
        assert!(json.get("batch_verifications_per_sec").is_some());
    }
}
