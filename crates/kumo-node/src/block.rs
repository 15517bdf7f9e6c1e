//! The block that consensus orders: a header that commits to the state after the block, and the
//! raw signed transactions.
//!
//! Encoding (commonware codec, every integer big-endian or varint as its codec says):
//!
//! ```text
//! context (round, leader ed25519 key, parent view + digest)   simplex's proposal context
//! parent          32 bytes   digest of the parent block
//! height          varint     consensus height (genesis block = 0)
//! timestamp_ms    u64        proposer's clock, strictly above the parent's
//! state_root      32 bytes   QMDB operations root after executing this block
//! state_range     2 × varint QMDB operation range [inactivity floor, size) after this block
//! txs             varint count, then each: varint length + bytes
//! ```
//!
//! The block digest is SHA-256 of that encoding. A node decodes peers' blocks with
//! [`BlockLimits`], which bound the number of transactions and their total size before anything
//! is allocated.

use std::sync::Arc;

use commonware_codec::{
    Buf, EncodeSize, Error as CodecError, FixedSize, MaxEncodeSize, RangeCfg, Read, ReadExt as _,
    Write,
};
use commonware_consensus::{
    Block as ConsensusBlock, BoundedBlock, CertifiableBlock, Heightable,
    simplex::types::Context,
    types::{Epoch, Height, Round, View},
};
use commonware_cryptography::{Digestible, Hasher as _, Sha256, Signer as _, ed25519, sha256};
use commonware_runtime::BufMut;
use commonware_storage::mmr::Location;
use commonware_utils::range::NonEmptyRange;

/// The digest of a block (and of everything else the node hashes).
pub type Digest = sha256::Digest;

/// The consensus context a block was proposed in (its round, leader and parent).
pub type BlockContext = Context<Digest, ed25519::PublicKey>;

/// How large a block may be: checked while decoding a peer's block and when proposing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Most transactions in one block.
    pub max_txs: usize,
    /// Most bytes of one transaction.
    pub max_tx_bytes: usize,
    /// Most bytes of all transactions of one block together.
    pub max_block_bytes: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            max_txs: 2_000,
            max_tx_bytes: 64 * 1024,
            max_block_bytes: 2 * 1024 * 1024,
        }
    }
}

/// A block: header fields and the signed transactions it includes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The consensus context it was proposed in.
    pub context: BlockContext,
    /// Digest of the parent block.
    pub parent: Digest,
    /// Consensus height (the genesis block is 0; the chain's height is `initial_height + height`).
    pub height: Height,
    /// Milliseconds since the Unix epoch on the proposer's clock.
    pub timestamp_ms: u64,
    /// QMDB operations root after this block: the state root.
    pub state_root: Digest,
    /// QMDB operation range after this block (with the root, the state sync target).
    pub state_range: NonEmptyRange<Location>,
    /// The signed transactions, in execution order (shared with the finalized block handed to
    /// the sink, not copied).
    pub txs: Arc<Vec<Vec<u8>>>,
}

impl Block {
    /// The genesis block: it commits to the genesis file (as its `parent`) and to the empty
    /// database that the first block writes the genesis state into.
    pub fn genesis(
        genesis_hash: Digest,
        state_root: Digest,
        state_range: NonEmptyRange<Location>,
    ) -> Block {
        Block {
            context: Context {
                round: Round::new(Epoch::zero(), View::zero()),
                leader: ed25519::PrivateKey::from_seed(0).public_key(),
                parent: (View::zero(), genesis_hash),
            },
            parent: genesis_hash,
            height: Height::zero(),
            timestamp_ms: 0,
            state_root,
            state_range,
            txs: Arc::default(),
        }
    }

    /// Total bytes of the block's transactions.
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(Vec::len).sum()
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.context.write(buf);
        self.parent.write(buf);
        self.height.write(buf);
        self.timestamp_ms.write(buf);
        self.state_root.write(buf);
        self.state_range.write(buf);
        self.txs.as_ref().write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.context.encode_size()
            + self.parent.encode_size()
            + self.height.encode_size()
            + self.timestamp_ms.encode_size()
            + self.state_root.encode_size()
            + self.state_range.encode_size()
            + self.txs.as_ref().encode_size()
    }
}

impl Read for Block {
    type Cfg = BlockLimits;

    fn read_cfg(buf: &mut impl Buf, limits: &BlockLimits) -> Result<Self, CodecError> {
        let context = BlockContext::read(buf)?;
        let parent = Digest::read(buf)?;
        let height = Height::read(buf)?;
        let timestamp_ms = u64::read(buf)?;
        let state_root = Digest::read(buf)?;
        let state_range = NonEmptyRange::<Location>::read(buf)?;
        let cfg = (
            RangeCfg::from(0..=limits.max_txs),
            (RangeCfg::from(0..=limits.max_tx_bytes), ()),
        );
        let txs = Arc::new(Vec::<Vec<u8>>::read_cfg(buf, &cfg)?);
        let block = Block {
            context,
            parent,
            height,
            timestamp_ms,
            state_root,
            state_range,
            txs,
        };
        if block.tx_bytes() > limits.max_block_bytes {
            return Err(CodecError::Invalid(
                "Block",
                "transactions exceed max_block_bytes",
            ));
        }
        Ok(block)
    }
}

