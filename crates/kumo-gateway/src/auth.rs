//! Bearer tokens: a tenant proves who it is to a provider's gateway.
//!
//! A token is a JWT in compact form, `base64url(header).base64url(claims).base64url(signature)`
//! (no padding), signed with the tenant's ed25519 account key:
//!
//! ```text
//! header: {"alg":"EdDSA","typ":"JWT"}
//! claims: {"iss":"kumo1…tenant","pk":"<64 hex digits: the tenant's public key>",
//!          "aud":"kumo1…provider","iat":1700000000,"nbf":1700000000,"exp":1700000060,
//!          "scopes":["status"]}
//! signature: ed25519 over the ASCII bytes `base64url(header).base64url(claims)`
//! ```
//!
//! Addresses are hashes of public keys, so the token carries the key (`pk`) and the verifier
//! checks `Address::from_public_key(pk) == iss` before it trusts the signature to speak for
//! `iss`. [`verify`] is deliberately narrow: `alg` must be `EdDSA` (`none` and everything else is
//! refused), no unknown header fields or claims, strict base64url, `aud` must be this provider,
//! `exp`/`nbf`/`iat` within [`LEEWAY_SECS`] of the provider's clock, and a lifetime of at most
//! [`MAX_LIFETIME_SECS`]. `docs/gateway.md` describes the format for other implementations.
//!
//! ```
//! use kumo_gateway::auth::{self, Scope};
//! use kumo_types::{Address, SecretKey};
//!
//! let tenant = SecretKey::from_seed([1; 32]);
//! let provider = Address::from_public_key(&SecretKey::from_seed([2; 32]).public_key());
//! let token = auth::mint(&tenant, provider, &[Scope::Status], 1_700_000_000, 60);
//! let claims = auth::verify(&token, &provider, 1_700_000_010).unwrap();
//! assert_eq!(claims.iss, Address::from_public_key(&tenant.public_key()));
//! assert!(claims.require(Scope::Status).is_ok());
//! assert!(claims.require(Scope::Shell).is_err());
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kumo_types::{Address, PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};

/// The longest lifetime (`exp - nbf`) a token may have.
pub const MAX_LIFETIME_SECS: u64 = 24 * 3600;
/// How far the tenant's clock may be off the provider's.
pub const LEEWAY_SECS: u64 = 60;
/// Tokens longer than this are refused before anything is decoded.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// `PUT /deployment/{dseq}/manifest`.
    SendManifest,
    /// `GET /lease/…/status`.
    Status,
    /// `GET /lease/…/logs`.
    Logs,
    /// `GET /lease/…/shell`.
    Shell,
    /// `GET /lease/…/events`.
    Events,
    /// `POST /lease/…/restart`.
    Restart,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::SendManifest => "send-manifest",
            Scope::Status => "status",
            Scope::Logs => "logs",
            Scope::Shell => "shell",
            Scope::Events => "events",
            Scope::Restart => "restart",
        })
    }
}

/// The claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The tenant: the address of `pk`.
    pub iss: Address,
    /// The tenant's public key, which signed the token.
    pub pk: PublicKey,
    /// The provider the token is for.
    pub aud: Address,
    /// Issued at (seconds since the Unix epoch).
    pub iat: u64,
    /// Not valid before.
    pub nbf: u64,
    /// Not valid after.
    pub exp: u64,
    /// What it allows.
    pub scopes: Vec<Scope>,
}

