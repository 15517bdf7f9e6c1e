//! Wires one node, validator or follower ([`Role`]): simplex (votes, validators only), marshal
//! (finalized blocks, backfill from peers), buffered broadcast (block dissemination),
//! `glue::stateful` over QMDB (the state) and the mempool gossip, on any commonware runtime and
//! any p2p network.
//!
//! ```text
//!  validator:  p2p ─▶ simplex ──(Deferred)──▶ stateful ◀── marshal ◀── broadcast / backfill
//!  follower:   certificates ─▶ follow (verify) ──────────────▶ marshal     (finalized blocks)
//!                                              │   ▲
//!                                  KumoApp ────┘   └── StateLoader (startup: QMDB → memory)
//!  mempool channel ─▶ gossip task ─▶ Node::admit_from_peers ─▶ TxPool ─▶ KumoApp::propose
//! ```
//!
//! A follower runs the same marshal, stateful application and state as a validator, so it
//! executes every finalized block the same way and reaches the same state root; it only lacks
//! simplex and a signing key (see `src/follow.rs`). The p2p peer set must hold the followers
//! (so they can connect) while the validator set, the only one that votes, does not.
//!
//! [`run`] builds every actor as a child of the runtime context it is given and returns when
//! the node stops, so aborting the task that runs it stops the whole node (the deterministic
//! tests crash nodes that way).

use std::{
    num::{NonZeroU16, NonZeroUsize},
    time::Duration,
};

use commonware_broadcast::buffered;
use commonware_codec::RangeCfg;
use commonware_consensus::{
    marshal::{
        self,
        core::Actor as MarshalActor,
        resolver::p2p as marshal_resolver,
        standard::{Deferred, Standard},
    },
    simplex::{
        self,
        config::{ForwardPolicy, SkipPolicy},
        elector::RoundRobin,
    },
    types::{Epoch, FixedEpocher, ViewDelta},
};
use commonware_cryptography::{
    Digestible as _, Hasher as _, Sha256, Signer as _,
    certificate::{ConstantProvider, Verifier as _},
    ed25519,
};
use commonware_glue::stateful::{
    Config as StatefulConfig, Stateful, SyncPlan, db::SyncEngineConfig,
};
use commonware_p2p::{Blocker, Provider, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Handle, buffer::paged::CacheRef};
use commonware_storage::{
    archive::prunable,
    journal::contiguous::variable::Config as LogConfig,
    mmr::full::Config as MmrConfig,
    qmdb::any::VariableConfig,
    translator::{EightCap, TwoCap},
};
use commonware_utils::{NZDuration, NZU16, NZU64, NZUsize, channel::mpsc, ordered::Set};
use tracing::{debug, info};

use crate::{
    app::{KumoApp, Marshal, Runtime, Scheme, StateLoader, initial_target},
    block::{Block, BlockLimits, Digest},
    follow, gossip,
    node::Node,
    pacing::Paced,
};

/// Height-independent epoch: the validator set is fixed for the chain's life (for now).
const EPOCH_LENGTH: u64 = u64::MAX;
const PAGE_SIZE: NonZeroU16 = NZU16!(4096);
const PAGE_CACHE_PAGES: NonZeroUsize = NZUsize!(1024);
const IO_BUFFER: NonZeroUsize = NZUsize!(64 * 1024);
const MAILBOX: NonZeroUsize = NZUsize!(1024);

/// The p2p channels a node uses, by number. Every node of a network must agree.
pub mod channel {
    /// simplex votes.
    pub const VOTES: u64 = 0;
    /// simplex certificates.
    pub const CERTIFICATES: u64 = 1;
    /// simplex's fetches of missing certificates.
    pub const SIMPLEX_RESOLVER: u64 = 2;
    /// marshal's fetches of missing blocks and finalizations (catch-up).
    pub const BACKFILL: u64 = 3;
    /// broadcast of proposed blocks.
    pub const BLOCKS: u64 = 4;
    /// mempool gossip: one signed transaction per message.
    pub const MEMPOOL: u64 = 5;
    /// Every channel, in the order [`super::Network`] holds them.
    pub const ALL: [u64; 6] = [
        VOTES,
        CERTIFICATES,
        SIMPLEX_RESOLVER,
        BACKFILL,
        BLOCKS,
        MEMPOOL,
    ];
}

