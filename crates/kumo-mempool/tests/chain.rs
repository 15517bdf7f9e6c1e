//! The mempool with the real chain's admission check: signed transactions, `App::check_tx`,
//! blocks executed from what the pool reaps.

use kumo_chain::{
    MemStore, TxRejected,
    testkit::{Actor, FEE, Harness},
};
use kumo_mempool::{Config, Mempool, MempoolError, admit, readmit};
use kumo_types::{Coin, Msg, TxBody, tx::sign_tx};

fn send(a: &mut Actor, to: &Actor) -> Vec<u8> {
    a.sign(
        FEE,
        vec![Msg::Send {
            to: to.addr,
            amount: "1ukumo".parse().unwrap(),
        }],
    )
}

fn setup() -> (Harness, Actor, Actor) {
    let a = Actor::from_seed(1);
    let b = Actor::from_seed(2);
    (Harness::new(&[a.addr, b.addr], "100000000ukumo"), a, b)
}

type App = kumo_chain::App<MemStore>;

fn insert(pool: &mut Mempool, app: &App, tx: &[u8]) -> Result<[u8; 32], MempoolError<TxRejected>> {
    pool.insert(tx.to_vec(), |b| admit(app, b))
}

#[test]
fn admits_valid_and_refuses_bad_transactions_clearly() {
    let (h, mut a, b) = setup();
    let mut pool = Mempool::new(Config::default());
    let tx = send(&mut a, &b);
    let hash = insert(&mut pool, &h.app, &tx).unwrap();
    assert_eq!(hash, kumo_types::tx::tx_hash(&tx));
    assert!(pool.contains(&hash));

    let dup = insert(&mut pool, &h.app, &tx).unwrap_err();
    assert!(matches!(dup, MempoolError::AlreadyInMempool(_)));
    assert!(dup.to_string().contains("already in the mempool"), "{dup}");

    let mut forged = send(&mut a, &b);
    let n = forged.len();
    forged[n - 1] ^= 1;
    let err = insert(&mut pool, &h.app, &forged).unwrap_err();
    assert!(
        matches!(
            err,
            MempoolError::Rejected(TxRejected::Envelope(kumo_types::TxError::BadSignature))
        ),
        "{err}"
    );

    let other_chain = sign_tx(
        &a.key,
        &TxBody {
            chain_id: "elsewhere-1".into(),
            nonce: 1,
            fee: Coin::new("ukumo", FEE),
            memo: String::new(),
            msgs: vec![Msg::DeleteProvider],
        },
    );
    let err = insert(&mut pool, &h.app, &other_chain).unwrap_err();
    assert!(matches!(
        err,
        MempoolError::Rejected(TxRejected::WrongChain { .. })
    ));

    let cheap = a.sign(1, vec![Msg::DeleteProvider]);
    let err = insert(&mut pool, &h.app, &cheap).unwrap_err();
    assert!(matches!(
        err,
        MempoolError::Rejected(TxRejected::FeeTooLow { .. })
    ));
    assert_eq!(pool.len(), 1);
}

#[test]
fn reaped_transactions_all_apply_in_a_block() {
    let (mut h, mut a, mut b) = setup();
    let mut pool = Mempool::new(Config::default());
    // Nonces of each account arrive out of order, and the accounts interleave.
    let a_txs: Vec<Vec<u8>> = (0..4).map(|_| send(&mut a, &b)).collect();
    let b_txs: Vec<Vec<u8>> = (0..3).map(|_| send(&mut b, &a)).collect();
    for i in [2, 0, 3, 1] {
        insert(&mut pool, &h.app, &a_txs[i]).unwrap();
    }
    for i in [1, 2, 0] {
        insert(&mut pool, &h.app, &b_txs[i]).unwrap();
    }
    assert_eq!(pool.next_nonce(&a.addr), Some(4));
    let reaped = pool.reap(100, 1 << 20);
    assert_eq!(reaped.len(), 7);
    let block = h.block(&reaped);
    for r in &block.txs {
        let receipt = r.as_ref().expect("the chain accepts the reaped order");
        assert!(receipt.result.is_ok());
    }
    let hashes: Vec<[u8; 32]> = reaped.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
    pool.remove_committed(&hashes);
    assert!(pool.recheck(|bytes| admit(&h.app, bytes)).is_empty());
    assert!(pool.is_empty());
    assert_eq!(pool.bytes(), 0);
}