impl Claims {
    /// `Ok` when the token allows `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// Why a token was refused. [`AuthError::http_status`] says whether that is 401 (no valid
/// token) or 403 (a valid token that does not allow this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error(
        "missing bearer token: send `Authorization: Bearer <token>` signed by the tenant's key"
    )]
    Missing,
    /// Not a well-formed token.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names another algorithm than `EdDSA`.
    #[error("token algorithm {0:?} is not accepted: only EdDSA (ed25519) tokens are")]
    Algorithm(String),
    /// `iss` is not the address of `pk`.
    #[error("token issuer {iss} is not the address of its public key ({derived})")]
    IssuerMismatch {
        /// The claimed issuer.
        iss: Address,
        /// The address of the key that signed.
        derived: Address,
    },
    /// The signature does not verify under `pk`.
    #[error("token signature does not verify: it was changed or signed by another key")]
    BadSignature,
    /// The token is for another provider.
    #[error("token is for provider {got}, this is {expected}")]
    Audience {
        /// This provider.
        expected: Address,
        /// The token's `aud`.
        got: Address,
    },
    /// `exp` has passed.
    #[error("token expired at {exp} (now {now}): mint a new one")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The provider's clock.
        now: u64,
    },
    /// `nbf` or `iat` is in the future.
    #[error("token is not valid before {nbf} (now {now}): is the tenant's clock ahead?")]
    NotYetValid {
        /// The token's `nbf` (or `iat`, whichever is later).
        nbf: u64,
        /// The provider's clock.
        now: u64,
    },
    /// `exp - nbf` is longer than [`MAX_LIFETIME_SECS`], or negative.
    #[error("token lifetime {0}s is not accepted: at most {MAX_LIFETIME_SECS}s, and exp after nbf")]
    Lifetime(i128),
    /// A valid token without the scope this request needs.
    #[error("token does not allow {0}: mint one with the {0} scope")]
    MissingScope(Scope),
}

impl AuthError {
    /// 403 for a valid token that lacks a scope, 401 for everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::MissingScope(_) => 403,
            _ => 401,
        }
    }
}

/// Mints a token for `provider` with `scopes`, valid from `now` for `lifetime_secs`.
pub fn mint(
    key: &SecretKey,
    provider: Address,
    scopes: &[Scope],
    now: u64,
    lifetime_secs: u64,
) -> String {
    let pk = key.public_key();
    let claims = Claims {
        iss: Address::from_public_key(&pk),
        pk,
        aud: provider,
        iat: now,
        nbf: now,
        exp: now.saturating_add(lifetime_secs),
        scopes: scopes.to_vec(),
    };
    sign(key, &claims)
}

/// Signs arbitrary claims (tests use it to make tokens [`mint`] never would).
pub fn sign(key: &SecretKey, claims: &Claims) -> String {
    let header = Header {
        alg: "EdDSA".into(),
        typ: Some("JWT".into()),
    };
    let mut token = encode_json(&header);
    token.push('.');
    token.push_str(&encode_json(claims));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.0));
    token
}

fn encode_json<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("claims serialize"))
}

/// Verifies `token` for `provider` at time `now` (seconds since the Unix epoch) and returns its
/// claims. Scopes are checked afterwards with [`Claims::require`].
pub fn verify(token: &str, provider: &Address, now: u64) -> Result<Claims, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed(format!(
            "{} bytes, at most {MAX_TOKEN_LEN}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected three base64url parts separated by dots".into(),
        ));
    };
    let header: Header = decode_json(header, "header")?;
    if header.alg != "EdDSA" {
        return Err(AuthError::Algorithm(header.alg));
    }
    if let Some(typ) = header.typ.filter(|t| t != "JWT") {
        return Err(AuthError::Malformed(format!(
            "typ {typ:?}, expected \"JWT\""
        )));
    }
    let claims: Claims = decode_json(claims, "claims")?;
    let signature: [u8; 64] = decode_part(signature, "signature")?
        .try_into()
        .map_err(|_| AuthError::Malformed("the signature is not 64 bytes".into()))?;

    let derived = Address::from_public_key(&claims.pk);
    if derived != claims.iss {
        return Err(AuthError::IssuerMismatch {
            iss: claims.iss,
            derived,
        });
    }
    let signed = &token[..token.rfind('.').expect("three parts")];
    claims
        .pk
        .verify(signed.as_bytes(), &Signature(signature))
        .map_err(|_| AuthError::BadSignature)?;

    if claims.aud != *provider {
        return Err(AuthError::Audience {
            expected: *provider,
            got: claims.aud,
        });
    }
    let lifetime = i128::from(claims.exp) - i128::from(claims.nbf);
    if !(0..=i128::from(MAX_LIFETIME_SECS)).contains(&lifetime) {
        return Err(AuthError::Lifetime(lifetime));
    }
    if claims.exp.saturating_add(LEEWAY_SECS) < now {
        return Err(AuthError::Expired {
            exp: claims.exp,
            now,
        });
    }
    let nbf = claims.nbf.max(claims.iat);
    if nbf > now.saturating_add(LEEWAY_SECS) {
        return Err(AuthError::NotYetValid { nbf, now });
    }
    if claims.scopes.is_empty() {
        return Err(AuthError::Malformed("no scopes".into()));
    }
    Ok(claims)
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| AuthError::Malformed(format!("{what}: not base64url without padding: {e}")))
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str, what: &str) -> Result<T, AuthError> {
    serde_json::from_slice(&decode_part(part, what)?)
        .map_err(|e| AuthError::Malformed(format!("{what}: {e}")))
}