/// A node's view of the network: who its peers are, how to block a misbehaving one, and one
/// sender/receiver pair per channel (see [`channel`]).
pub struct Network<C, B, S, R> {
    /// The peer set (for fetches and broadcast).
    pub peers: C,
    /// Blocks peers that send invalid data.
    pub blocker: B,
    /// [`channel::VOTES`].
    pub votes: (S, R),
    /// [`channel::CERTIFICATES`].
    pub certificates: (S, R),
    /// [`channel::SIMPLEX_RESOLVER`].
    pub simplex_resolver: (S, R),
    /// [`channel::BACKFILL`].
    pub backfill: (S, R),
    /// [`channel::BLOCKS`].
    pub blocks: (S, R),
    /// [`channel::MEMPOOL`].
    pub mempool: (S, R),
}

impl<C, B, S, R> Network<C, B, S, R> {
    /// Builds the network from channels in [`channel::ALL`] order.
    pub fn from_channels(peers: C, blocker: B, channels: Vec<(S, R)>) -> Self {
        let mut it = channels.into_iter();
        let mut next = || it.next().expect("one sender/receiver pair per channel");
        Network {
            peers,
            blocker,
            votes: next(),
            certificates: next(),
            simplex_resolver: next(),
            backfill: next(),
            blocks: next(),
            mempool: next(),
        }
    }
}

/// What a node does in consensus, with the key that is also its p2p identity.
#[derive(Clone)]
pub enum Role {
    /// Proposes and votes with this key. It must be one of the validators.
    Validator(ed25519::PrivateKey),
    /// Follows the chain without voting or proposing: it executes every finalized block,
    /// serves queries and forwards submitted transactions to the validators. The key only
    /// identifies it on the p2p network and must not be a validator's.
    Follower(ed25519::PrivateKey),
}

impl Role {
    /// The node's key (its p2p identity).
    pub fn key(&self) -> &ed25519::PrivateKey {
        match self {
            Role::Validator(key) | Role::Follower(key) => key,
        }
    }

    /// Whether the node votes.
    pub fn is_validator(&self) -> bool {
        matches!(self, Role::Validator(_))
    }
}

/// A node's place in consensus: its role, and who the validators are.
#[derive(Clone)]
pub struct Membership {
    /// This node's role and key.
    pub role: Role,
    /// Every validator's public key (order does not matter).
    pub validators: Vec<ed25519::PublicKey>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A validator's key is not among the validators.
    #[error(
        "this node's key {0} is not in the validator set: add it, use a validator's key, or run the node as a follower"
    )]
    NotAValidator(String),
    /// A follower was given a validator's key.
    #[error(
        "this follower's key {0} belongs to a validator: give the follower a key of its own (two nodes cannot share a p2p identity)"
    )]
    FollowerIsAValidator(String),
    /// The validator list repeats a key.
    #[error("the validator set lists a key twice")]
    DuplicateValidator,
    /// The validator list is empty.
    #[error("the validator set is empty: list at least one validator")]
    NoValidators,
}

/// The digest of the genesis file and the validator set: the genesis block commits to both,
/// so nodes with different genesis files or validator lists never agree on a block (a
/// follower configured with the wrong validators fails at once instead of trusting them).
pub fn genesis_hash(genesis: &kumo_chain::Genesis, validators: &[ed25519::PublicKey]) -> Digest {
    let json = genesis.to_json();
    let mut keys: Vec<&[u8]> = validators.iter().map(|k| k.as_ref()).collect();
    // The set, not the list: the order of the config file does not matter.
    keys.sort_unstable();
    keys.dedup();
    let mut parts: Vec<&[u8]> = vec![json.as_bytes(), b"\nvalidators"];
    parts.extend(keys);
    Sha256::hash(&parts)
}

/// The genesis block of `genesis` with `validators`.
pub fn genesis_block<E: Runtime>(
    genesis: &kumo_chain::Genesis,
    validators: &[ed25519::PublicKey],
) -> Block {
    let target = initial_target::<E>();
    Block::genesis(genesis_hash(genesis, validators), target.root, target.range)
}

/// The namespace every consensus signature of this chain is made in.
pub fn namespace(chain_id: &str) -> Vec<u8> {
    format!("kumo-consensus:{chain_id}").into_bytes()
}

