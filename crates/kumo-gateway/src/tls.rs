//! The gateway's TLS: a self-signed certificate that clients pin by its SHA-256 fingerprint.
//!
//! A provider has no CA-signed certificate. Instead its chain record carries the SHA-256 of its
//! certificate's DER bytes (`ProviderFields::tls_cert_sha256`, see [`fingerprint`]); a tenant's
//! client reads that record and accepts exactly that certificate
//! ([`pinned_client_config`]), whatever its names or dates. The TLS handshake signatures are
//! still verified, so only the holder of the certificate's private key can answer.
//!
//! The daemon calls `GatewayCert::load_or_create` (feature `server`) once at start: the first
//! run writes `cert.pem` and `key.pem` (mode 0600) where the daemon says, later runs load them
//! again, so the fingerprint on chain stays right across restarts.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

/// What can go wrong creating, loading or pinning the gateway's certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a certificate or key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Only one of the two files exists; refusing to replace the other silently.
    #[error(
        "{present} exists but {missing} does not: restore it, or delete both to make a new certificate (its fingerprint on chain must then be updated)"
    )]
    HalfPresent {
        /// The file that exists.
        present: String,
        /// The file that is missing.
        missing: String,
    },
    /// A file is not the PEM it should be, or key and certificate do not belong together.
    #[error("{0}")]
    Invalid(String),
    /// A fingerprint is not 64 hex digits.
    #[error("{0:?} is not a certificate fingerprint: expected 64 hex digits (SHA-256)")]
    BadFingerprint(String),
}

/// The SHA-256 of a certificate's DER bytes: what the provider's chain record holds and what
/// clients pin.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// Parses a fingerprint written as 64 hex digits (colons between bytes are allowed, as
/// `openssl x509 -fingerprint` prints them).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).map_err(|_| TlsError::BadFingerprint(text.into()))?;
    Ok(out)
}

/// The crypto provider every config of this crate uses (explicit, so that it does not depend on
/// which provider other crates in the process installed as the default).
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client config that accepts exactly the server certificate whose SHA-256 is `pin` (and no
/// other, CA-signed or not). HTTP/1.1 only, which is all the gateway speaks.
pub fn pinned_client_config(pin: [u8; 32]) -> Arc<rustls::ClientConfig> {
    let provider = crypto_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCert { pin, provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts the one certificate with the pinned fingerprint; still checks that the server
/// signed the handshake with that certificate's key.
#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

/// The server showed another certificate than the one pinned.
#[derive(thiserror::Error)]
#[error(
    "the gateway's certificate has fingerprint {got}, but the provider's chain record pins {expected}: wrong address, or the provider changed its certificate without updating its record"
)]
struct PinMismatch {
    expected: String,
    got: String,
}

// rustls shows the cause of a certificate error with `Debug`: make that the sentence.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    expected: hex::encode(self.pin),
                    got: hex::encode(got),
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(feature = "server")]
pub use server::GatewayCert;

#[cfg(feature = "server")]
mod server {
    use std::io::Write;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::{TlsError, crypto_provider, fingerprint};