/// The current time in seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn tenant() -> SecretKey {
        SecretKey::from_seed([1; 32])
    }

    fn provider() -> Address {
        Address::from_public_key(&SecretKey::from_seed([2; 32]).public_key())
    }

    fn claims() -> Claims {
        let pk = tenant().public_key();
        Claims {
            iss: Address::from_public_key(&pk),
            pk,
            aud: provider(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 60,
            scopes: vec![Scope::Status, Scope::Logs],
        }
    }

    /// A token with the given header and claims JSON, signed properly.
    fn raw(header: &str, claims: &str) -> String {
        let signing = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = tenant().sign(signing.as_bytes());
        format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.0))
    }

    fn claims_json() -> String {
        serde_json::to_string(&claims()).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let token = mint(&tenant(), provider(), &[Scope::SendManifest], NOW, 60);
        let header = token.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"alg":"EdDSA","typ":"JWT"}"#
        );
        let c = verify(&token, &provider(), NOW + 30).unwrap();
        assert_eq!(c.scopes, [Scope::SendManifest]);
        assert_eq!((c.iat, c.nbf, c.exp), (NOW, NOW, NOW + 60));
        assert_eq!(
            c.require(Scope::Shell),
            Err(AuthError::MissingScope(Scope::Shell))
        );
        assert_eq!(AuthError::MissingScope(Scope::Shell).http_status(), 403);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""scopes":["send-manifest"]"#), "{json}");
    }

    #[test]
    fn time_limits_apply_with_leeway() {
        let token = sign(&tenant(), &claims());
        assert!(verify(&token, &provider(), NOW + 60 + LEEWAY_SECS).is_ok());
        let err = verify(&token, &provider(), NOW + 61 + LEEWAY_SECS).unwrap_err();
        assert!(matches!(err, AuthError::Expired { .. }), "{err}");
        assert_eq!(err.http_status(), 401);
        assert!(verify(&token, &provider(), NOW - LEEWAY_SECS).is_ok());
        let err = verify(&token, &provider(), NOW - LEEWAY_SECS - 1).unwrap_err();
        assert!(matches!(err, AuthError::NotYetValid { .. }), "{err}");

        let long = Claims {
            exp: NOW + MAX_LIFETIME_SECS + 1,
            ..claims()
        };
        let err = verify(&sign(&tenant(), &long), &provider(), NOW).unwrap_err();
        assert!(matches!(err, AuthError::Lifetime(_)), "{err}");
        let backwards = Claims {
            exp: NOW - 1,
            ..claims()
        };
        let err = verify(&sign(&tenant(), &backwards), &provider(), NOW).unwrap_err();
        assert!(matches!(err, AuthError::Lifetime(-1)), "{err}");
    }

    #[test]
    fn other_algorithms_and_none_are_refused() {
        for alg in ["none", "HS256", "ES256", "eddsa", ""] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            let err = verify(&raw(&header, &claims_json()), &provider(), NOW).unwrap_err();
            assert_eq!(err, AuthError::Algorithm(alg.into()));
        }
        // An unsigned token (`alg: none` with an empty signature part).
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims_json())
        );
        assert!(verify(&unsigned, &provider(), NOW).is_err());
        // Header fields we do not know (e.g. `crit`, `jwk`) are not ignored.
        let header = r#"{"alg":"EdDSA","typ":"JWT","crit":["exp"]}"#;
        let err = verify(&raw(header, &claims_json()), &provider(), NOW).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{err}");
        let err = verify(
            &raw(r#"{"alg":"EdDSA","typ":"JWS"}"#, &claims_json()),
            &provider(),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{err}");
    }

    #[test]
    fn bad_encodings_and_missing_claims_are_malformed() {
        let good = sign(&tenant(), &claims());
        let (head, rest) = good.split_once('.').unwrap();
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{good}.extra"),
            format!("{head}=.{rest}"),   // padding
            format!("{head}+.{rest}"),   // not the URL alphabet
            good.replacen('.', ". ", 1), // whitespace
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for token in &cases {
            let err = verify(token, &provider(), NOW).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{token:?}: {err}");
        }
        // Each required claim, left out.
        for missing in ["iss", "pk", "aud", "iat", "nbf", "exp", "scopes"] {
            let mut value: serde_json::Value = serde_json::from_str(&claims_json()).unwrap();
            value.as_object_mut().unwrap().remove(missing);
            let err = verify(
                &raw(r#"{"alg":"EdDSA"}"#, &value.to_string()),
                &provider(),
                NOW,
            )
            .unwrap_err();
            assert!(
                matches!(&err, AuthError::Malformed(m) if m.contains(missing)),
                "{err}"
            );
        }
        // An unknown scope, an unknown claim, and no scope at all.
        for (key, value) in [
            ("scopes", serde_json::json!(["status", "root"])),
            ("admin", serde_json::json!(true)),
            ("scopes", serde_json::json!([])),
        ] {
            let mut claims: serde_json::Value = serde_json::from_str(&claims_json()).unwrap();
            claims[key] = value;
            let err = verify(
                &raw(r#"{"alg":"EdDSA"}"#, &claims.to_string()),
                &provider(),
                NOW,
            )
            .unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{key}: {err}");
        }
        // A signature of the wrong length.
        let short = format!(
            "{}.{}",
            &good[..good.rfind('.').unwrap()],
            URL_SAFE_NO_PAD.encode([0u8; 63])
        );
        assert!(matches!(
            verify(&short, &provider(), NOW),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        // Claims changed after signing (another scope added).
        let good = sign(&tenant(), &claims());
        let parts: Vec<&str> = good.split('.').collect();
        let mut more = claims();
        more.scopes.push(Scope::Shell);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&more).unwrap()),
            parts[2]
        );
        assert_eq!(
            verify(&tampered, &provider(), NOW),
            Err(AuthError::BadSignature)
        );

        // Signed by another key that claims the tenant's key.
        let mallory = SecretKey::from_seed([9; 32]);
        assert_eq!(
            verify(&sign(&mallory, &claims()), &provider(), NOW),
            Err(AuthError::BadSignature)
        );

        // Another key, honest about its key but claiming the tenant's address.
        let lying = Claims {
            pk: mallory.public_key(),
            ..claims()
        };
        let err = verify(&sign(&mallory, &lying), &provider(), NOW).unwrap_err();
        assert!(matches!(err, AuthError::IssuerMismatch { .. }), "{err}");

        // A good token for another provider.
        let other = Address::from_public_key(&SecretKey::from_seed([3; 32]).public_key());
        let err = verify(&good, &other, NOW).unwrap_err();
        assert!(matches!(err, AuthError::Audience { .. }), "{err}");
        assert_eq!(err.http_status(), 401);
    }
}
