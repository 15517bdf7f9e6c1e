//! Wires one validator: simplex (votes), marshal (finalized blocks, backfill from peers),
//! buffered broadcast (block dissemination), `glue::stateful` over QMDB (the state) and the
//! mempool gossip, on any commonware runtime and any p2p network.
//!
//! ```text
//!  p2p channels ─▶ simplex ──(Deferred)──▶ stateful ◀── marshal ◀── broadcast / backfill
//!                                           │   ▲                      (finalized blocks)
//!                               KumoApp ────┘   └── StateLoader (startup: QMDB → memory)
//!  mempool channel ─▶ gossip task ─▶ Node::admit_from_peer ─▶ TxPool ─▶ KumoApp::propose
//! ```
//!
//! [`run`] builds every actor as a child of the runtime context it is given and returns when
//! simplex stops, so aborting the task that runs it stops the whole node (the deterministic
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
    node::Node,
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

/// Who votes, and with which key.
#[derive(Clone)]
pub struct Validators {
    /// This validator's key.
    pub signer: ed25519::PrivateKey,
    /// Every validator's public key (order does not matter).
    pub validators: Vec<ed25519::PublicKey>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The key is not among the validators.
    #[error("this node's key {0} is not in the validator set: add it, or use a validator's key")]
    NotAValidator(String),
    /// The validator list repeats a key.
    #[error("the validator set lists a key twice")]
    DuplicateValidator,
}

/// The digest of the genesis file: the genesis block commits to it, so nodes with different
/// genesis files never agree on a block.
pub fn genesis_hash(genesis: &kumo_chain::Genesis) -> Digest {
    Sha256::hash(&[genesis.to_json().as_bytes()])
}

/// The genesis block of `genesis`.
pub fn genesis_block<E: Runtime>(genesis: &kumo_chain::Genesis) -> Block {
    let target = initial_target::<E>();
    Block::genesis(genesis_hash(genesis), target.root, target.range)
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

/// Runs a validator until its consensus engine stops. Every actor is a child of `context`.
pub async fn run<E, C, B, S, R>(
    context: E,
    node: Node,
    validators: Validators,
    network: Network<C, B, S, R>,
) -> Result<(), StartError>
where
    E: Runtime + commonware_runtime::Storage + rand_core_010::CryptoRng,
    C: Provider<PublicKey = ed25519::PublicKey> + Clone,
    B: Blocker<PublicKey = ed25519::PublicKey> + Clone,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    let handle = start(context, node, validators, network).await?;
    let _ = handle.await;
    Ok(())
}

/// Starts a validator and returns the handle of its consensus engine.
pub async fn start<E, C, B, S, R>(
    context: E,
    node: Node,
    validators: Validators,
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
    let me = validators.signer.public_key();
    let participants: Set<ed25519::PublicKey> =
        Set::try_from(validators.validators.clone()).map_err(|_| StartError::DuplicateValidator)?;
    let namespace = namespace(&config.genesis.chain_id);
    let scheme = Scheme::signer(&namespace, participants.clone(), validators.signer.clone())
        .ok_or_else(|| StartError::NotAValidator(me.to_string()))?;
    let prefix = config.partition_prefix.clone();
    let page_cache = CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES);
    let genesis_block = genesis_block::<E>(&config.genesis);
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

    let deferred = Deferred::new(
        context.child("deferred"),
        stateful_mailbox.clone(),
        marshal.clone(),
        FixedEpocher::new(NZU64!(EPOCH_LENGTH)),
    );
    marshal_actor.start(stateful_mailbox, buffer, resolver);
    stateful.start();

    // Mempool gossip: txs submitted here go to every peer; txs from peers enter our pool.
    let (gossip_tx, gossip_rx) = mpsc::channel::<Vec<u8>>(1024);
    *node.inner.gossip.lock().expect("gossip lock") = Some(gossip_tx);
    let (mempool_sender, mempool_receiver) = network.mempool;
    context.child("mempool_out").spawn({
        let mut sender = mempool_sender;
        let mut rx = gossip_rx;
        move |_| async move {
            while let Some(tx) = rx.recv().await {
                let sent = sender.send(Recipients::All, tx, false);
                debug!(peers = sent.len(), "gossiped a transaction");
            }
        }
    });
    context.child("mempool_in").spawn({
        let node = node.clone();
        let mut receiver = mempool_receiver;
        let max = config.limits.max_tx_bytes;
        move |_| async move {
            while let Ok((_, msg)) = receiver.recv().await {
                // With what else has arrived, so that the signatures verify in one batch.
                let mut batch = vec![msg];
                while batch.len() < 1024 {
                    match futures::FutureExt::now_or_never(receiver.recv()) {
                        Some(Ok((_, msg))) => batch.push(msg),
                        _ => break,
                    }
                }
                node.admit_from_peers(
                    batch
                        .iter()
                        .filter(|m| m.len() <= max)
                        .map(|m| m.as_ref().to_vec())
                        .collect(),
                );
            }
        }
    });

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
