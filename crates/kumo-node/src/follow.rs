//! How a follower learns what was finalized without taking part in consensus.
//!
//! Validators broadcast every certificate they assemble (notarizations, nullifications,
//! finalizations) to all connected peers on [`crate::engine::channel::CERTIFICATES`]; a follower
//! is one of those peers. [`relay_finalizations`] keeps the finalizations, checks each against
//! the validator set (a quorum of validator signatures over the block's digest, in this chain's
//! namespace), and reports it to marshal, as simplex does on a validator. Marshal then does the
//! rest with its own machinery: it takes the block from the block broadcast or fetches it from
//! peers, and when the finalization is above the blocks it has, it backfills the gap by height
//! and parent digest (a follower that starts late, or restarts, catches up this way).
//!
//! Marshal trusts what consensus reports, so nothing reaches it unverified: a certificate that
//! does not decode or a finalization that does not verify blocks the peer that sent it.
//! Finalizations of views at or below the highest one reported are dropped before verification
//! (every validator broadcasts each certificate, and the newest one already covers older
//! heights through backfill).

use commonware_codec::Decode as _;
use commonware_consensus::{
    Reporter as _,
    simplex::types::{Activity, Certificate},
    types::View,
};
use commonware_cryptography::certificate::Verifier as _;
use commonware_p2p::{Blocker, Receiver};
use commonware_parallel::Sequential;
use rand_core_010::CryptoRng;
use tracing::{debug, warn};

use crate::{
    app::{Marshal, Scheme},
    block::Digest,
};

/// Reads certificates from validators until the channel closes; reports every new, valid
/// finalization to `marshal`. `scheme` is a verifier over the validator set.
pub(crate) async fn relay_finalizations<R, B>(
    mut rng: impl CryptoRng,
    scheme: Scheme,
    mut certificates: R,
    mut blocker: B,
    mut marshal: Marshal,
) where
    R: Receiver<PublicKey = commonware_cryptography::ed25519::PublicKey>,
    B: Blocker<PublicKey = commonware_cryptography::ed25519::PublicKey>,
{
    let codec = scheme.certificate_codec_config();
    let mut highest = View::zero();
    while let Ok((peer, message)) = certificates.recv().await {
        let certificate = match Certificate::<Scheme, Digest>::decode_cfg(message, &codec) {
            Ok(c) => c,
            Err(e) => {
                warn!(%peer, error = %e, "undecodable certificate: blocking the peer");
                let _ = blocker.block(peer);
                continue;
            }
        };
        let Certificate::Finalization(finalization) = certificate else {
            continue;
        };
        let view = finalization.round().view();
        if view <= highest {
            continue;
        }
        if !finalization.verify(&mut rng, &scheme, &Sequential) {
            warn!(%peer, %view, "finalization does not verify: blocking the peer");
            let _ = blocker.block(peer);
            continue;
        }
        highest = view;
        debug!(%view, "finalization from the validators");
        let _ = marshal.report(Activity::Finalization(finalization));
    }
}