    /// The gateway's certificate and private key.
    pub struct GatewayCert {
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    impl std::fmt::Debug for GatewayCert {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "GatewayCert({})", hex::encode(self.fingerprint()))
        }
    }

    impl GatewayCert {
        /// Loads the certificate and key from `cert_path` and `key_path`, or, when neither
        /// exists, makes a new self-signed one for `host` (the public host name of the
        /// provider's URI; `localhost` and 127.0.0.1 are added) and writes both as PEM, the key
        /// readable by its owner only.
        pub fn load_or_create(
            cert_path: &Path,
            key_path: &Path,
            host: &str,
        ) -> Result<GatewayCert, TlsError> {
            match (cert_path.exists(), key_path.exists()) {
                (true, true) => Self::load(cert_path, key_path),
                (false, false) => {
                    let (cert_pem, key_pem) = Self::generate_pem(host)?;
                    write_file(key_path, key_pem.as_bytes(), 0o600)?;
                    write_file(cert_path, cert_pem.as_bytes(), 0o644)?;
                    Self::load(cert_path, key_path)
                }
                (true, false) => Err(TlsError::HalfPresent {
                    present: cert_path.display().to_string(),
                    missing: key_path.display().to_string(),
                }),
                (false, true) => Err(TlsError::HalfPresent {
                    present: key_path.display().to_string(),
                    missing: cert_path.display().to_string(),
                }),
            }
        }

        /// A new self-signed certificate in memory (tests; nothing is written).
        pub fn generate(host: &str) -> Result<GatewayCert, TlsError> {
            let (cert_pem, key_pem) = Self::generate_pem(host)?;
            Self::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
        }

        fn generate_pem(host: &str) -> Result<(String, String), TlsError> {
            let invalid =
                |e: rcgen::Error| TlsError::Invalid(format!("certificate for {host}: {e}"));
            let mut names = vec![host.to_string(), "localhost".into(), "127.0.0.1".into()];
            names.dedup();
            let mut params = rcgen::CertificateParams::new(names).map_err(invalid)?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("kumo gateway {host}"));
            let key = rcgen::KeyPair::generate().map_err(invalid)?;
            let cert = params.self_signed(&key).map_err(invalid)?;
            Ok((cert.pem(), key.serialize_pem()))
        }

        fn load(cert_path: &Path, key_path: &Path) -> Result<GatewayCert, TlsError> {
            let read = |p: &Path| {
                std::fs::read(p).map_err(|source| TlsError::Io {
                    path: p.display().to_string(),
                    source,
                })
            };
            Self::from_pem(&read(cert_path)?, &read(key_path)?)
                .map_err(|e| TlsError::Invalid(format!("{}: {e}", cert_path.display())))
        }

        /// A certificate and key from their PEM text.
        pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<GatewayCert, TlsError> {
            let cert = CertificateDer::from_pem_slice(cert_pem)
                .map_err(|e| TlsError::Invalid(format!("not a PEM certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| TlsError::Invalid(format!("not a PEM private key: {e}")))?;
            let me = GatewayCert { cert, key };
            me.server_config()?; // key and certificate must belong together
            Ok(me)
        }

        /// The SHA-256 of the certificate: what goes into the provider's chain record.
        pub fn fingerprint(&self) -> [u8; 32] {
            fingerprint(&self.cert)
        }

        /// The certificate's DER bytes.
        pub fn cert_der(&self) -> &[u8] {
            &self.cert
        }

        /// The server side of TLS with this certificate (HTTP/1.1).
        pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
            let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Invalid(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
                .map_err(|e| {
                    TlsError::Invalid(format!("certificate and key do not fit together: {e}"))
                })?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        }
    }

    fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
        let io = |source| TlsError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(path).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_loaded_again_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("tls/cert.pem"),
            dir.path().join("tls/key.pem"),
        );
        let first = GatewayCert::load_or_create(&cert, &key, "provider.example.com").unwrap();
        let again = GatewayCert::load_or_create(&cert, &key, "provider.example.com").unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint(), fingerprint(first.cert_der()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(&key).unwrap();
        let err = GatewayCert::load_or_create(&cert, &key, "provider.example.com").unwrap_err();
        assert!(matches!(err, TlsError::HalfPresent { .. }), "{err}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = (dir.path().join("a.pem"), dir.path().join("a.key"));
        let b = (dir.path().join("b.pem"), dir.path().join("b.key"));
        GatewayCert::load_or_create(&a.0, &a.1, "a.example").unwrap();
        GatewayCert::load_or_create(&b.0, &b.1, "b.example").unwrap();
        let err = GatewayCert::load_or_create(&a.0, &b.1, "a.example").unwrap_err();
        assert!(matches!(err, TlsError::Invalid(_)), "{err}");
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let fp = [0xab; 32];
        assert_eq!(parse_fingerprint(&hex::encode(fp)).unwrap(), fp);
        let colons = fp
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), fp);
        assert!(parse_fingerprint("abcd").is_err());
    }
}
