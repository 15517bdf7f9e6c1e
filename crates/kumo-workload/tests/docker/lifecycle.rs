//! Deploy, update, teardown, restart reconciliation and the restart policy.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use futures::StreamExt;
use kumo_types::LeaseId;
use kumo_workload::docker::labels;
use kumo_workload::{
    Backend, DeployOptions, DeploymentStatus, DockerBackend, EventKind, ReplicaState, WorkloadError,
};

use crate::support::{self, engine, eventually, group, idle, mount, service, storage, web};

fn ids(status: &DeploymentStatus, service: &str) -> Vec<String> {
    status
        .service(service)
        .unwrap()
        .instances
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

#[tokio::test]
async fn count_gives_replicas_and_deploying_again_changes_nothing() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let mut w = web("web");
    w.count = 2;
    let g = group(vec![w, idle("client")]);
    let opts = DeployOptions::default();
    let first = engine
        .backend
        .deploy(&lease, &g, &opts)
        .await
        .expect("deploy");

    let web_status = first.service("web").unwrap();
    assert_eq!(web_status.replicas, 2);
    let replicas: Vec<u32> = web_status.instances.iter().map(|r| r.replica).collect();
    assert_eq!(replicas, vec![0, 1]);
    let ips: Vec<_> = web_status.instances.iter().map(|r| r.ip.unwrap()).collect();
    assert_ne!(ips[0], ips[1]);

    let again = engine
        .backend
        .deploy(&lease, &g, &opts)
        .await
        .expect("deploy again");
    assert_eq!(ids(&again, "web"), ids(&first, "web"), "nothing recreated");
    assert_eq!(ids(&again, "client"), ids(&first, "client"));

    let status = eventually(10, "both web replicas running", || async {
        let s = engine.backend.status(&lease).await.unwrap();
        s.service("web").unwrap().is_ready().then_some(s)
    })
    .await;
    assert_eq!(status.service("web").unwrap().running, 2);
    assert_eq!(
        status.service("web").unwrap().instances.len(),
        2,
        "no duplicates"
    );
}

#[tokio::test]
async fn update_replaces_only_the_services_that_changed() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let opts = DeployOptions::default();
    let mut client = idle("client");
    client.env = Some(vec!["COLOR=blue".into()]);
    let before = engine
        .backend
        .deploy(&lease, &group(vec![web("web"), client.clone()]), &opts)
        .await
        .expect("deploy");
    assert_eq!(
        engine.sh(&lease, "client", "echo $COLOR").await.stdout,
        "blue\n"
    );

    client.env = Some(vec!["COLOR=green".into()]);
    let after = engine
        .backend
        .update(&lease, &group(vec![web("web"), client]), &opts)
        .await
        .expect("update");
    assert_eq!(ids(&after, "web"), ids(&before, "web"), "web is unchanged");
    assert_ne!(
        ids(&after, "client"),
        ids(&before, "client"),
        "client is new"
    );
    assert_eq!(
        engine.sh(&lease, "client", "echo $COLOR").await.stdout,
        "green\n"
    );
    assert_eq!(
        engine
            .sh(&lease, "client", "echo $AKASH_DEPLOYMENT_SEQUENCE")
            .await
            .stdout,
        format!("{}\n", lease.dseq),
        "the lease's variables are set"
    );

    // A service dropped from the group goes away.
    let only_web = engine
        .backend
        .update(&lease, &group(vec![web("web")]), &opts)
        .await
        .expect("update");
    assert!(only_web.service("client").is_none(), "{only_web:?}");
}

#[tokio::test]
async fn unknown_leases_are_reported_as_such() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let err = engine.backend.status(&lease).await.unwrap_err();
    assert!(matches!(err, WorkloadError::LeaseNotFound { .. }), "{err}");
    let err = engine
        .backend
        .update(
            &lease,
            &group(vec![idle("client")]),
            &DeployOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WorkloadError::LeaseNotFound { .. }), "{err}");
    assert!(engine.backend.leases().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_group_that_cannot_run_starts_nothing() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let mut bad = idle("bad");
    bad.resources.gpu.units = 1;
    let err = engine
        .backend
        .deploy(
            &lease,
            &group(vec![idle("fine"), bad]),
            &DeployOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("GPU"), "{err}");
    assert!(!engine.backend.leases().await.unwrap().contains(&lease));
}

