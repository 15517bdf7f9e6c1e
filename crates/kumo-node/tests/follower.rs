//! Followers on commonware's deterministic runtime and simulated network: a node outside the
//! validator set executes every finalized block to the same state root as the validators,
//! forwards the transactions submitted to it, catches up from genesis when it starts late, and
//! resumes after a crash. Each scenario is reproducible by its seed.

mod common;

use std::time::Duration;

use common::{Cluster, QUOTA, link, send};
use commonware_codec::Encode as _;
use commonware_consensus::{
    simplex::types::{Certificate, Finalization, Finalize, Proposal},
    types::{Epoch, Round, View},
};
use commonware_cryptography::{Hasher as _, Sha256, Signer as _, ed25519};
use commonware_p2p::{Recipients, Sender as _};
use commonware_parallel::Sequential;
use commonware_runtime::{Runner as _, deterministic};
use commonware_utils::{TryCollect as _, non_empty, ordered::Set};
use kumo_chain::testkit::{Actor, CHAIN_ID, FEE};
use kumo_node::{
    Digest,
    app::Scheme,
    engine::{self, channel},
};

const BLOCK_TIME: Duration = Duration::from_millis(250);
const VALIDATORS: usize = 4;
/// The follower's index in the cluster (validators are 0..4).
const FOLLOWER: usize = 4;
const EVERYONE: [usize; 5] = [0, 1, 2, 3, 4];

fn runner(seed: u64) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    )
}

/// Four validators and a follower over links that drop 5% of messages: the follower finalizes
/// the same block with the same state root at every height, its queries see the same balances,
/// and the transactions submitted to it (it forwards them, it proposes nothing) get committed.
/// Returns the follower's block at height 15 and the runtime's audit of the run.
fn follower_with_loss(seed: u64) -> ([u8; 32], String) {
    runner(seed).start(|ctx| async move {
        let mut net =
            Cluster::with_followers(&ctx, VALIDATORS, 1, link(30, 10, 95), BLOCK_TIME).await;
        net.start_all().await;
        net.wait_until(Duration::from_secs(60), "first blocks", |n| {
            EVERYONE.iter().all(|&i| n.height(i) >= 3)
        })
        .await;

        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let before_alice = net.balance(FOLLOWER, &alice);
        let before_bob = net.balance(FOLLOWER, &bob);
        let hashes: Vec<_> = (0..3u128)
            .map(|k| {
                let tx = send(&mut alice, &bob, 100 + k);
                net.node(FOLLOWER).submit(tx).unwrap()
            })
            .collect();
        net.wait_until(Duration::from_secs(60), "txs committed", |n| {
            EVERYONE.iter().all(|&i| {
                let c = n.recorders[i].committed();
                n.height(i) >= 15 && hashes.iter().all(|h| c.contains(h))
            })
        })
        .await;

        let common = net.assert_agree(&EVERYONE);
        assert!(common >= 15);
        let sent: u128 = (0..3u128).map(|k| 100 + k).sum();
        assert_eq!(net.balance(FOLLOWER, &alice), before_alice - sent - 3 * FEE);
        assert_eq!(net.balance(FOLLOWER, &bob), before_bob + sent);
        let tip = net.node(FOLLOWER).finalized_tip().unwrap();
        assert_eq!(
            net.recorders[0].at(tip.height),
            Some((tip.digest.into(), tip.state_root.into())),
            "the follower's tip is a validator's block"
        );
        assert!(
            net.node(FOLLOWER).pool().is_empty(),
            "committed transactions leave the follower's pool"
        );
        let blocked = net.oracle.blocked().await.unwrap();
        assert!(blocked.is_empty(), "nobody misbehaved: {blocked:?}");
        let (digest, _) = net.recorders[FOLLOWER].at(15).unwrap();
        (digest, ctx.auditor().state())
    })
}

#[test]
fn a_follower_has_the_validators_state_and_forwards_transactions() {
    let first = follower_with_loss(41);
    let again = follower_with_loss(41);
    assert_eq!(first, again, "same seed, same run");
}

