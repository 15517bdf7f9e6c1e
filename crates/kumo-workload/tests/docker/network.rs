//! A lease's private network: its services answer on their addresses and find each other by
//! name; another lease reaches neither.

use kumo_sdl::manifest::Proto;
use kumo_workload::{Backend, DeployOptions, ServicePort};

use crate::support::{engine, eventually, group, http_get, idle, web};

/// A request for `/` on port 80 of `host`, from inside a replica.
const GET: &str = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2";

#[tokio::test]
async fn services_answer_on_their_address_and_reach_each_other_by_name() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let status = engine
        .backend
        .deploy(
            &lease,
            &group(vec![web("web"), idle("client")]),
            &DeployOptions::default(),
        )
        .await
        .expect("deploy");

    let web_status = status.service("web").expect("web is listed");
    assert_eq!(web_status.replicas, 1);
    assert_eq!(web_status.image, crate::support::IMAGE);
    assert_eq!(
        web_status.ports,
        vec![ServicePort {
            port: 80,
            proto: Proto::Tcp
        }]
    );
    // What the ingress will do: connect to the replica's address on the lease network.
    let ip = web_status.instances[0].ip.expect("web has an address");
    let page = eventually(10, "web to answer", || async {
        http_get(ip, 80).await.ok()
    })
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("kumo test page"), "{page}");

    let out = engine.sh(&lease, "client", &format!("{GET} web 80")).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("kumo test page"), "{out:?}");
}

#[tokio::test]
async fn a_lease_cannot_reach_another_lease_by_address_or_name() {
    let Some(engine) = engine().await else { return };
    let a = engine.lease();
    let b = engine.lease();
    let opts = DeployOptions::default();
    let status_a = engine
        .backend
        .deploy(&a, &group(vec![web("web"), idle("client")]), &opts)
        .await
        .expect("deploy a");
    engine
        .backend
        .deploy(&b, &group(vec![idle("client")]), &opts)
        .await
        .expect("deploy b");
    let ip = status_a.service("web").unwrap().instances[0]
        .ip
        .expect("web has an address");

    // Within lease A the same probes work, so a failure below means isolation, not a broken
    // probe.
    let inside = eventually(10, "web to answer inside its lease", || async {
        let out = engine.sh(&a, "client", &format!("{GET} {ip} 80")).await;
        (out.code == 0).then_some(out)
    })
    .await;
    assert!(inside.stdout.contains("kumo test page"), "{inside:?}");
    let by_name = engine.sh(&a, "client", &format!("{GET} web 80")).await;
    assert!(by_name.stdout.contains("kumo test page"), "{by_name:?}");

    let by_ip = engine.sh(&b, "client", &format!("{GET} {ip} 80")).await;
    assert_ne!(
        by_ip.code, 0,
        "lease B reached lease A's web at {ip}: {by_ip:?}"
    );
    assert!(!by_ip.stdout.contains("kumo test page"), "{by_ip:?}");

    let by_name = engine.sh(&b, "client", &format!("{GET} web 80")).await;
    assert_ne!(
        by_name.code, 0,
        "lease B resolved lease A's service name: {by_name:?}"
    );
    assert!(!by_name.stdout.contains("kumo test page"), "{by_name:?}");
}
