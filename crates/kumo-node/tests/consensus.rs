//! Whole networks of validators on commonware's deterministic runtime and simulated network:
//! lossy links, partitions, crashes, equivocation. Each scenario is reproducible by its seed.

mod common;

use std::time::Duration;

use common::{Cluster, link, send};
use commonware_runtime::{Clock as _, Runner as _, deterministic};
use kumo_chain::testkit::{Actor, FEE};

const BLOCK_TIME: Duration = Duration::from_millis(250);

fn runner(seed: u64) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    )
}

/// Four validators over links that drop 10% of messages and jitter: blocks keep being
/// finalized, submitted transactions are committed and move balances, and every validator has
/// the same digest and state root at every height. The same seed gives the same chain.
fn lossy_network(seed: u64) -> (u64, [u8; 32], String) {
    runner(seed).start(|ctx| async move {
        let mut net = Cluster::new(&ctx, 4, link(40, 20, 90), BLOCK_TIME).await;
        net.start_all().await;
        net.wait_until(Duration::from_secs(60), "first blocks", |n| {
            (0..4).all(|i| n.height(i) >= 3)
        })
        .await;

        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let before_alice = net.balance(0, &alice);
        let before_bob = net.balance(0, &bob);
        // Submitted to different validators: gossip brings each to the proposers.
        let mut hashes = Vec::new();
        for k in 0..6u128 {
            let tx = send(&mut alice, &bob, 1_000 + k);
            hashes.push(net.node(k as usize % 4).submit(tx).unwrap());
            net.ctx.sleep(Duration::from_millis(300)).await;
        }
        net.wait_until(Duration::from_secs(120), "txs committed everywhere", |n| {
            (0..4).all(|i| {
                let c = n.recorders[i].committed();
                hashes.iter().all(|h| c.contains(h))
            })
        })
        .await;
        net.wait_until(Duration::from_secs(120), "height 20", |n| {
            (0..4).all(|i| n.height(i) >= 20)
        })
        .await;
        let common = net.assert_agree(&[0, 1, 2, 3]);

        let sent: u128 = (0..6u128).map(|k| 1_000 + k).sum();
        for i in 0..4 {
            assert_eq!(
                net.balance(i, &alice),
                before_alice - sent - 6 * FEE,
                "validator {i}"
            );
            assert_eq!(net.balance(i, &bob), before_bob + sent, "validator {i}");
        }
        let (digest, _) = net.recorders[0].at(20).unwrap();
        let _ = common;
        (20, digest, ctx.auditor().state())
    })
}

#[test]
fn four_validators_with_loss_and_jitter_keep_finalizing() {
    let first = lossy_network(7);
    let again = lossy_network(7);
    assert_eq!(first.1, again.1, "same seed, same block at height 20");
    assert_eq!(first.2, again.2, "same seed, same execution");
}

/// A validator crashes and restarts on the same storage: it loads the same finalized state
/// (root) it had, and goes on finalizing the same blocks as the others.
#[test]
fn a_crashed_validator_restarts_with_the_same_state() {
    runner(11).start(|ctx| async move {
        let mut net = Cluster::new(&ctx, 4, link(20, 5, 100), BLOCK_TIME).await;
        net.start_all().await;
        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let tx = send(&mut alice, &bob, 500);
        let hash = net.node(0).submit(tx).unwrap();
        net.wait_until(Duration::from_secs(60), "tx committed on 3", |n| {
            n.height(3) >= 8 && n.recorders[3].committed().contains(&hash)
        })
        .await;

        net.crash(3);
        // Whatever it had durably finalized is what it must come back with.
        let crashed_at = net.height(3);
        net.wait_until(Duration::from_secs(60), "others go on", |n| {
            (0..3).all(|i| n.height(i) >= crashed_at + 10)
        })
        .await;

        net.start(3).await;
        net.wait_until(Duration::from_secs(30), "state loaded", |n| {
            n.node(3).finalized_tip().is_some()
        })
        .await;
        let tip = net.node(3).finalized_tip().unwrap();
        assert!(
            tip.height + 2 >= crashed_at,
            "restart lost finalized blocks: {} < {crashed_at}",
            tip.height
        );
        let (digest, root) = net.recorders[0].at(tip.height).unwrap();
        assert_eq!(<[u8; 32]>::from(tip.digest), digest);
        assert_eq!(
            <[u8; 32]>::from(tip.state_root),
            root,
            "restart recovered another state root"
        );
        assert_eq!(
            net.balance(3, &bob),
            net.balance(0, &bob).min(net.balance(3, &bob))
        );

        let target = net.height(0) + 5;
        net.wait_until(Duration::from_secs(60), "restarted node catches up", |n| {
            (0..4).all(|i| n.height(i) >= target)
        })
        .await;
        let common = net.assert_agree(&[0, 1, 2, 3]);
        eprintln!(
            "crashed at {crashed_at}, reloaded {}, agree up to {common}",
            tip.height
        );
        assert_eq!(net.balance(3, &bob), net.balance(0, &bob));
    });
}