/// The largest p2p message a node sends: a full block (or the consensus messages, smaller).
pub fn max_message_size(limits: &BlockLimits, validators: usize) -> u32 {
    let block = <Block as commonware_consensus::BoundedBlock>::max_encode_size(limits);
    let consensus = simplex::max_payload_size::<Scheme, Digest>(validators as u32);
    let marshal = marshal::max_payload_size::<Standard<Block>, Scheme>(validators as u32, limits);
    let biggest = block.max(consensus as usize).max(marshal as usize) + 1024;
    u32::try_from(biggest).expect("block limits fit a p2p message")
}

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: CacheRef,
    codec: C,
) -> prunable::Config<TwoCap, C> {
    prunable::Config {
        translator: TwoCap,
        metadata_partition: format!("{prefix}-{name}-metadata"),
        key_partition: format!("{prefix}-{name}-key"),
        key_page_cache: page_cache,
        value_partition: format!("{prefix}-{name}-value"),
        compression: None,
        codec_config: codec,
        items_per_section: NZU64!(4096),
        key_write_buffer: IO_BUFFER,
        value_write_buffer: IO_BUFFER,
        replay_buffer: IO_BUFFER,
    }
}

/// QMDB's configuration: length bounds of keys and values (each `(range, ())`).
type QmdbConfig =
    VariableConfig<EightCap, ((RangeCfg<usize>, ()), (RangeCfg<usize>, ())), Sequential>;

fn qmdb_config(prefix: &str, page_cache: CacheRef, limits: &BlockLimits) -> QmdbConfig {
    // Keys are short table-prefixed identifiers; values are Borsh records, bounded by what one
    // block can write.
    let key = (RangeCfg::from(0..=1024usize), ());
    let value = (RangeCfg::from(0..=limits.max_block_bytes.max(1 << 20)), ());
    VariableConfig {
        merkle_config: MmrConfig {
            journal_partition: format!("{prefix}-qmdb-mmr-journal"),
            metadata_partition: format!("{prefix}-qmdb-mmr-metadata"),
            items_per_blob: NZU64!(4096),
            write_buffer: IO_BUFFER,
            replay_buffer: IO_BUFFER,
            strategy: Sequential,
            page_cache: page_cache.clone(),
        },
        journal_config: LogConfig {
            partition: format!("{prefix}-qmdb-log"),
            items_per_section: NZU64!(4096),
            compression: None,
            codec_config: (key, value),
            page_cache,
            write_buffer: IO_BUFFER,
            replay_buffer: IO_BUFFER,
        },
        translator: EightCap,
        init_cache: Some(NZUsize!(4096)),
        init_buffer: NZUsize!(1 << 20),
        init_concurrency: (),
    }
}

/// Runs a node until it stops (a validator when its consensus engine stops, a follower when
/// the validators' certificate channel closes). Every actor is a child of `context`.
pub async fn run<E, C, B, S, R>(
    context: E,
    node: Node,
    membership: Membership,
    network: Network<C, B, S, R>,
) -> Result<(), StartError>
where
    E: Runtime + commonware_runtime::Storage + rand_core_010::CryptoRng,
    C: Provider<PublicKey = ed25519::PublicKey> + Clone,
    B: Blocker<PublicKey = ed25519::PublicKey> + Clone,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    let handle = start(context, node, membership, network).await?;
    let _ = handle.await;
    Ok(())
}

/// The certificate scheme of a node: a validator signs with its key, a follower only verifies.
fn consensus_scheme(namespace: &[u8], membership: &Membership) -> Result<Scheme, StartError> {
    if membership.validators.is_empty() {
        return Err(StartError::NoValidators);
    }
    let participants: Set<ed25519::PublicKey> =
        Set::try_from(membership.validators.clone()).map_err(|_| StartError::DuplicateValidator)?;
    let me = membership.role.key().public_key();
    match &membership.role {
        Role::Validator(key) => Scheme::signer(namespace, participants, key.clone())
            .ok_or_else(|| StartError::NotAValidator(me.to_string())),
        Role::Follower(_) if membership.validators.contains(&me) => {
            Err(StartError::FollowerIsAValidator(me.to_string()))
        }
        Role::Follower(_) => Ok(Scheme::verifier(namespace, participants)),
    }
}

