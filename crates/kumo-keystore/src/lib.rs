//! Kumo's keystore: account keys kept in a directory, one JSON file per key.
//!
//! Two backends, as Cosmos' `--keyring-backend`:
//!
//! - [`Backend::File`]: the 32-byte ed25519 seed is encrypted with XChaCha20-Poly1305 under a
//!   key derived from the passphrase by Argon2id (memory-hard; 19 MiB, 2 passes by default).
//!   The key's name and address are bound to the ciphertext as associated data, so a file
//!   cannot be renamed or swapped undetected.
//! - [`Backend::Test`]: the seed is stored **unencrypted**. For devnets and tests only; it must
//!   be asked for by name, and files it writes say `"backend": "test"`.
//!
//! File format (`<name>.json`, mode 0600 on Unix):
//!
//! ```json
//! { "version": 1, "name": "tenant", "address": "kumo1…", "public_key": "<64 hex>",
//!   "backend": "file",
//!   "kdf": { "algorithm": "argon2id", "m_cost_kib": 19456, "t_cost": 2, "p_cost": 1, "salt": "<32 hex>" },
//!   "cipher": { "algorithm": "xchacha20poly1305", "nonce": "<48 hex>", "ciphertext": "<96 hex>" } }
//! ```
//!
//! ```
//! use kumo_keystore::{Backend, Keystore};
//! let dir = tempfile::tempdir().unwrap();
//! let ks = Keystore::open(dir.path(), Backend::Test).unwrap();
//! let info = ks.add("tenant").unwrap();
//! assert_eq!(ks.secret_key("tenant").unwrap().public_key(), info.public_key);
//! ```

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use kumo_types::{Address, PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Reading or writing the directory failed.
    #[error("keystore {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bad key name.
    #[error("key name {0:?} is invalid: use 1 to 64 letters, digits, '-' or '_'")]
    BadName(String),
    /// No such key.
    #[error("no key named {0:?}: list keys with `kumo keys list`")]
    NotFound(String),
    /// Name taken.
    #[error("a key named {0:?} already exists: pick another name or delete it first")]
    Exists(String),
    /// Decryption failed.
    #[error("wrong passphrase for key {0:?} (or the file was tampered with)")]
    WrongPassphrase(String),
    /// Backend mismatch.
    #[error(
        "key {name:?} is stored with the {stored} backend; open the keystore with --keyring-backend {stored}"
    )]
    WrongBackend {
        /// Key name.
        name: String,
        /// Its backend.
        stored: String,
    },
    /// Empty passphrase with the file backend.
    #[error("the file backend needs a non-empty passphrase (use the test backend for devnets)")]
    EmptyPassphrase,
    /// The file does not parse or is inconsistent.
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// How keys are protected at rest.
#[derive(Clone)]
pub enum Backend {
    /// Encrypted with a passphrase.
    File {
        /// The passphrase.
        passphrase: Zeroizing<String>,
        /// Argon2id cost for new keys.
        kdf: KdfParams,
    },
    /// Unencrypted: devnets and tests only.
    Test,
}

impl Backend {
    /// The file backend with default KDF costs.
    pub fn file(passphrase: impl Into<String>) -> Backend {
        Backend::File {
            passphrase: Zeroizing::new(passphrase.into()),
            kdf: KdfParams::default(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::File { .. } => "file",
            Backend::Test => "test",
        }
    }
}

/// Argon2id costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane.
    fn default() -> KdfParams {
        KdfParams {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

/// What can be shown about a key without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: Address,
    /// Its public key.
    pub public_key: PublicKey,
    /// `file` or `test`.
    pub backend: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    algorithm: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherJson {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    name: String,
    address: Address,
    public_key: PublicKey,
    backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cipher: Option<CipherJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unencrypted_seed: Option<String>,
}

/// A directory of keys opened with one backend.
pub struct Keystore {
    dir: PathBuf,
    backend: Backend,
}

fn check_name(name: &str) -> Result<(), KeystoreError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::BadName(name.to_string()))
    }
}

fn derive_key(passphrase: &str, salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
    let params =
        Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32)).map_err(|e| e.to_string())?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn aad(name: &str, address: &Address) -> Vec<u8> {
    format!("kumo-keystore-v1:{name}:{address}").into_bytes()
}