/// One validator is cut off: the other three (a quorum) go on; the cut-off one stalls. Once
/// healed it fetches the blocks it missed, replays them and reaches the same state roots.
#[test]
fn a_partitioned_validator_catches_up_when_healed() {
    runner(23).start(|ctx| async move {
        let mut net = Cluster::new(&ctx, 4, link(30, 10, 100), BLOCK_TIME).await;
        net.start_all().await;
        net.wait_until(Duration::from_secs(60), "height 5", |n| {
            (0..4).all(|i| n.height(i) >= 5)
        })
        .await;

        net.isolate(3).await;
        let cut_at = net.height(3);
        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let hash = net.node(0).submit(send(&mut alice, &bob, 777)).unwrap();
        net.wait_until(Duration::from_secs(60), "the majority goes on", |n| {
            (0..3).all(|i| n.height(i) >= cut_at + 15 && n.recorders[i].committed().contains(&hash))
        })
        .await;
        assert!(
            net.height(3) <= cut_at + 1,
            "an isolated validator cannot finalize alone ({} > {cut_at} + 1)",
            net.height(3)
        );

        net.heal(3).await;
        let target = net.height(0);
        net.wait_until(
            Duration::from_secs(120),
            "healed validator catches up",
            |n| n.height(3) >= target + 3,
        )
        .await;
        let common = net.assert_agree(&[0, 1, 2, 3]);
        assert!(common >= target);
        assert!(net.recorders[3].committed().contains(&hash));
        assert_eq!(net.balance(3, &bob), net.balance(0, &bob));
    });
}

/// Validator 3 is Byzantine: two full nodes run with its key (Twins), one talking to validators
/// 0 and 1, the other to validator 2, and each holds a different spend of the same account
/// nonce. Whenever validator 3 leads it proposes (and votes for) two conflicting blocks. The
/// honest validators still finalize the same block at every height, only one of the two spends
/// ever happens, and the chain goes on.
#[test]
fn an_equivocating_validator_cannot_make_honest_ones_disagree() {
    runner(31).start(|ctx| async move {
        let mut net = Cluster::new(&ctx, 4, link(20, 5, 100), BLOCK_TIME).await;
        for i in 0..3 {
            net.start(i).await;
        }
        net.start_twins(3, &[0, 1], &[2]).await;

        let mut carol = Actor::from_seed(3);
        let mut carol_again = carol.clone();
        let bob = Actor::from_seed(2);
        let dave = Actor::from_seed(4);
        let to_bob = send(&mut carol, &bob, 100);
        let to_dave = send(&mut carol_again, &dave, 200);
        net.twins[0].0.pool().insert(to_bob).unwrap();
        net.twins[1].0.pool().insert(to_dave).unwrap();

        net.wait_until(
            Duration::from_secs(120),
            "honest validators reach height 25",
            |n| (0..3).all(|i| n.height(i) >= 25),
        )
        .await;
        let proposed: Vec<usize> = net
            .twins
            .iter()
            .map(|t| t.2.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        assert!(
            proposed.iter().all(|&n| n > 0),
            "both twins must have broadcast their own blocks: {proposed:?}"
        );
        net.assert_agree(&[0, 1, 2]);
        // Whatever a twin finalized is the honest chain too.
        for (_, recorder, _, _) in &net.twins {
            for h in 1..=recorder.height() {
                assert_eq!(
                    recorder.at(h),
                    net.recorders[0].at(h),
                    "twin disagrees at {h}"
                );
            }
        }

        let start = 1_000_000_000u128;
        for i in 0..3 {
            let gains = (net.balance(i, &bob) - start, net.balance(i, &dave) - start);
            assert!(
                gains == (100, 0) || gains == (0, 200),
                "validator {i}: exactly one of the conflicting spends happens, got {gains:?}"
            );
        }
        // An honest validator saw validator 3 sign two blocks for one view and cut it off.
        let blocked = net.oracle.blocked().await.unwrap();
        assert!(
            blocked.iter().any(|(_, who)| *who == net.pk(3)),
            "no honest validator caught the equivocation: {blocked:?}"
        );
    });
}
