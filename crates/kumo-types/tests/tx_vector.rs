//! The test vector of `docs/tx-format.md`: a fixed key and body must give these exact bytes.

use kumo_types::{
    Address, Coin, Coins, DecCoin, Msg, OrderId, SecretKey, TxBody,
    tx::{MAX_TX_BYTES, TxEnvelope, sign_tx, tx_hash},
};

fn seed() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn body() -> TxBody {
    TxBody {
        chain_id: "kumo-devnet-1".into(),
        nonce: 7,
        fee: Coin::new("ukumo", 5000),
        memo: "hi".into(),
        msgs: vec![
            Msg::Send {
                to: Address([0x22; 20]),
                amount: "1000ukumo".parse::<Coins>().unwrap(),
            },
            Msg::CreateBid {
                order: OrderId {
                    owner: Address([0x33; 20]),
                    dseq: 42,
                    gseq: 1,
                    oseq: 1,
                },
                price: DecCoin::new("uusd", "0.5".parse().unwrap()),
                deposit: Coin::new("ukumo", 500_000),
                gpus: vec![],
            },
        ],
    }
}

const PUBLIC_KEY: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
const ADDRESS: &str = "kumo12er44f65vdr5cq59mawm7272ku76v5f4d2arpm";
const TX_HEX: &str = concat!(
    "01",
    "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    "0d0000006b756d6f2d6465766e65742d31",
    "0700000000000000",
    "05000000756b756d6f",
    "88130000000000000000000000000000",
    "020000006869",
    "02000000",
    "00",
    "2222222222222222222222222222222222222222",
    "01000000",
    "05000000756b756d6f",
    "e8030000000000000000000000000000",
    "0d",
    "3333333333333333333333333333333333333333",
    "2a00000000000000",
    "01000000",
    "01000000",
    "0400000075757364",
    "0000b2d3595bf0060000000000000000",
    "05000000756b756d6f",
    "20a10700000000000000000000000000",
    "00000000",
    "3b76956210b9acad79214c6260aa9418a56f0ff7f68120de8d311ec5818ad63c",
    "86d67fc653d13d2fe566292c7d198c98aef7f1f65f1b608096af8add12fb5b0f",
);
const TX_HASH: &str = "c24814b2d024ae7c33c354f0b1fb64ae5de7a316a03b80b44e14319214fe8014";

#[test]
fn documented_vector() {
    let key = SecretKey::from_seed(seed());
    let tx = sign_tx(&key, &body());
    assert_eq!(key.public_key().to_string(), PUBLIC_KEY);
    assert_eq!(
        Address::from_public_key(&key.public_key()).to_string(),
        ADDRESS
    );
    assert_eq!(hex::encode(&tx), TX_HEX);
    assert_eq!(hex::encode(tx_hash(&tx)), TX_HASH);
    let v = TxEnvelope::parse(&tx, MAX_TX_BYTES)
        .unwrap()
        .verify()
        .unwrap();
    assert_eq!(v.body, body());
}
