//! [`Signer`]: signs transactions with one account key and submits them, keeping the account's
//! nonce so that several messages can be in flight at once (the provider bids on many orders).
//!
//! - The chain id and fee schedule are read once from the node; the fee of each transaction is
//!   the smallest the chain accepts for its length (`Params::min_fee`).
//! - Nonces are handed out locally under a lock, one per admitted transaction; when the node
//!   says the nonce is wrong (another program used the key, or a transaction was dropped) the
//!   signer reads the account's nonce again and retries.
//! - [`Signer::submit`] returns once the transaction is committed, with its outcome; a
//!   transaction committed with an error is [`SignerError::Failed`].
//!
//! ```no_run
//! # async fn demo(key: kumo_types::SecretKey) -> Result<(), kumo_client::signer::SignerError> {
//! use kumo_client::{NodeClient, signer::Signer};
//! let node = NodeClient::new("http://127.0.0.1:26657")?;
//! let signer = Signer::connect(node, key).await?;
//! let to = signer.address();
//! signer.submit(vec![kumo_types::Msg::Send { to, amount: "1ukumo".parse().unwrap() }]).await?;
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use kumo_api::types::ErrorCode;
use kumo_blockstore::TxRecord;
use kumo_chain::Params;
use kumo_types::{
    Address, Coin, Msg, SecretKey,
    tx::{TxBody, sign_tx},
};
use tokio::sync::Mutex;

use crate::{ClientError, NodeClient, Wait};

/// How long [`Signer::submit`] waits for a committed block holding the transaction.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it asks whether the transaction is committed.
const POLL: Duration = Duration::from_millis(100);
/// How often a nonce error is answered by reading the account again and retrying.
const NONCE_RETRIES: usize = 3;

/// Why a transaction did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The node refused it or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// It was committed, but a message failed (the fee was paid, nothing else changed).
    #[error("transaction {hash} failed: {message}")]
    Failed {
        /// Its hash, hex.
        hash: String,
        /// The chain's explanation.
        message: String,
    },
    /// It was admitted but no committed block held it in time.
    #[error(
        "transaction {hash} was not committed within {secs} s: the node may be stalled; query it later"
    )]
    Timeout {
        /// Its hash, hex.
        hash: String,
        /// How long was waited.
        secs: u64,
    },
}

/// A committed transaction.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Its block's height.
    pub height: u64,
    /// The transaction and its outcome (events included).
    pub tx: TxRecord,
}

/// Signs and submits transactions of one account.
#[derive(Debug)]
pub struct Signer {
    client: NodeClient,
    key: SecretKey,
    address: Address,
    chain_id: String,
    params: Params,
    /// The nonce the next transaction carries; `None`: read it from the node first.
    nonce: Mutex<Option<u64>>,
}

impl Signer {
    /// A signer for `key` on the node behind `client` (reads the chain id and fee parameters).
    pub async fn connect(client: NodeClient, key: SecretKey) -> Result<Signer, SignerError> {
        let status = client.status().await?;
        let params = client.params().await?.value;
        let address = Address::from_public_key(&key.public_key());
        Ok(Signer {
            client,
            key,
            address,
            chain_id: status.chain_id,
            params,
            nonce: Mutex::new(None),
        })
    }

    /// The signing account.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The node client.
    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    /// The chain parameters read at connect time.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Signs `msgs` into one transaction, submits it and waits until it is committed.
    pub async fn submit(&self, msgs: Vec<Msg>) -> Result<Committed, SignerError> {
        let hash = self.admit(&msgs).await?;
        self.wait_committed(hash).await
    }

    /// Signs and submits until the mempool admits the transaction; returns its hash.
    async fn admit(&self, msgs: &[Msg]) -> Result<[u8; 32], SignerError> {
        let mut nonce = self.nonce.lock().await;
        let mut attempt = 0;
        loop {
            let n = match *nonce {
                Some(n) => n,
                None => self.client.account(&self.address).await?.value.nonce,
            };
            let tx = self.sign(n, msgs);
            // The same signed bytes again: the chain admits them at most once.
            let submitted = crate::retry_unreachable(|| self.client.submit(&tx, Wait::No)).await;
            match submitted {
                Ok(r) => {
                    *nonce = Some(n + 1);
                    return Ok(r.hash);
                }
                Err(e) if is_nonce_error(&e) && attempt < NONCE_RETRIES => {
                    attempt += 1;
                    tracing::debug!(nonce = n, "nonce refused ({e}): reading the account again");
                    *nonce = None;
                    // A transaction of ours may still be pending: give the block a moment.
                    tokio::time::sleep(POLL * attempt as u32).await;
                }
                Err(e) => {
                    *nonce = None;
                    return Err(e.into());
                }
            }
        }
    }

    fn sign(&self, nonce: u64, msgs: &[Msg]) -> Vec<u8> {
        let body = |fee: u128| TxBody {
            chain_id: self.chain_id.clone(),
            nonce,
            fee: Coin::new(self.params.fee_denom.clone(), fee),
            memo: String::new(),
            msgs: msgs.to_vec(),
        };
        // The fee is a fixed-width number: its value does not change the length it pays for.
        let fee = self
            .params
            .min_fee(sign_tx(&self.key, &body(0)).len(), msgs.len());
        sign_tx(&self.key, &body(fee))
    }

    async fn wait_committed(&self, hash: [u8; 32]) -> Result<Committed, SignerError> {
        let start = Instant::now();
        let hex_hash = hex::encode(hash);
        loop {
            match self.client.tx(&hash).await {
                Ok(view) => {
                    if let Some(e) = &view.tx.result.error {
                        // A committed failure used the nonce; a rejection in the block did not.
                        if view.tx.result.sender.is_none() {
                            *self.nonce.lock().await = None;
                        }
                        return Err(SignerError::Failed {
                            hash: hex_hash,
                            message: e.message.clone(),
                        });
                    }
                    return Ok(Committed {
                        height: view.height,
                        tx: view.tx,
                    });
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            if start.elapsed() > COMMIT_TIMEOUT {
                *self.nonce.lock().await = None;
                return Err(SignerError::Timeout {
                    hash: hex_hash,
                    secs: COMMIT_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether the node refused a transaction for its nonce (stale, taken, or too far ahead).
fn is_nonce_error(e: &ClientError) -> bool {
    match e {
        ClientError::Api { code, reason, .. } => {
            matches!(code, ErrorCode::NonceTaken | ErrorCode::NonceGap)
                || (*code == ErrorCode::TxRejected && reason.as_deref() == Some("nonce"))
        }
        _ => false,
    }
}
