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
    "6dca406d327fe2df89c624fed54f52f7b60a21a35fa7b3c416ccd8147ac68544",
    "2cdc1a2982c95e15e022e01fd0edc8a9fc3747f07bd0f80aee93f3a726c84d0b",
);
const TX_HASH: &str = "67cce81e0dd1f725c4317e0064042398267ff336ce35c4d1cb3b394c9ba69c08";

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