/// A follower that starts after 20 blocks fetches and executes every block from genesis
/// (marshal's backfill) and then keeps up. Crashed and restarted on the same storage, it comes
/// back with the state it had and follows on. A transaction submitted while it is cut off from
/// the validators reaches them once it is reconnected.
#[test]
fn a_late_follower_catches_up_and_resumes_after_a_restart() {
    runner(43).start(|ctx| async move {
        let mut net =
            Cluster::with_followers(&ctx, VALIDATORS, 1, link(20, 5, 100), BLOCK_TIME).await;
        for i in 0..VALIDATORS {
            net.start(i).await;
        }
        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let hash = net.node(0).submit(send(&mut alice, &bob, 555)).unwrap();
        net.wait_until(Duration::from_secs(60), "20 blocks", |n| {
            (0..VALIDATORS).all(|i| n.height(i) >= 20)
        })
        .await;

        net.start(FOLLOWER).await;
        let target = net.height(0) + 5;
        net.wait_until(Duration::from_secs(60), "follower catches up", |n| {
            n.height(FOLLOWER) >= target
        })
        .await;
        assert!(
            net.recorders[FOLLOWER].at(1).is_some(),
            "the follower executed the chain from its first block"
        );
        net.assert_agree(&EVERYONE);
        assert!(net.recorders[FOLLOWER].committed().contains(&hash));
        assert_eq!(net.balance(FOLLOWER, &bob), net.balance(0, &bob));

        net.crash(FOLLOWER);
        let crashed_at = net.height(FOLLOWER);
        net.wait_until(Duration::from_secs(60), "the chain goes on", |n| {
            n.height(0) >= crashed_at + 10
        })
        .await;
        net.start(FOLLOWER).await;
        net.wait_until(Duration::from_secs(30), "state loaded", |n| {
            n.node(FOLLOWER).finalized_tip().is_some()
        })
        .await;
        let tip = net.node(FOLLOWER).finalized_tip().unwrap();
        assert!(
            tip.height + 2 >= crashed_at,
            "restart lost finalized blocks: {} < {crashed_at}",
            tip.height
        );
        assert_eq!(
            net.recorders[0].at(tip.height),
            Some((tip.digest.into(), tip.state_root.into())),
            "the restarted follower loaded another state"
        );

        let target = net.height(0) + 3;
        net.wait_until(Duration::from_secs(60), "restarted follower resumes", |n| {
            n.height(FOLLOWER) >= target
        })
        .await;
        net.assert_agree(&EVERYONE);
        assert_eq!(net.balance(FOLLOWER, &bob), net.balance(0, &bob));

        net.isolate(FOLLOWER).await;
        let late = net
            .node(FOLLOWER)
            .submit(send(&mut alice, &bob, 666))
            .unwrap();
        let target = net.height(0) + 8;
        net.wait_until(Duration::from_secs(60), "validators go on", |n| {
            n.height(0) >= target
        })
        .await;
        assert!(
            !net.recorders[0].committed().contains(&late),
            "the cut-off follower's transaction cannot have reached the validators"
        );
        net.heal(FOLLOWER).await;
        net.wait_until(
            Duration::from_secs(60),
            "sent again once reconnected",
            |n| {
                EVERYONE
                    .iter()
                    .all(|&i| n.recorders[i].committed().contains(&late))
            },
        )
        .await;
        net.assert_agree(&EVERYONE);
        assert!(net.node(FOLLOWER).pool().is_empty());
    });
}

/// A finalization of a block nobody proposed, signed by a quorum of keys that are not the
/// validators', in this chain's namespace, far ahead of the chain.
fn forged_finalization() -> Finalization<Scheme, Digest> {
    let impostors: Vec<_> = (100..104u64).map(ed25519::PrivateKey::from_seed).collect();
    let set: Set<ed25519::PublicKey> = impostors
        .iter()
        .map(|k| k.public_key())
        .try_collect()
        .unwrap();
    let namespace = engine::namespace(CHAIN_ID);
    let proposal = Proposal::new(
        Round::new(Epoch::zero(), View::new(1_000_000)),
        View::new(999_999),
        Sha256::hash(&[b"a block nobody proposed"]),
    );
    let votes: Vec<_> = impostors[..3]
        .iter()
        .map(|k| {
            let scheme = Scheme::signer(&namespace, set.clone(), k.clone()).unwrap();
            Finalize::sign(&scheme, proposal.clone()).unwrap()
        })
        .collect();
    let verifier = Scheme::verifier(&namespace, set);
    Finalization::from_finalizes(&verifier, non_empty![@votes.iter()], &Sequential).unwrap()
}

/// A peer (in the p2p peer set, not a validator) sends the follower a finalization signed by
/// keys outside the validator set. The follower checks it against the validators, blocks the
/// peer, and keeps the validators' chain.
#[test]
fn a_follower_rejects_a_finalization_not_signed_by_the_validators() {
    runner(47).start(|ctx| async move {
        // Node 5 is a second follower's slot, used here by the forger.
        let mut net =
            Cluster::with_followers(&ctx, VALIDATORS, 2, link(20, 5, 100), BLOCK_TIME).await;
        for i in EVERYONE {
            net.start(i).await;
        }
        net.wait_until(Duration::from_secs(60), "first blocks", |n| {
            n.height(FOLLOWER) >= 3
        })
        .await;

        let forger = net.pk(5);
        let (mut sender, _receiver) = net
            .oracle
            .control(forger.clone())
            .register(channel::CERTIFICATES, QUOTA)
            .await
            .unwrap();
        let forged = Certificate::Finalization(forged_finalization());
        let sent = sender.send(Recipients::One(net.pk(FOLLOWER)), forged.encode(), false);
        assert_eq!(sent, vec![net.pk(FOLLOWER)]);

        let target = net.height(0) + 5;
        net.wait_until(Duration::from_secs(60), "the follower goes on", |n| {
            n.height(FOLLOWER) >= target
        })
        .await;
        let blocked = net.oracle.blocked().await.unwrap();
        assert!(
            blocked.contains(&(net.pk(FOLLOWER), forger.clone())),
            "the follower did not block the forger: {blocked:?}"
        );
        net.assert_agree(&EVERYONE);
    });
}
