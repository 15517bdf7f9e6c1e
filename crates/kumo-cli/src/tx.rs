//! `kumo tx send`: sign a transaction with a key of the keyring and submit it (over
//! [`kumo_client`]). The chain id, the sender's nonce and the smallest fee come from the node.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use kumo_client::{NodeClient, Wait, types::TxStatus};
use kumo_types::{
    Address, Coin, Coins, Msg, SecretKey,
    tx::{TxBody, sign_tx},
};

use crate::{
    client::{NodeArgs, block_on},
    keys::{Purpose, StoreArgs},
    output::{OutputFormat, print_json},
};

/// Transactions.
#[derive(Debug, Subcommand)]
pub(crate) enum TxCommand {
    /// Send coins from a key of the keyring to an address (or to another key, by name).
    Send(SendArgs),
}

/// `kumo tx send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The sending key's name.
    #[arg(long, env = "KUMO_FROM", value_name = "KEY")]
    pub(crate) from: String,
    /// The recipient: an address (`kumo1…`) or a key name in the keyring.
    pub(crate) to: String,
    /// What to send, e.g. `1000ukumo` or `5ukumo,7uusd`.
    pub(crate) coins: Coins,
    /// Fee in the chain's fee denomination; default: the smallest the chain accepts.
    #[arg(long, value_name = "AMOUNT")]
    pub(crate) fee: Option<u128>,
    /// A note stored with the transaction.
    #[arg(long, default_value = "")]
    pub(crate) memo: String,
    /// Wait until the transaction is in a committed block (up to 60 s) and print its outcome.
    #[arg(long)]
    pub(crate) wait: bool,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

impl TxCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        let TxCommand::Send(a) = self;
        let keystore = a.store.open(Some(Purpose::Unlock))?;
        let key = keystore
            .secret_key(&a.from)
            .with_context(|| format!("key {:?}", a.from))?;
        let to = match a.to.parse::<Address>() {
            Ok(addr) => addr,
            Err(parse) => keystore.show(&a.to).map(|k| k.address).map_err(|_| {
                anyhow::anyhow!(
                    "{:?} is neither an address ({parse}) nor a key in the keyring",
                    a.to
                )
            })?,
        };
        let client = a.node.client()?;
        block_on(send(&client, &key, to, a, format))?
    }
}

async fn send(
    client: &NodeClient,
    key: &SecretKey,
    to: Address,
    a: &SendArgs,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    if a.coins.is_empty() {
        bail!("nothing to send: give coins such as 1000ukumo");
    }
    let from = Address::from_public_key(&key.public_key());
    let status = client.status().await?;
    let params = client.params().await?.value;
    let account = client.account(&from).await?.value;
    let body = |fee: u128| TxBody {
        chain_id: status.chain_id.clone(),
        nonce: account.nonce,
        fee: Coin::new(params.fee_denom.clone(), fee),
        memo: a.memo.clone(),
        msgs: vec![Msg::Send {
            to,
            amount: a.coins.clone(),
        }],
    };
    // The fee is a fixed-width number: its value does not change the length it pays for.
    let fee = match a.fee {
        Some(f) => f,
        None => params.min_fee(sign_tx(key, &body(0)).len(), 1),
    };
    // What the chain would refuse costs a fee there: refused here instead.
    for coin in a.coins.as_slice() {
        let fee_too = if coin.denom == params.fee_denom {
            fee
        } else {
            0
        };
        let held = account.balances.amount_of(&coin.denom);
        if held < coin.amount.saturating_add(fee_too) {
            bail!(
                "{from} holds {held}{denom}; sending {coin}{} needs more (nothing was sent)",
                if fee_too > 0 {
                    format!(" with the fee of {fee}{}", params.fee_denom)
                } else {
                    String::new()
                },
                denom = coin.denom,
            );
        }
    }
    let tx = sign_tx(key, &body(fee));
    let wait = if a.wait {
        Wait::CommitWithin(Duration::from_secs(60))
    } else {
        Wait::No
    };
    let r = client.submit(&tx, wait).await?;
    match format {
        OutputFormat::Json => print_json(&r)?,
        OutputFormat::Text => {
            println!("tx {}", hex::encode(r.hash));
            println!(
                "from {from} nonce {} fee {fee}{}",
                account.nonce, params.fee_denom
            );
            match (&r.status, r.height, &r.tx) {
                (TxStatus::Committed, Some(h), Some(t)) => {
                    println!("committed at height {h}: {:?}", t.result.code);
                    if let Some(e) = &t.result.error {
                        println!("error: {}", e.message);
                    }
                }
                _ if a.wait => println!("still pending after 60 s: query it later"),
                _ => println!("pending: in the mempool"),
            }
        }
    }
    let failed = r.tx.as_ref().is_some_and(|t| t.result.error.is_some());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_tx_send() {
        let cli = Cli::try_parse_from([
            "kumo",
            "tx",
            "send",
            "--from",
            "faucet",
            "bob",
            "10ukumo,2uusd",
            "--wait",
            "--keyring-backend",
            "test",
        ])
        .unwrap();
        let Command::Tx(TxCommand::Send(a)) = cli.command else {
            panic!("not tx send");
        };
        assert_eq!(a.from, "faucet");
        assert_eq!(a.to, "bob");
        assert_eq!(a.coins.to_string(), "10ukumo,2uusd");
        assert!(a.wait);
        assert!(Cli::try_parse_from(["kumo", "tx", "send", "--from", "a", "b", "ten"]).is_err());
    }
}
