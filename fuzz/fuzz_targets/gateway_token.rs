//! Fuzzes the gateway's token verifier: any text must be refused or accepted, never panic, and
//! a token it accepts must verify again to the same claims and be for the provider asked.
//!
//! Run: `cargo fuzz run gateway_token`.
#![no_main]

use kumo_gateway::auth;
use kumo_types::{Address, SecretKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let provider = Address::from_public_key(&SecretKey::from_seed([2; 32]).public_key());
    let now = 1_700_000_000;
    if let Ok(claims) = auth::verify(text, &provider, now) {
        assert_eq!(claims.aud, provider);
        assert_eq!(auth::verify(text, &provider, now).unwrap(), claims);
    }
    // Also a well-signed token whose claims part is the fuzz input.
    let key = SecretKey::from_seed([1; 32]);
    let token = auth::mint(&key, provider, &[auth::Scope::Status], now, 60);
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = text;
    let _ = auth::verify(&parts.join("."), &provider, now);
});
