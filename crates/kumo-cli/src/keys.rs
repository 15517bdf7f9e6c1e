//! `kumo keys …`: create, list, show, import, export and delete account keys (over
//! [`kumo_keystore`]).
//!
//! Keys live in `<home>/keys/<name>.json`. With the `file` backend (the default) the secret is
//! encrypted with a passphrase, read from `KUMO_KEYRING_PASSPHRASE` when set (scripts) or else
//! asked for on the terminal; `list` and `show` need no passphrase. The `test` backend stores
//! secrets unencrypted, for devnets and tests. `export` prints a key's secret (64 hex digits of
//! its ed25519 seed) only with `--unsafe-export-secret`; `import` reads that form (or `export`'s
//! JSON) from standard input, so the secret never appears on a command line.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use kumo_keystore::{Backend, KeyInfo, Keystore};
use kumo_types::SecretKey;
use serde_json::json;
use zeroize::Zeroizing;

use crate::home::HomeArgs;
use crate::output::{OutputFormat, print_json};

/// The environment variable scripts set the file backend's passphrase with.
const PASSPHRASE_ENV: &str = "KUMO_KEYRING_PASSPHRASE";

/// Key commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a new key and print its address.
    Add(NameArgs),
    /// List every key: name, address, backend.
    List(StoreArgs),
    /// Print a key's address and public key.
    Show(NameArgs),
    /// Store an existing key, read from standard input as printed by `kumo keys export`
    /// (64 hex digits, or its `-o json` object).
    Import(NameArgs),
    /// Print a key's secret, to move it elsewhere. Anyone who sees it owns the account.
    Export(ExportArgs),
    /// Delete a key file. Without an exported copy, the account is lost for good.
    Delete(DeleteArgs),
}

/// Backend selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyringBackend {
    /// Encrypted with a passphrase (`KUMO_KEYRING_PASSPHRASE` or a prompt).
    File,
    /// Unencrypted: devnets and tests only.
    Test,
}

/// Where the keys are and how they are protected.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    pub(crate) home: HomeArgs,
    /// How secrets are kept: `file` encrypts them, `test` does not (devnets only).
    #[arg(
        long,
        value_enum,
        env = "KUMO_KEYRING_BACKEND",
        default_value_t = KeyringBackend::File
    )]
    pub(crate) keyring_backend: KeyringBackend,
}

/// A key name and the store.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The key's name: 1 to 64 letters, digits, '-' or '_'.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

/// `kumo keys export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) key: NameArgs,
    /// Confirm that you mean to print the secret key in clear.
    #[arg(long)]
    pub(crate) unsafe_export_secret: bool,
}

/// `kumo keys delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    pub(crate) key: NameArgs,
    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(short, long)]
    pub(crate) yes: bool,
}

/// Why a passphrase is asked for: a new key's is typed twice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Read a secret.
    Unlock,
    /// Write a new secret.
    New,
}

fn passphrase(purpose: Purpose) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "the file backend needs a passphrase: set {PASSPHRASE_ENV} or run on a terminal \
             (or use --keyring-backend test for devnets)"
        );
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Keyring passphrase: ").context("reading the passphrase")?,
    );
    if purpose == Purpose::New {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat the passphrase: ")
                .context("reading the passphrase")?,
        );
        if first != again {
            bail!("the passphrases differ: nothing was written");
        }
    }
    Ok(first)
}

impl StoreArgs {
    /// The keystore, with the passphrase if the file backend must decrypt or encrypt.
    pub(crate) fn open(&self, purpose: Option<Purpose>) -> anyhow::Result<Keystore> {
        let backend = match (self.keyring_backend, purpose) {
            (KeyringBackend::File, Some(p)) => Backend::file(passphrase(p)?.as_str()),
            // Reading names, addresses and public keys needs no secret.
            _ => Backend::Test,
        };
        Ok(Keystore::open(self.home.keys_dir()?, backend)?)
    }
}

/// Prints a key: its JSON, or a few lines, headed by what was done to it (`added`, …) if
/// anything.
fn print_key(format: OutputFormat, done: Option<&str>, k: &KeyInfo) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => return print_json(k),
        OutputFormat::Text => match done {
            Some(verb) => println!("{verb} key {:?} ({} backend)", k.name, k.backend),
            None => {
                println!("name:       {}", k.name);
                println!("backend:    {}", k.backend);
            }
        },
    }
    println!("address:    {}", k.address);
    println!("public key: {}", k.public_key);
    Ok(())
}