/// Starts a node and returns the handle of the task that keeps it going: the consensus engine
/// on a validator, the relay of finalizations on a follower.
pub async fn start<E, C, B, S, R>(
    context: E,
    node: Node,
    membership: Membership,
    network: Network<C, B, S, R>,
) -> Result<Handle<()>, StartError>
where
    E: Runtime + commonware_runtime::Storage + rand_core_010::CryptoRng,
    C: Provider<PublicKey = ed25519::PublicKey> + Clone,
    B: Blocker<PublicKey = ed25519::PublicKey> + Clone,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    let config = node.config().clone();
    let me = membership.role.key().public_key();
    let namespace = namespace(&config.genesis.chain_id);
    let scheme = consensus_scheme(&namespace, &membership)?;
    let prefix = config.partition_prefix.clone();
    let page_cache = CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES);
    let genesis_block = genesis_block::<E>(&config.genesis, &membership.validators);
    let genesis_digest = genesis_block.digest();

    // Block catch-up: marshal fetches missing blocks and finalizations from peers.
    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: me.clone(),
            peer_provider: network.peers.clone(),
            blocker: network.blocker.clone(),
            mailbox_size: MAILBOX,
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        network.backfill,
    );

    // Block dissemination.
    let (broadcast, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: me.clone(),
            mailbox_size: MAILBOX,
            deque_size: 10,
            priority: false,
            codec_config: config.limits,
            peer_provider: network.peers.clone(),
            strategy: Sequential,
        },
    );
    broadcast.start(network.blocks);

    let finalizations = prunable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations",
            page_cache.clone(),
            scheme.certificate_codec_config(),
        ),
    )
    .await
    .expect("opening the finalizations archive");
    let blocks = prunable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(&prefix, "blocks", page_cache.clone(), config.limits),
    )
    .await
    .expect("opening the blocks archive");

    // State sync from peers is never requested: a node behind replays blocks.
    let plan = SyncPlan::init(context.child("plan"), prefix.clone()).await;
    let _ = plan.should_sync(false);
    let provider = ConstantProvider::new(scheme.clone());
    let (marshal_actor, marshal, floor): (_, Marshal, _) =
        MarshalActor::<_, Standard<Block>, _, _, _, _, _>::init(
            context.child("marshal"),
            finalizations,
            blocks,
            marshal::Config {
                provider: provider.clone(),
                epocher: FixedEpocher::new(NZU64!(EPOCH_LENGTH)),
                start: plan.marshal_start(commonware_cryptography::Digested::precomputed(
                    genesis_block.clone(),
                    genesis_digest,
                )),
                partition_prefix: prefix.clone(),
                mailbox_size: MAILBOX,
                view_retention: ViewDelta::new(10),
                prunable_items_per_section: NZU64!(10),
                page_cache: page_cache.clone(),
                replay_buffer: IO_BUFFER,
                key_write_buffer: IO_BUFFER,
                value_write_buffer: IO_BUFFER,
                block_codec_config: config.limits,
                max_repair: NZUsize!(10),
                max_pending_acks: NZUsize!(1),
                strategy: Sequential,
            },
        )
        .await;

    let (stateful, stateful_mailbox) = Stateful::new(
        context.child("stateful"),
        StatefulConfig {
            application: KumoApp::<E>::new(node.clone(), genesis_block.clone()),
            db_config: qmdb_config(&prefix, page_cache.clone(), &config.limits),
            provider: (),
            marshal: (marshal.clone(), floor),
            mailbox_size: MAILBOX,
            plan,
            resolvers: StateLoader::<E>::new(node.clone(), marshal.clone(), genesis_digest),
            sync_config: SyncEngineConfig {
                fetch_batch_size: NZU64!(1024),
                apply_batch_size: NZU64!(1024),
                max_outstanding_requests: NZUsize!(4),
            },
            // Keep every block: without state sync, a node that is behind replays them all.
            prune_config: None,
            strategy: Sequential,
        },
    );

    // Mempool gossip goes to the validators (they propose); a follower only forwards.
    let proposers: Vec<ed25519::PublicKey> = membership
        .validators
        .iter()
        .filter(|v| **v != me)
        .cloned()
        .collect();
    let role = &membership.role;
    mempool(&context, &node, role, proposers, network.mempool);

    let Role::Validator(_) = role else {
        // A follower: no simplex engine, so nothing here can vote or propose. Marshal gets
        // the validators' finalizations (verified) and hands finalized blocks to stateful.
        marshal_actor.start(stateful_mailbox, buffer, resolver);
        stateful.start();
        // Validators send votes to every peer; read them so the connection never backs up.
        drain(&context, "votes", network.votes.1);
        drain(&context, "simplex_resolver", network.simplex_resolver.1);
        info!(follower = %me, validators = membership.validators.len(), "following the chain");
        let relay = follow::relay_finalizations(
            context.child("rng"),
            scheme,
            network.certificates.1,
            network.blocker,
            marshal,
        );
        return Ok(context.child("follow").spawn(move |_| relay));
    };

    let deferred = Deferred::new(
        context.child("deferred"),
        Paced::new(
            stateful_mailbox.clone(),
            node.inner.block_times.clone(),
            config.block_time,
        ),
        marshal.clone(),
        FixedEpocher::new(NZU64!(EPOCH_LENGTH)),
    );
    marshal_actor.start(stateful_mailbox, buffer, resolver);
    stateful.start();

    // Consensus. Timeouts leave room for the block time the proposer waits.
    let leader_timeout = config.block_time * 2 + Duration::from_secs(1);
    let engine = simplex::Engine::new(
        context,
        simplex::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker: network.blocker,
            automaton: deferred.clone(),
            relay: deferred.clone(),
            reporter: deferred,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: MAILBOX,
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(genesis_digest),
            replay_buffer: IO_BUFFER,
            write_buffer: IO_BUFFER,
            page_cache,
            leader_timeout,
            certification_timeout: leader_timeout + Duration::from_secs(1),
            timeout_retry: Duration::from_millis(500),
            view_retention: ViewDelta::new(10),
            skip: SkipPolicy::Enabled {
                timeout: leader_timeout * 3,
                budget: simplex::SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(500),
            forward: ForwardPolicy::Disabled,
            track_historical_votes: false,
        },
    );
    info!(validator = %me, "starting consensus");
    Ok(engine.start(
        network.votes,
        network.certificates,
        network.simplex_resolver,
    ))
}