impl Digestible for Block {
    type Digest = Digest;

    /// SHA-256 of the encoding, hashed piece by piece: a block is up to a few MiB, and
    /// encoding it into a buffer first would copy all of it (into freshly faulted pages) only
    /// to hash it once. The pieces are the encoding's: the header fields, then the
    /// transactions as a `Vec<Vec<u8>>` writes them (its length, then each one's length and
    /// bytes); a test checks the two agree.
    fn digest(&self) -> Digest {
        let mut hasher = Sha256::default();
        let mut small = Vec::with_capacity(256);
        self.context.write(&mut small);
        self.parent.write(&mut small);
        self.height.write(&mut small);
        self.timestamp_ms.write(&mut small);
        self.state_root.write(&mut small);
        self.state_range.write(&mut small);
        self.txs.len().write(&mut small);
        for tx in self.txs.iter() {
            tx.len().write(&mut small);
            if small.len() + tx.len() <= small.capacity() {
                small.extend_from_slice(tx);
            } else {
                hasher.update(&small);
                hasher.update(tx);
                small.clear();
            }
        }
        hasher.update(&small);
        hasher.finalize().1
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        self.height
    }
}

impl ConsensusBlock for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl CertifiableBlock for Block {
    type Context = BlockContext;

    fn context(&self) -> BlockContext {
        self.context.clone()
    }
}

impl BoundedBlock for Block {
    fn max_encode_size(limits: &BlockLimits) -> usize {
        // Each transaction carries a varint length prefix of at most 5 bytes (u32 lengths).
        BlockContext::MAX_ENCODE_SIZE
            + Digest::SIZE
            + Height::MAX_ENCODE_SIZE
            + u64::SIZE
            + Digest::SIZE
            + NonEmptyRange::<Location>::MAX_ENCODE_SIZE
            + 5
            + limits.max_txs * 5
            + limits.max_block_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{Decode as _, Encode as _};
    use commonware_utils::non_empty_range;

    fn block(txs: Vec<Vec<u8>>) -> Block {
        let mut b = Block::genesis(
            Sha256::hash(&[b"genesis"]),
            Sha256::hash(&[b"root"]),
            non_empty_range!(Location::new(0), Location::new(1)),
        );
        b.height = Height::new(3);
        b.timestamp_ms = 1_000;
        b.txs = Arc::new(txs);
        b
    }

    #[test]
    fn round_trips_and_digest_covers_the_txs() {
        let a = block(vec![b"tx-1".to_vec(), vec![7; 300]]);
        let bytes = a.encode();
        let limits = BlockLimits::default();
        let decoded = Block::decode_cfg(bytes, &limits).unwrap();
        assert_eq!(decoded, a);
        assert_eq!(decoded.digest(), a.digest());
        let b = block(vec![b"tx-2".to_vec(), vec![7; 300]]);
        assert_ne!(a.digest(), b.digest());
        assert!(a.encode_size() <= Block::max_encode_size(&limits));
    }

    /// The digest hashed while writing is SHA-256 of the encoding, whatever the sizes of the
    /// pieces relative to the writer's buffer.
    #[test]
    fn the_digest_is_sha256_of_the_encoding() {
        let sizes = [0, 1, 100, 255, 256, 257, 511, 4096, 70_000];
        for (i, first) in sizes.iter().enumerate() {
            let txs: Vec<Vec<u8>> = sizes[i..]
                .iter()
                .map(|n| (0..*n).map(|b| (b % 251) as u8).collect())
                .chain(std::iter::once(vec![9; *first]))
                .collect();
            let b = block(txs);
            assert_eq!(
                b.digest(),
                Sha256::hash(&[&b.encode()]),
                "from size {first}"
            );
        }
        assert_eq!(
            block(vec![]).digest(),
            Sha256::hash(&[&block(vec![]).encode()])
        );
    }

    #[test]
    fn decoding_refuses_blocks_over_the_limits() {
        let limits = BlockLimits {
            max_txs: 2,
            max_tx_bytes: 10,
            max_block_bytes: 15,
        };
        let too_many = block(vec![vec![1]; 3]).encode();
        assert!(Block::decode_cfg(too_many, &limits).is_err());
        let too_long = block(vec![vec![1; 11]]).encode();
        assert!(Block::decode_cfg(too_long, &limits).is_err());
        let too_big = block(vec![vec![1; 10], vec![1; 10]]).encode();
        assert!(Block::decode_cfg(too_big, &limits).is_err());
        let ok = block(vec![vec![1; 10], vec![1; 5]]).encode();
        assert!(Block::decode_cfg(ok, &limits).is_ok());
    }
}