/// Everything of `lease` the engine still has, found by label as an operator would.
async fn leftovers(backend: &DockerBackend, instance: &str, lease: &LeaseId) -> Vec<String> {
    let filter = labels::filter(instance, Some(lease));
    let docker = backend.docker();
    let mut left: Vec<String> = Vec::new();
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
        .unwrap();
    left.extend(
        containers
            .into_iter()
            .map(|c| format!("container {:?}", c.names)),
    );
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
        .unwrap();
    left.extend(
        networks
            .into_iter()
            .map(|n| format!("network {:?}", n.name)),
    );
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
        .unwrap();
    left.extend(
        volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| format!("volume {}", v.name)),
    );
    left
}

#[tokio::test]
async fn teardown_leaves_nothing_and_can_be_repeated() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let mut db = idle("db");
    db.count = 2;
    mount(
        &mut db,
        storage(
            "data",
            64 << 20,
            &[("class", "beta2"), ("persistent", "true")],
        ),
        "/data",
    );
    mount(&mut db, storage("scratch", 16 << 20, &[]), "/scratch");
    engine
        .backend
        .deploy(
            &lease,
            &group(vec![db, web("web")]),
            &DeployOptions::default(),
        )
        .await
        .expect("deploy");
    assert!(
        !leftovers(&engine.backend, &engine.instance, &lease)
            .await
            .is_empty()
    );

    let report = engine.backend.teardown(&lease).await.expect("teardown");
    assert_eq!(report.replicas, 3);
    assert_eq!(report.networks, 1);
    assert_eq!(report.volumes, 2, "the two persistent volumes");
    assert_eq!(
        leftovers(&engine.backend, &engine.instance, &lease).await,
        Vec::<String>::new()
    );

    let again = engine
        .backend
        .teardown(&lease)
        .await
        .expect("teardown again");
    assert_eq!(again, Default::default());
    assert!(!engine.backend.leases().await.unwrap().contains(&lease));
}