impl Keystore {
    /// Opens (creating if needed) the key directory `dir`.
    pub fn open(dir: impl AsRef<Path>, backend: Backend) -> Result<Keystore, KeystoreError> {
        let dir = dir.as_ref().to_path_buf();
        if let Backend::File { passphrase, .. } = &backend
            && passphrase.is_empty()
        {
            return Err(KeystoreError::EmptyPassphrase);
        }
        fs::create_dir_all(&dir).map_err(|source| KeystoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Keystore { dir, backend })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Generates and stores a new key.
    pub fn add(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        self.import(name, &SecretKey::generate())
    }

    /// Stores an existing key under `name`.
    pub fn import(&self, name: &str, key: &SecretKey) -> Result<KeyInfo, KeystoreError> {
        check_name(name)?;
        let path = self.path(name);
        if path.exists() {
            return Err(KeystoreError::Exists(name.to_string()));
        }
        let public_key = key.public_key();
        let address = Address::from_public_key(&public_key);
        let mut seed = Zeroizing::new(key.to_seed());
        let mut file = KeyFile {
            version: 1,
            name: name.to_string(),
            address,
            public_key,
            backend: self.backend.name().to_string(),
            kdf: None,
            cipher: None,
            unencrypted_seed: None,
        };
        match &self.backend {
            Backend::Test => file.unencrypted_seed = Some(hex::encode(seed.as_ref())),
            Backend::File { passphrase, kdf } => {
                let mut salt = [0u8; 16];
                OsRng.fill_bytes(&mut salt);
                let mut nonce = [0u8; 24];
                OsRng.fill_bytes(&mut nonce);
                let k = derive_key(passphrase, &salt, *kdf).map_err(|reason| {
                    KeystoreError::Corrupt {
                        path: path.clone(),
                        reason,
                    }
                })?;
                let cipher = XChaCha20Poly1305::new(k.as_ref().into());
                let ct = cipher
                    .encrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: seed.as_ref(),
                            aad: &aad(name, &address),
                        },
                    )
                    .expect("encryption of 32 bytes cannot fail");
                file.kdf = Some(KdfJson {
                    algorithm: "argon2id".into(),
                    params: *kdf,
                    salt: hex::encode(salt),
                });
                file.cipher = Some(CipherJson {
                    algorithm: "xchacha20poly1305".into(),
                    nonce: hex::encode(nonce),
                    ciphertext: hex::encode(ct),
                });
            }
        }
        seed.zeroize();
        let mut text = serde_json::to_string_pretty(&file).expect("key file serializes");
        text.push('\n');
        let io = |source| KeystoreError::Io {
            path: path.clone(),
            source,
        };
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(KeyInfo {
            name: name.to_string(),
            address,
            public_key,
            backend: self.backend.name().to_string(),
        })
    }

    fn read(&self, name: &str) -> Result<KeyFile, KeystoreError> {
        check_name(name)?;
        let path = self.path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound(name.to_string()));
            }
            Err(source) => return Err(KeystoreError::Io { path, source }),
        };
        let f: KeyFile = serde_json::from_str(&text).map_err(|e| KeystoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if f.version != 1 || f.name != name || Address::from_public_key(&f.public_key) != f.address
        {
            return Err(KeystoreError::Corrupt {
                path,
                reason: "version, name, address and public key do not agree".into(),
            });
        }
        Ok(f)
    }

    /// Name, address and public key of a key.
    pub fn show(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        let f = self.read(name)?;
        Ok(KeyInfo {
            name: f.name,
            address: f.address,
            public_key: f.public_key,
            backend: f.backend,
        })
    }

    /// Every key, by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        names.iter().map(|n| self.show(n)).collect()
    }

    /// The secret key (decrypting it with the file backend).
    pub fn secret_key(&self, name: &str) -> Result<SecretKey, KeystoreError> {
        let f = self.read(name)?;
        let path = self.path(name);
        let corrupt = |reason: &str| KeystoreError::Corrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if f.backend != self.backend.name() {
            return Err(KeystoreError::WrongBackend {
                name: name.to_string(),
                stored: f.backend,
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        match &self.backend {
            Backend::Test => {
                let hexed = f.unencrypted_seed.ok_or_else(|| corrupt("no seed"))?;
                hex::decode_to_slice(hexed, seed.as_mut())
                    .map_err(|_| corrupt("seed is not 64 hex digits"))?;
            }
            Backend::File { passphrase, .. } => {
                let kdf = f.kdf.ok_or_else(|| corrupt("no kdf"))?;
                let c = f.cipher.ok_or_else(|| corrupt("no cipher"))?;
                if kdf.algorithm != "argon2id" || c.algorithm != "xchacha20poly1305" {
                    return Err(corrupt("unknown algorithm"));
                }
                let salt = hex::decode(&kdf.salt).map_err(|_| corrupt("salt is not hex"))?;
                let nonce = hex::decode(&c.nonce).map_err(|_| corrupt("nonce is not hex"))?;
                let ct =
                    hex::decode(&c.ciphertext).map_err(|_| corrupt("ciphertext is not hex"))?;
                if nonce.len() != 24 {
                    return Err(corrupt("nonce is not 24 bytes"));
                }
                let k = derive_key(passphrase, &salt, kdf.params).map_err(|r| corrupt(&r))?;
                let pt = Zeroizing::new(
                    XChaCha20Poly1305::new(k.as_ref().into())
                        .decrypt(
                            XNonce::from_slice(&nonce),
                            Payload {
                                msg: &ct,
                                aad: &aad(name, &f.address),
                            },
                        )
                        .map_err(|_| KeystoreError::WrongPassphrase(name.to_string()))?,
                );
                if pt.len() != 32 {
                    return Err(corrupt("seed is not 32 bytes"));
                }
                seed.copy_from_slice(&pt);
            }
        }
        let key = SecretKey::from_seed(*seed);
        if key.public_key() != f.public_key {
            return Err(corrupt("seed does not match the public key"));
        }
        Ok(key)
    }

    /// The seed as 64 hex digits, to move the key elsewhere. Keep it secret.
    pub fn export(&self, name: &str) -> Result<Zeroizing<String>, KeystoreError> {
        Ok(Zeroizing::new(hex::encode(
            self.secret_key(name)?.to_seed(),
        )))
    }

    /// Deletes a key file.
    pub fn delete(&self, name: &str) -> Result<(), KeystoreError> {
        self.read(name)?;
        let path = self.path(name);
        fs::remove_file(&path).map_err(|source| KeystoreError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(pass: &str) -> Backend {
        Backend::File {
            passphrase: Zeroizing::new(pass.into()),
            kdf: KdfParams {
                m_cost_kib: 256,
                t_cost: 1,
                p_cost: 1,
            },
        }
    }

    #[test]
    fn file_backend_round_trips_and_refuses_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path(), fast("correct horse")).unwrap();
        let key = SecretKey::from_seed([3; 32]);
        let info = ks.import("provider", &key).unwrap();
        assert_eq!(info.address, Address::from_public_key(&key.public_key()));
        assert_eq!(ks.secret_key("provider").unwrap().to_seed(), [3; 32]);
        let text = fs::read_to_string(dir.path().join("provider.json")).unwrap();
        assert!(
            !text.contains(&hex::encode([3u8; 32])),
            "seed stored in clear"
        );
        let wrong = Keystore::open(dir.path(), fast("battery staple")).unwrap();
        assert!(matches!(
            wrong.secret_key("provider"),
            Err(KeystoreError::WrongPassphrase(_))
        ));
        assert!(matches!(
            ks.import("provider", &key),
            Err(KeystoreError::Exists(_))
        ));
        let test = Keystore::open(dir.path(), Backend::Test).unwrap();
        assert!(matches!(
            test.secret_key("provider"),
            Err(KeystoreError::WrongBackend { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("provider.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn renaming_a_file_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path(), fast("pw")).unwrap();
        ks.add("a").unwrap();
        let text = fs::read_to_string(dir.path().join("a.json")).unwrap();
        fs::write(
            dir.path().join("b.json"),
            text.replace("\"name\": \"a\"", "\"name\": \"b\""),
        )
        .unwrap();
        assert!(matches!(
            ks.secret_key("b"),
            Err(KeystoreError::WrongPassphrase(_))
        ));
    }

    #[test]
    fn test_backend_lists_exports_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path(), Backend::Test).unwrap();
        ks.add("tenant").unwrap();
        ks.import("provider", &SecretKey::from_seed([9; 32]))
            .unwrap();
        let names: Vec<String> = ks.list().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["provider", "tenant"]);
        assert_eq!(*ks.export("provider").unwrap(), hex::encode([9u8; 32]));
        ks.delete("tenant").unwrap();
        assert!(matches!(ks.show("tenant"), Err(KeystoreError::NotFound(_))));
        assert!(matches!(ks.add("../evil"), Err(KeystoreError::BadName(_))));
        assert!(matches!(
            Keystore::open(dir.path(), Backend::file("")),
            Err(KeystoreError::EmptyPassphrase)
        ));
    }
}