#[test]
fn recheck_drops_what_a_block_made_stale() {
    let (mut h, mut a, b) = setup();
    let mut pool = Mempool::new(Config::default());
    let mut twin = a.clone();
    let ours = send(&mut a, &b);
    let next = send(&mut a, &b);
    insert(&mut pool, &h.app, &ours).unwrap();
    insert(&mut pool, &h.app, &next).unwrap();
    // Another node's block used nonce 0 with a different transaction.
    let theirs = twin.sign(FEE, vec![Msg::DeleteProvider]);
    h.block(std::slice::from_ref(&theirs));
    pool.remove_committed(&[kumo_types::tx::tx_hash(&theirs)]);
    let dropped = pool.recheck(|bytes| admit(&h.app, bytes));
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].0, kumo_types::tx::tx_hash(&ours));
    assert!(
        matches!(
            dropped[0].1,
            MempoolError::Rejected(TxRejected::Nonce { want: 1, got: 0 })
        ),
        "{}",
        dropped[0].1
    );
    // Nonce 1 is next now: it is reaped and applies.
    let reaped = pool.reap(10, 1 << 20);
    assert_eq!(reaped, vec![next.clone()]);
    assert!(h.block(&reaped).txs[0].as_ref().unwrap().result.is_ok());
    // A stale nonce is refused at the door, too.
    let err = insert(&mut pool, &h.app, &ours).unwrap_err();
    assert!(
        matches!(err, MempoolError::Rejected(TxRejected::Nonce { .. })),
        "{err}"
    );
}

#[test]
fn the_cheap_recheck_drops_stale_nonces_and_unpayable_fees() {
    let mut a = Actor::from_seed(1);
    let b = Actor::from_seed(2);
    let mut h = Harness::new(&[a.addr], &format!("{}ukumo", 3 * FEE));
    let mut pool = Mempool::new(Config::default());
    let mut twin = a.clone();
    // Nonce 0 spends so much that nonce 1 can no longer pay its fee.
    let big = a.sign(
        FEE,
        vec![Msg::Send {
            to: b.addr,
            amount: format!("{}ukumo", FEE + 1).parse().unwrap(),
        }],
    );
    let next = send(&mut a, &b);
    insert(&mut pool, &h.app, &big).unwrap();
    insert(&mut pool, &h.app, &next).unwrap();
    let block = pool.reap(1, 1 << 20);
    assert_eq!(block, vec![big.clone()]);
    h.block(&block);
    pool.remove_committed(&[kumo_types::tx::tx_hash(&big)]);
    let dropped = pool.recheck_admitted(|adm| readmit(&h.app, adm));
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].0, kumo_types::tx::tx_hash(&next));
    assert!(
        matches!(
            dropped[0].1,
            MempoolError::Rejected(TxRejected::CannotPayFee(_))
        ),
        "{}",
        dropped[0].1
    );
    assert!(pool.is_empty());

    // A stale nonce (another node's block used it) is dropped too.
    let mut h = Harness::new(&[twin.addr], "100000000ukumo");
    let mut pool = Mempool::new(Config::default());
    let mut other = twin.clone();
    let ours = send(&mut twin, &b);
    insert(&mut pool, &h.app, &ours).unwrap();
    h.block(&[other.sign(FEE, vec![Msg::DeleteProvider])]);
    let dropped = pool.recheck_admitted(|adm| readmit(&h.app, adm));
    assert!(
        matches!(
            dropped[..],
            [(
                _,
                MempoolError::Rejected(TxRejected::Nonce { want: 1, got: 0 })
            )]
        ),
        "{dropped:?}"
    );
}