#[tokio::test]
async fn a_restarted_provider_finds_its_leases_and_only_its_own() {
    let Some(engine) = engine().await else { return };
    let (a, b) = (engine.lease(), engine.lease());
    let opts = DeployOptions::default();
    let g = group(vec![web("web")]);
    let before = engine
        .backend
        .deploy(&a, &g, &opts)
        .await
        .expect("deploy a");
    engine
        .backend
        .deploy(&b, &g, &opts)
        .await
        .expect("deploy b");

    // A new backend, as after a provider restart: it knows nothing but the engine.
    let restarted = DockerBackend::connect(support::config(&engine.instance))
        .await
        .unwrap();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(restarted.leases().await.unwrap(), expected);
    // One listing of every lease's replicas says what each lease's own status says: which
    // replicas, in which state, at which address (what the provider routes to after a restart).
    let all = restarted.statuses().await.unwrap();
    assert_eq!(all.iter().map(|s| s.lease).collect::<Vec<_>>(), expected);
    for listed in &all {
        let one = restarted.status(&listed.lease).await.unwrap();
        let view = |s: &kumo_workload::DeploymentStatus| {
            s.services
                .iter()
                .map(|s| {
                    let replicas: Vec<_> = s
                        .instances
                        .iter()
                        .map(|r| (r.replica, r.id.clone(), r.state, r.ip))
                        .collect();
                    (
                        s.name.clone(),
                        s.replicas,
                        s.running,
                        s.ports.clone(),
                        replicas,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(view(listed), view(&one));
        assert!(listed.services[0].instances[0].ip.is_some());
    }

    // Another provider on the same engine sees none of them.
    let other_instance = format!("another-provider-{}", support::random_hex(4));
    let other = DockerBackend::connect(support::config(&other_instance))
        .await
        .unwrap();
    let theirs = other.leases().await.unwrap();
    assert!(!theirs.contains(&a) && !theirs.contains(&b));
    assert!(matches!(
        other.status(&a).await,
        Err(WorkloadError::LeaseNotFound { .. })
    ));
    // Its (empty) lease firewall table goes with it.
    other.remove_firewall().await.unwrap();

    // Deploying again after the restart converges on what runs: nothing duplicated.
    let after = restarted.deploy(&a, &g, &opts).await.expect("redeploy");
    assert_eq!(ids(&after, "web"), ids(&before, "web"));

    restarted.teardown(&b).await.unwrap();
    assert_eq!(restarted.leases().await.unwrap(), vec![a]);
}

#[tokio::test]
async fn a_crashing_service_is_restarted_and_its_exits_reported() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let mut events = engine.backend.events(&lease).await.expect("events");
    let crasher = service(
        "crasher",
        support::IMAGE,
        &["sh", "-c", "echo up; sleep 0.3; exit 3"],
    );
    engine
        .backend
        .deploy(&lease, &group(vec![crasher]), &DeployOptions::default())
        .await
        .expect("deploy");

    // The engine reports the exit with its code, then starts the replica again.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let deadline = tokio::time::Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        while !seen.contains_key("restarted_after_exit") {
            let event = events
                .next()
                .await
                .expect("event stream open")
                .expect("event");
            assert_eq!((event.service.as_str(), event.replica), ("crasher", 0));
            match event.kind {
                EventKind::Exited { exit_code } => {
                    assert_eq!(exit_code, Some(3));
                    *seen.entry("exited").or_default() += 1;
                }
                EventKind::Started if seen.contains_key("exited") => {
                    seen.insert("restarted_after_exit", 1);
                }
                _ => {}
            }
        }
    })
    .await
    .expect("an exit with code 3 followed by a restart");

    let status = eventually(10, "a restart to be counted", || async {
        let s = engine.backend.status(&lease).await.unwrap();
        let r = s.service("crasher").unwrap().instances[0].clone();
        (r.restarts >= 1).then_some(r)
    })
    .await;
    assert_ne!(
        status.state,
        ReplicaState::Exited,
        "unless-stopped brings it back"
    );
}

#[tokio::test]
async fn restart_restarts_one_service_and_keeps_its_container() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let g = group(vec![web("web"), idle("client")]);
    let status = engine
        .backend
        .deploy(&lease, &g, &DeployOptions::default())
        .await
        .expect("deploy");
    let started_at = |id: String| {
        let docker = engine.backend.docker().clone();
        async move {
            docker
                .inspect_container(&id, None)
                .await
                .unwrap()
                .state
                .unwrap()
                .started_at
                .unwrap()
        }
    };
    let client_id = ids(&status, "client")[0].clone();
    let web_id = ids(&status, "web")[0].clone();
    let (client_before, web_before) = (
        started_at(client_id.clone()).await,
        started_at(web_id.clone()).await,
    );
    let out = engine.sh(&lease, "client", "echo kept > /mark").await;
    assert_eq!(out.code, 0, "{out:?}");

    let after = engine
        .backend
        .restart(&lease, Some("client"))
        .await
        .expect("restart");
    assert_eq!(
        ids(&after, "client"),
        vec![client_id.clone()],
        "same container"
    );
    assert_ne!(
        started_at(client_id).await,
        client_before,
        "client restarted"
    );
    assert_eq!(started_at(web_id).await, web_before, "web left alone");
    let out = engine.sh(&lease, "client", "cat /mark").await;
    assert_eq!(out.stdout.trim(), "kept", "{out:?}");

    let err = engine
        .backend
        .restart(&lease, Some("nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, WorkloadError::UnknownService { .. }), "{err}");
}