/// Mempool gossip. Transactions submitted here go to the validators, who admit the ones their
/// peers send into their pools. A follower proposes nothing: it ignores what peers send, and
/// sends its own pending transactions again every few blocks (a send reaches only the
/// validators connected at that moment, and a validator's pool does not survive a restart)
/// until a finalized block carries them or the chain would reject them.
fn mempool<E: Runtime, S, R>(
    context: &E,
    node: &Node,
    role: &Role,
    validators: Vec<ed25519::PublicKey>,
    (sender, receiver): (S, R),
) where
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    let (gossip_tx, gossip_rx) = mpsc::channel::<Vec<u8>>(1024);
    *node.inner.gossip.lock().expect("gossip lock") = Some(gossip_tx);
    if !role.is_validator() {
        let resend_every = (node.config().block_time * 4).max(Duration::from_secs(1));
        context.child("mempool_resend").spawn({
            let node = node.clone();
            let validators = validators.clone();
            let mut sender = sender.clone();
            move |ctx| async move {
                loop {
                    ctx.sleep(resend_every).await;
                    let pending = node.still_pending();
                    if !pending.is_empty() {
                        debug!(txs = pending.len(), "sending pending transactions again");
                    }
                    let mut pending = pending.into_iter();
                    while let Some(first) = pending.next() {
                        let message = gossip_batch(first, || pending.next());
                        sender.send(Recipients::Some(validators.clone()), message, false);
                    }
                }
            }
        });
    }
    context.child("mempool_out").spawn({
        let mut sender = sender;
        let mut rx = gossip_rx;
        move |_| async move {
            while let Some(tx) = rx.recv().await {
                // With whatever else is queued: one message per batch, not per transaction.
                let message =
                    gossip_batch(tx, || futures::FutureExt::now_or_never(rx.recv()).flatten());
                let sent = sender.send(Recipients::Some(validators.clone()), message, false);
                debug!(peers = sent.len(), "gossiped transactions");
            }
        }
    });
    let admit = role.is_validator();
    context.child("mempool_in").spawn({
        let node = node.clone();
        let mut receiver = receiver;
        let max = node.config().limits.max_tx_bytes;
        move |_| async move {
            while let Ok((_, msg)) = receiver.recv().await {
                // With what else has arrived, so that the signatures verify in one batch.
                let mut messages = vec![msg];
                while messages.len() < 64 {
                    match futures::FutureExt::now_or_never(receiver.recv()) {
                        Some(Ok((_, msg))) => messages.push(msg),
                        _ => break,
                    }
                }
                if admit {
                    let txs: Vec<&[u8]> = messages
                        .iter()
                        .filter_map(|m| gossip::decode(m.as_ref(), max))
                        .flatten()
                        .collect();
                    node.admit_from_peers(&txs);
                }
            }
        }
    });
}