/// Reads a secret in `kumo keys export`'s forms: 64 hex digits, or its JSON object.
fn read_secret() -> anyhow::Result<SecretKey> {
    let text = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password("Secret key (64 hex digits): ")
                .context("reading the secret key")?,
        )
    } else {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut s)
            .context("reading the secret key from standard input")?;
        s
    };
    let text = text.trim();
    let hexed = if text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).context("the secret key JSON does not parse")?;
        Zeroizing::new(
            v["secret_key"]
                .as_str()
                .context(
                    "the JSON has no \"secret_key\" string (as `kumo keys export -o json` prints)",
                )?
                .to_string(),
        )
    } else {
        Zeroizing::new(text.to_string())
    };
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hexed.as_str(), seed.as_mut()).map_err(|_| {
        anyhow::anyhow!(
            "the secret key must be 64 hex digits, as `kumo keys export --unsafe-export-secret` prints"
        )
    })?;
    Ok(SecretKey::from_seed(*seed))
}

impl KeysCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            KeysCommand::Add(a) => {
                let k = a.store.open(Some(Purpose::New))?.add(&a.name)?;
                print_key(format, Some("added"), &k)?;
            }
            KeysCommand::List(s) => {
                let keys = s.open(None)?.list()?;
                match format {
                    OutputFormat::Json => print_json(&keys)?,
                    OutputFormat::Text if keys.is_empty() => {
                        println!(
                            "no keys in {}: create one with `kumo keys add NAME`",
                            s.home.keys_dir()?.display()
                        );
                    }
                    OutputFormat::Text => {
                        let w = keys.iter().map(|k| k.name.len()).max().unwrap_or(4).max(4);
                        println!("{:w$}  {:44}  BACKEND", "NAME", "ADDRESS");
                        for k in &keys {
                            println!("{:w$}  {:44}  {}", k.name, k.address.to_string(), k.backend);
                        }
                    }
                }
            }
            KeysCommand::Show(a) => print_key(format, None, &a.store.open(None)?.show(&a.name)?)?,
            KeysCommand::Import(a) => {
                let secret = read_secret()?;
                let k = a.store.open(Some(Purpose::New))?.import(&a.name, &secret)?;
                print_key(format, Some("imported"), &k)?;
            }
            KeysCommand::Export(a) => {
                if !a.unsafe_export_secret {
                    bail!(
                        "export prints the secret key in clear: anyone who sees it owns the \
                         account. Pass --unsafe-export-secret if you mean it"
                    );
                }
                let ks = a.key.store.open(Some(Purpose::Unlock))?;
                let info = ks.show(&a.key.name)?;
                let secret = ks.export(&a.key.name)?;
                eprintln!(
                    "warning: this is the secret key of {}; anyone who sees it can spend its funds",
                    info.address
                );
                match format {
                    OutputFormat::Json => print_json(&json!({
                        "name": info.name,
                        "address": info.address,
                        "secret_key": secret.as_str(),
                    }))?,
                    OutputFormat::Text => println!("{}", secret.as_str()),
                }
            }
            KeysCommand::Delete(a) => {
                let ks = a.key.store.open(None)?;
                let info = ks.show(&a.key.name)?;
                if !a.yes {
                    confirm_delete(&info)?;
                }
                ks.delete(&a.key.name)?;
                match format {
                    OutputFormat::Json => {
                        print_json(&json!({ "deleted": info.name, "address": info.address }))?
                    }
                    OutputFormat::Text => {
                        println!("deleted key {:?} ({})", info.name, info.address)
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn confirm_delete(info: &KeyInfo) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "deleting key {:?} needs confirmation: pass --yes",
            info.name
        );
    }
    eprint!(
        "Delete key {:?} ({})? Without an exported copy its funds are lost. [y/N] ",
        info.name, info.address
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => bail!("not deleted"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_keys_commands() {
        let cli = Cli::try_parse_from([
            "kumo",
            "keys",
            "export",
            "alice",
            "--unsafe-export-secret",
            "--keyring-backend",
            "test",
            "--home",
            "/tmp/h",
        ])
        .unwrap();
        let Command::Keys(KeysCommand::Export(a)) = cli.command else {
            panic!("not keys export");
        };
        assert!(a.unsafe_export_secret);
        assert_eq!(a.key.name, "alice");
        assert_eq!(a.key.store.keyring_backend, KeyringBackend::Test);
        assert_eq!(
            a.key.store.home.keys_dir().unwrap(),
            std::path::Path::new("/tmp/h/keys")
        );
        assert!(Cli::try_parse_from(["kumo", "keys", "show"]).is_err());
        assert!(Cli::try_parse_from(["kumo", "keys", "list", "--keyring-backend", "os"]).is_err());
    }
}
