//! Helpers to drive an [`App`] over a [`MemStore`] with signed transactions: for tests,
//! benchmarks and examples.
//!
//! Each [`Actor`] tracks its own nonce; [`Harness::submit`] signs and runs one transaction in a
//! block of its own, [`Harness::block`] runs many. Keys are derived from fixed seeds, so runs
//! are reproducible.

use kumo_types::{
    Address, Attribute, Coin, Cpu, DecCoin, Endpoint, EndpointKind, GroupSpec, Memory, Msg,
    PlacementRequirements, ProviderFields, ProviderInfo, ResourceUnit, Resources, SecretKey,
    Storage, TxBody, tx::sign_tx,
};

use crate::{
    App, BlockResult, Genesis, MemStore, TxReceipt, TxRejected, events::EventRecord,
    genesis::GenesisBalance,
};

/// The chain id the harness uses.
pub const CHAIN_ID: &str = "kumo-test-1";

/// A key with its address and next nonce.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Secret key.
    pub key: SecretKey,
    /// Address.
    pub addr: Address,
    /// Nonce of its next transaction.
    pub nonce: u64,
}

impl Actor {
    /// The actor whose seed is `[seed; 32]`.
    pub fn from_seed(seed: u8) -> Actor {
        Actor::from_seed_bytes([seed; 32])
    }

    /// The actor with this 32-byte seed.
    pub fn from_seed_bytes(seed: [u8; 32]) -> Actor {
        let key = SecretKey::from_seed(seed);
        let addr = Address::from_public_key(&key.public_key());
        Actor {
            key,
            addr,
            nonce: 0,
        }
    }

    /// The actor number `n` of a large population (distinct seeds for any `u32`).
    pub fn numbered(n: u32) -> Actor {
        let mut seed = [0xA5u8; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        Actor::from_seed_bytes(seed)
    }

    /// Signs `msgs` with the next nonce and a fee of `fee` ukumo, and advances the nonce.
    pub fn sign(&mut self, fee: u128, msgs: Vec<Msg>) -> Vec<u8> {
        let tx = sign_tx(
            &self.key,
            &TxBody {
                chain_id: CHAIN_ID.into(),
                nonce: self.nonce,
                fee: Coin::new("ukumo", fee),
                memo: String::new(),
                msgs,
            },
        );
        self.nonce += 1;
        tx
    }
}

/// A fee that covers any transaction the harness builds under default params.
pub const FEE: u128 = 200_000;

/// A chain in memory with a block counter.
pub struct Harness {
    /// The chain.
    pub app: App<MemStore>,
    /// Events of every block so far.
    pub events: Vec<EventRecord>,
}

impl Harness {
    /// A chain whose genesis funds `accounts` with `coins` each.
    pub fn new(accounts: &[Address], coins: &str) -> Harness {
        Harness::with_genesis(Genesis {
            chain_id: CHAIN_ID.into(),
            initial_height: 0,
            params: Default::default(),
            balances: accounts
                .iter()
                .map(|a| GenesisBalance {
                    address: *a,
                    coins: coins.parse().expect("valid coins"),
                })
                .collect(),
        })
    }

    /// A chain from a genesis.
    pub fn with_genesis(g: Genesis) -> Harness {
        Harness {
            app: App::init_genesis(MemStore::new(), &g).expect("valid genesis"),
            events: Vec::new(),
        }
    }

    /// The height of the next block.
    pub fn next_height(&self) -> u64 {
        self.app.height() + 1
    }

    /// Runs one block with these transactions.
    pub fn block(&mut self, txs: &[Vec<u8>]) -> BlockResult {
        let h = self.next_height();
        let r = self.app.execute_block(h, txs).expect("heights follow");
        for t in r.txs.iter().flatten() {
            self.events.extend(t.events.iter().cloned());
        }
        self.events.extend(r.end_events.iter().cloned());
        r
    }

    /// Runs empty blocks up to and including `height`.
    pub fn advance_to(&mut self, height: u64) {
        while self.app.height() < height {
            self.block(&[]);
        }
    }

    /// Signs `msgs` as `actor` and runs them alone in a block. The nonce advances only if the
    /// transaction was not rejected.
    pub fn submit(&mut self, actor: &mut Actor, msgs: Vec<Msg>) -> Result<TxReceipt, TxRejected> {
        let tx = actor.sign(FEE, msgs);
        let r = self.block(&[tx]).txs.remove(0);
        if r.is_err() {
            actor.nonce -= 1;
        }
        r
    }

    /// Like [`Harness::submit`], panicking unless every message applied.
    pub fn ok(&mut self, actor: &mut Actor, msgs: Vec<Msg>) -> TxReceipt {
        let r = self.submit(actor, msgs).expect("tx accepted");
        if let Err(f) = &r.result {
            panic!("message {} ({}) failed: {}", f.index, f.msg, f.error);
        }
        r
    }

    /// The failure of a transaction expected to be included but fail.
    pub fn fails(&mut self, actor: &mut Actor, msgs: Vec<Msg>) -> crate::MsgError {
        let r = self.submit(actor, msgs).expect("tx accepted");
        r.result.expect_err("message should fail").error
    }

    /// Queries at the last committed height.
    pub fn query(&self) -> crate::query::Queries<'_> {
        crate::query::Queries::new(self.app.store())
    }

    /// Balance of `addr` in `denom`.
    pub fn balance(&self, addr: &Address, denom: &str) -> u128 {
        crate::bank::balance(self.app.store(), addr, denom)
    }
}

/// Provider fields with these attributes.
pub fn provider_fields(attrs: &[(&str, &str)]) -> ProviderFields {
    ProviderFields {
        host_uri: "https://provider.example:8443".into(),
        attributes: attrs.iter().map(|(k, v)| Attribute::new(*k, *v)).collect(),
        info: ProviderInfo {
            email: "ops@provider.example".into(),
            website: "https://provider.example".into(),
        },
        tls_cert_sha256: [7; 32],
    }
}

/// A one-unit group named `name` asking for `attrs`, at `price` (e.g. `"10ukumo"` per block,
/// decimal allowed: `"0.5uusd"`).
pub fn group(name: &str, attrs: &[(&str, &str)], price: &str) -> GroupSpec {
    let split = price
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .expect("price has a denom");
    GroupSpec {
        name: name.into(),
        requirements: PlacementRequirements {
            signed_by: Default::default(),
            attributes: attrs.iter().map(|(k, v)| Attribute::new(*k, *v)).collect(),
        },
        resources: vec![ResourceUnit {
            resources: Resources {
                id: 1,
                cpu: Cpu {
                    millis: 500,
                    attributes: vec![],
                },
                memory: Memory {
                    bytes: 512 << 20,
                    attributes: vec![],
                },
                storage: vec![Storage {
                    name: "default".into(),
                    bytes: 1 << 30,
                    attributes: vec![],
                }],
                gpu: Default::default(),
                endpoints: vec![Endpoint {
                    kind: EndpointKind::SharedHttp,
                    sequence_number: 0,
                }],
            },
            count: 1,
            price: DecCoin::new(
                &price[split..],
                price[..split].parse().expect("decimal price"),
            ),
        }],
    }
}