/// One mempool message: `first`, then what `next` yields until the message is full.
fn gossip_batch(first: Vec<u8>, mut next: impl FnMut() -> Option<Vec<u8>>) -> Vec<u8> {
    let mut message = Vec::with_capacity(first.len() + 4);
    gossip::push(&mut message, &first);
    let mut count = 1;
    while !gossip::is_full(message.len(), count) {
        let Some(tx) = next() else { break };
        gossip::push(&mut message, &tx);
        count += 1;
    }
    message
}

/// Reads and drops everything a channel receives (one a follower has no use for).
fn drain<E: Runtime, R: Receiver>(context: &E, name: &str, mut receiver: R) {
    context
        .child("drain")
        .with_attribute("channel", name)
        .spawn(move |_| async move { while receiver.recv().await.is_ok() {} });
}

#[cfg(test)]
mod tests {
    use commonware_cryptography::certificate::Scheme as _;

    use super::*;

    fn keys() -> Vec<ed25519::PrivateKey> {
        (0..5u64).map(ed25519::PrivateKey::from_seed).collect()
    }

    fn membership(role: Role, validators: &[ed25519::PrivateKey]) -> Membership {
        Membership {
            role,
            validators: validators.iter().map(|k| k.public_key()).collect(),
        }
    }

    #[test]
    fn a_validator_signs_and_a_follower_only_verifies() {
        let keys = keys();
        let ns = namespace("test");
        let validator = consensus_scheme(
            &ns,
            &membership(Role::Validator(keys[0].clone()), &keys[..4]),
        );
        assert!(validator.unwrap().me().and_then(|m| m.signer()).is_some());
        let follower = consensus_scheme(
            &ns,
            &membership(Role::Follower(keys[4].clone()), &keys[..4]),
        );
        assert!(
            follower.unwrap().me().is_none(),
            "a follower's scheme holds no signing key and no seat"
        );
    }

    #[test]
    fn misconfigured_roles_are_refused() {
        let keys = keys();
        let ns = namespace("test");
        let start = |role, validators: &[ed25519::PrivateKey]| {
            consensus_scheme(&ns, &membership(role, validators)).err()
        };
        assert!(matches!(
            start(Role::Validator(keys[4].clone()), &keys[..4]),
            Some(StartError::NotAValidator(_))
        ));
        assert!(matches!(
            start(Role::Follower(keys[0].clone()), &keys[..4]),
            Some(StartError::FollowerIsAValidator(_))
        ));
        assert!(matches!(
            start(Role::Follower(keys[4].clone()), &[]),
            Some(StartError::NoValidators)
        ));
        let twice = [keys[0].clone(), keys[1].clone(), keys[0].clone()];
        assert!(matches!(
            start(Role::Follower(keys[4].clone()), &twice),
            Some(StartError::DuplicateValidator)
        ));
    }

    #[test]
    fn the_genesis_hash_covers_the_validator_set_not_its_order() {
        let keys: Vec<_> = keys().iter().map(|k| k.public_key()).collect();
        let genesis = kumo_chain::Genesis {
            chain_id: "test".into(),
            initial_height: 0,
            params: Default::default(),
            balances: Vec::new(),
        };
        let four = genesis_hash(&genesis, &keys[..4]);
        let reordered = [
            keys[3].clone(),
            keys[1].clone(),
            keys[0].clone(),
            keys[2].clone(),
        ];
        assert_eq!(four, genesis_hash(&genesis, &reordered));
        assert_ne!(four, genesis_hash(&genesis, &keys[..3]));
        assert_ne!(four, genesis_hash(&genesis, &keys[1..5]));
        let mut other = genesis.clone();
        other.chain_id = "other".into();
        assert_ne!(four, genesis_hash(&other, &keys[..4]));
    }
}
