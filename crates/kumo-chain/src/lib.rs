//! Kumo's marketplace state machine: deterministic, over a key-value [`Store`].
//!
//! Modules, as BRIEF §3 lists them: [`bank`], [`provider`], [`audit`], [`deployment`],
//! [`market`], [`escrow`], with [`params`], [`genesis`] and typed [`events`]. [`App`] drives
//! them: [`App::init_genesis`], then per block [`App::begin_block`], [`App::deliver_tx`] (or
//! [`App::execute_block`] for a whole block with batch signature verification),
//! [`App::end_block`]; [`query`] answers the node API's questions at the last committed height.
//!
//! Determinism: no floating point, no clock, no hash-map iteration in anything that writes;
//! state is Borsh-encoded and keyed so that every scan is in a fixed order.
//!
//! ```
//! use kumo_chain::{App, Genesis, MemStore, genesis::GenesisBalance};
//! use kumo_types::{Address, Coins, Msg, SecretKey, TxBody, Coin, tx::sign_tx};
//!
//! let alice = SecretKey::from_seed([1; 32]);
//! let alice_addr = Address::from_public_key(&alice.public_key());
//! let genesis = Genesis {
//!     chain_id: "kumo-doc".into(),
//!     initial_height: 0,
//!     params: Default::default(),
//!     balances: vec![GenesisBalance { address: alice_addr, coins: "1000000ukumo".parse().unwrap() }],
//! };
//! let mut app = App::init_genesis(MemStore::new(), &genesis).unwrap();
//! let tx = sign_tx(&alice, &TxBody {
//!     chain_id: "kumo-doc".into(),
//!     nonce: 0,
//!     fee: Coin::new("ukumo", 10_000),
//!     memo: String::new(),
//!     msgs: vec![Msg::Send { to: Address([7; 20]), amount: "5ukumo".parse::<Coins>().unwrap() }],
//! });
//! let block = app.execute_block(1, &[tx.clone()]).unwrap();
//! assert!(block.txs[0].as_ref().unwrap().result.is_ok());
//! // Replaying the same bytes is rejected: the nonce moved on.
//! let again = app.execute_block(2, &[tx]).unwrap();
//! assert!(again.txs[0].is_err());
//! ```

pub mod app;
pub mod audit;
pub mod bank;
pub mod bench;
pub mod deployment;
pub mod escrow;
pub mod events;
pub mod genesis;
pub mod market;
pub mod params;
pub mod provider;
pub mod query;
pub mod state;
pub mod store;
pub mod testkit;

pub use app::{
    App, BlockError, BlockOutput, BlockResult, LoadError, TxFailure, TxReceipt, TxRejected,
};
pub use events::{Event, EventRecord};
pub use genesis::Genesis;
pub use params::Params;
pub use store::{MemStore, StateRoot, Store};

/// Why a message failed; the transaction then changes only its fee and nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// bank.
    #[error(transparent)]
    Bank(#[from] bank::BankError),
    /// provider.
    #[error(transparent)]
    Provider(#[from] provider::ProviderError),
    /// attribute lists.
    #[error(transparent)]
    Attributes(#[from] provider::AttributeError),
    /// audit.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// deployment.
    #[error(transparent)]
    Deployment(#[from] deployment::DeploymentError),
    /// market.
    #[error(transparent)]
    Market(#[from] market::MarketError),
    /// escrow.
    #[error(transparent)]
    Escrow(#[from] escrow::EscrowError),
}

/// What a message handler works with: the (buffered) store, parameters, height, events.
pub(crate) struct Ctx<'a> {
    pub(crate) store: &'a mut dyn Store,
    pub(crate) params: &'a Params,
    pub(crate) height: u64,
    pub(crate) events: Vec<Event>,
    /// Whether this is the end of the block rather than a transaction: what becomes due now is
    /// due at the next block's end, this one's having been listed already.
    pub(crate) end_of_block: bool,
}
