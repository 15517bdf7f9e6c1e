//! Who gets in: pinned TLS, tokens (401), ownership and scopes (403), request limits. These
//! need no engine: the gateway decides before any workload is touched.

use kumo_gateway::auth::{self, Claims, Scope};
use kumo_gateway::client::{ClientError, GatewayClient, ShellRequest};
use kumo_types::{Address, SecretKey};
use kumo_workload::LogOptions;
use serde_json::Value;

use crate::support::{Gateway, manifest, random_key, service};

#[tokio::test]
async fn a_client_pinning_another_certificate_does_not_connect() {
    let gateway = Gateway::start().await;
    let tenant = random_key();
    let status = gateway.client(&tenant).provider_status().await.unwrap();
    assert_eq!(status.provider, gateway.provider);

    let mut wrong = gateway.fingerprint;
    wrong[0] ^= 1;
    let client =
        GatewayClient::new(&gateway.uri(), wrong, tenant.clone(), gateway.provider).unwrap();
    let err = client.provider_status().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Connect { cause, .. } if cause.contains("fingerprint")),
        "{err}"
    );
    // WebSockets pin the same way.
    let lease = gateway.lease(&tenant);
    let err = client
        .logs(lease.dseq, 1, 1, &LogOptions::default())
        .await
        .err()
        .expect("no connection");
    assert!(
        matches!(&err, ClientError::Connect { cause, .. } if cause.contains("fingerprint")),
        "{err}"
    );

    assert!(matches!(
        GatewayClient::new("http://127.0.0.1:1", wrong, tenant, gateway.provider),
        Err(ClientError::BadUri(_))
    ));
}

/// `GET /lease/…/status` with `token` as the bearer token; the status and the JSON error.
async fn status_with(gateway: &Gateway, dseq: u64, token: Option<&str>) -> (u16, Value) {
    let mut request = gateway
        .http()
        .get(format!("{}/lease/{dseq}/1/1/status", gateway.uri()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_tokens_get_401_and_a_reason() {
    let gateway = Gateway::start().await;
    let tenant = random_key();
    let lease = gateway.lease(&tenant);
    let now = auth::now_secs();
    let good = |c: &Claims| auth::sign(&tenant, c);
    let claims = Claims {
        iss: lease.owner,
        pk: tenant.public_key(),
        aud: gateway.provider,
        iat: now,
        nbf: now,
        exp: now + 60,
        scopes: vec![Scope::Status],
    };
    let (code, _) = status_with(&gateway, lease.dseq, Some(&good(&claims))).await;
    assert_eq!(code, 200);

    let expired = Claims {
        iat: now - 3600,
        nbf: now - 3600,
        exp: now - 600,
        ..claims.clone()
    };
    let (code, body) = status_with(&gateway, lease.dseq, Some(&good(&expired))).await;
    assert_eq!(code, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );

    // Signed by someone else, claiming the tenant's key and address.
    let mallory = random_key();
    let (code, body) =
        status_with(&gateway, lease.dseq, Some(&auth::sign(&mallory, &claims))).await;
    assert_eq!(code, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );

    // Honest about its key, lying about whose address it is.
    let lying = Claims {
        pk: mallory.public_key(),
        ..claims.clone()
    };
    let (code, body) = status_with(&gateway, lease.dseq, Some(&auth::sign(&mallory, &lying))).await;
    assert_eq!(code, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("issuer"),
        "{body}"
    );

    let (code, body) = status_with(&gateway, lease.dseq, None).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = status_with(&gateway, lease.dseq, Some("not.a.token")).await;
    assert_eq!(code, 401);

    // A client whose tokens name another provider.
    let other = crate::support::random_address();
    let client = GatewayClient::new(&gateway.uri(), gateway.fingerprint, tenant, other).unwrap();
    let err = client.lease_status(lease.dseq, 1, 1).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized(_)), "{err}");
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn another_tenant_gets_403_everywhere() {
    let gateway = Gateway::start().await;
    let (alice, bob) = (random_key(), random_key());
    let lease = gateway.lease(&alice);
    let bob_client = gateway.client(&bob);

    let err = bob_client.lease_status(lease.dseq, 1, 1).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Forbidden(m) if m.contains("not yours")),
        "{err}"
    );
    let err = bob_client
        .logs(lease.dseq, 1, 1, &LogOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Forbidden(_)), "{err}");
    let err = bob_client
        .shell(lease.dseq, 1, 1, &ShellRequest::new("web", ["echo", "hi"]))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Forbidden(_)), "{err}");
    let err = bob_client.events(lease.dseq, 1, 1).await.err().unwrap();
    assert!(matches!(err, ClientError::Forbidden(_)), "{err}");
    let err = bob_client
        .restart(lease.dseq, 1, 1, Some("web"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Forbidden(_)), "{err}");
    let err = bob_client
        .put_manifest(lease.dseq, &manifest(vec![service("web", &["sleep", "1"])]))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Forbidden(_)), "{err}");

    // The owner gets past authorization (to the backend, which has no engine here: 502).
    let err = gateway
        .client(&alice)
        .put_manifest(lease.dseq, &manifest(vec![service("web", &["sleep", "1"])]))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::BadGateway(_)), "{err}");
    // A lease nobody has here.
    let err = bob_client
        .lease_status(lease.dseq + 1, 1, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn a_token_without_the_scope_gets_403() {
    let gateway = Gateway::start().await;
    let tenant = random_key();
    let lease = gateway.lease(&tenant);
    let logs_only = auth::mint(
        &tenant,
        gateway.provider,
        &[Scope::Logs],
        auth::now_secs(),
        60,
    );
    let (code, body) = status_with(&gateway, lease.dseq, Some(&logs_only)).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status"),
        "{body}"
    );

    // And the manifest route needs send-manifest.
    let response = gateway
        .http()
        .put(format!(
            "{}/deployment/{}/manifest",
            gateway.uri(),
            lease.dseq
        ))
        .bearer_auth(&logs_only)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);

    // And a restart needs restart: a status token does not reboot anything.
    let status_only = auth::mint(
        &tenant,
        gateway.provider,
        &[Scope::Status],
        auth::now_secs(),
        60,
    );
    let response = gateway
        .http()
        .post(format!(
            "{}/lease/{}/1/1/restart?service=web",
            gateway.uri(),
            lease.dseq
        ))
        .bearer_auth(&status_only)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restart"),
        "{body}"
    );
}

#[tokio::test]
async fn manifests_too_large_or_malformed_are_refused() {
    let gateway = Gateway::start().await;
    let tenant = SecretKey::from_seed([5; 32]);
    let lease = gateway.lease(&tenant);
    let token = auth::mint(
        &tenant,
        gateway.provider,
        &[Scope::SendManifest],
        auth::now_secs(),
        60,
    );
    let put = |body: Vec<u8>| {
        gateway
            .http()
            .put(format!(
                "{}/deployment/{}/manifest",
                gateway.uri(),
                lease.dseq
            ))
            .bearer_auth(&token)
            .body(body)
            .send()
    };
    let response = put(vec![b' '; 65 << 10]).await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    let response = put(b"{\"groups\": 7}".to_vec()).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a manifest"),
        "{body}"
    );

    // Path numbers that are not numbers.
    let (code, body) = status_with(&gateway, 0, None).await;
    assert_eq!(code, 401, "{body}");
    let response = gateway
        .http()
        .get(format!("{}/lease/x/1/1/status", gateway.uri()))
        .bearer_auth(auth::mint(
            &tenant,
            gateway.provider,
            &[Scope::Status],
            auth::now_secs(),
            60,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let _ = Address::from_public_key(&tenant.public_key());
}
