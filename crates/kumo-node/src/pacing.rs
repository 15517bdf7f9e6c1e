//! [`Paced`]: the block time, waited for outside `glue::stateful`'s actor.
//!
//! A block's child is proposed `block_time` after the block's timestamp. `glue::stateful`
//! runs a build on its actor and queues every other message (finalized blocks included) until
//! the build returns, so a proposer that waited for the block time inside
//! [`crate::app::KumoApp::propose`] held back the finalization of the parent on its own node
//! for that long: each node answered `?wait=commit` a block late for one block in four (the
//! one before its own turn), and a client that sent its next transaction on that answer missed
//! a block. `Paced` wraps the consensus-facing application (stateful's mailbox): its `propose`
//! sleeps until the parent's timestamp + block time first, then asks the actor to build, which
//! takes the pool's transactions at once.
//!
//! The parent's timestamp comes from [`BlockTimes`], filled as blocks are built or executed
//! here. A parent this node has not executed yet (after a restart, or a node that is behind)
//! is not waited for here: `KumoApp::propose` still waits for the block time itself.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use commonware_consensus::{Application, Handoff, marshal::ancestry::Ancestry};
use commonware_cryptography::Digested;
use commonware_runtime::Clock;

use crate::block::{Block, BlockContext, Digest};

/// How many recent blocks' timestamps are kept: enough for every unfinalized block a proposal
/// may build on.
const KEPT: usize = 256;

/// Timestamps of the blocks this node built or executed recently, by digest.
#[derive(Clone, Debug, Default)]
pub struct BlockTimes {
    recent: Arc<Mutex<VecDeque<(Digest, u64)>>>,
}

impl BlockTimes {
    /// Remembers `digest`'s timestamp (milliseconds since the Unix epoch); the oldest is
    /// forgotten past [`KEPT`].
    pub fn record(&self, digest: Digest, timestamp_ms: u64) {
        let mut recent = self.recent.lock().expect("block times lock");
        if recent.iter().any(|(d, _)| *d == digest) {
            return;
        }
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back((digest, timestamp_ms));
    }

    /// The timestamp of `digest`, if it is one of the recent blocks.
    pub fn get(&self, digest: &Digest) -> Option<u64> {
        let recent = self.recent.lock().expect("block times lock");
        recent
            .iter()
            .rev()
            .find(|(d, _)| d == digest)
            .map(|(_, t)| *t)
    }
}

/// Milliseconds since the Unix epoch on `clock`.
pub fn unix_ms(clock: &impl Clock) -> u64 {
    clock
        .current()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long to wait, at `now_ms`, before proposing on a parent stamped `parent_ms`.
pub fn wait_before_proposing(parent_ms: u64, block_time: Duration, now_ms: u64) -> Duration {
    let earliest = parent_ms.saturating_add(block_time.as_millis() as u64);
    Duration::from_millis(earliest.saturating_sub(now_ms))
}

/// A consensus application that proposes no sooner than `block_time` after the parent's
/// timestamp, waiting before it asks `inner` to build (see the module docs).
#[derive(Clone)]
pub struct Paced<A> {
    inner: A,
    times: BlockTimes,
    block_time: Duration,
}

impl<A> Paced<A> {
    /// Wraps `inner`; `times` is filled by the application that builds and executes blocks.
    pub fn new(inner: A, times: BlockTimes, block_time: Duration) -> Paced<A> {
        Paced {
            inner,
            times,
            block_time,
        }
    }
}

impl<E, A> Application<E> for Paced<A>
where
    E: Clock + Send + 'static,
    A: Application<E, Context = BlockContext, Block = Block>,
{
    type SigningScheme = A::SigningScheme;
    type Context = BlockContext;
    type Block = Block;
    type Input = A::Input;

    fn prepare(
        &mut self,
        context: (E, BlockContext),
        ancestry: impl Ancestry<Block>,
        input: A::Input,
    ) -> impl Future<Output = Handoff<Digested<Block>>> + Send {
        self.inner.prepare(context, ancestry, input)
    }

    async fn propose(
        &mut self,
        context: (E, BlockContext),
        ancestry: impl Ancestry<Block>,
        input: A::Input,
    ) -> Option<Digested<Block>> {
        let (_, parent) = context.1.parent;
        if let Some(parent_ms) = self.times.get(&parent) {
            let wait = wait_before_proposing(parent_ms, self.block_time, unix_ms(&context.0));
            if !wait.is_zero() {
                context.0.sleep(wait).await;
            }
        }
        self.inner.propose(context, ancestry, input).await
    }

    fn verify(
        &mut self,
        context: (E, BlockContext),
        ancestry: impl Ancestry<Block>,
    ) -> impl Future<Output = bool> + Send {
        self.inner.verify(context, ancestry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_the_rest_of_the_block_time_and_remembers_recent_blocks() {
        let bt = Duration::from_millis(250);
        assert_eq!(
            wait_before_proposing(1_000, bt, 1_100),
            Duration::from_millis(150)
        );
        assert_eq!(wait_before_proposing(1_000, bt, 1_250), Duration::ZERO);
        assert_eq!(wait_before_proposing(1_000, bt, 9_000), Duration::ZERO);

        let times = BlockTimes::default();
        let digest = |i: u64| {
            Digest::from({
                let mut d = [0u8; 32];
                d[..8].copy_from_slice(&i.to_le_bytes());
                d
            })
        };
        for i in 0..(KEPT as u64 + 10) {
            times.record(digest(i), 1_000 + i);
        }
        assert_eq!(times.get(&digest(0)), None, "the oldest are forgotten");
        assert_eq!(
            times.get(&digest(KEPT as u64 + 9)),
            Some(1_000 + KEPT as u64 + 9)
        );
        times.record(digest(KEPT as u64 + 9), 5);
        assert_eq!(
            times.get(&digest(KEPT as u64 + 9)),
            Some(1_000 + KEPT as u64 + 9),
            "a block is stamped once"
        );
    }
}
