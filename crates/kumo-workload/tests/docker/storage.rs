//! Persistent volumes, `ram` volumes and the resource limits a replica runs under.

use bollard::models::RestartPolicyNameEnum;
use bollard::query_parameters::RestartContainerOptionsBuilder;
use kumo_workload::{Backend, DeployOptions, ReplicaState};

use crate::support::{engine, eventually, group, idle, mount, storage};

#[tokio::test]
async fn persistent_data_survives_restarts_and_recreation_and_ram_is_tmpfs() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let mut db = idle("db");
    mount(
        &mut db,
        storage(
            "data",
            64 << 20,
            &[("class", "beta2"), ("persistent", "true")],
        ),
        "/data",
    );
    mount(
        &mut db,
        storage("cache", 8 << 20, &[("class", "ram")]),
        "/cache",
    );
    let opts = DeployOptions::default();
    let status = engine
        .backend
        .deploy(&lease, &group(vec![db.clone()]), &opts)
        .await
        .expect("deploy");
    let first_id = status.service("db").unwrap().instances[0].id.clone();

    let cache = engine
        .sh(&lease, "db", "grep ' /cache ' /proc/mounts")
        .await;
    assert!(cache.stdout.starts_with("tmpfs /cache tmpfs"), "{cache:?}");
    assert!(
        cache.stdout.contains("size=8192k"),
        "the volume's size: {cache:?}"
    );
    let write = engine
        .sh(
            &lease,
            "db",
            "echo kept > /data/file && echo gone > /cache/file",
        )
        .await;
    assert_eq!(write.code, 0, "{write:?}");

    // Restart the container, as the engine does after a crash or its own restart.
    let restart = RestartContainerOptionsBuilder::new().t(1).build();
    engine
        .backend
        .docker()
        .restart_container(&first_id, Some(restart))
        .await
        .unwrap();
    eventually(10, "db to run again", || async {
        let s = engine.backend.status(&lease).await.unwrap();
        (s.service("db").unwrap().instances[0].state == ReplicaState::Running).then_some(())
    })
    .await;
    let after = engine.sh(&lease, "db", "cat /data/file; ls /cache").await;
    assert_eq!(
        after.stdout, "kept\n",
        "data kept, tmpfs emptied: {after:?}"
    );

    // A new manifest recreates the container; the volume stays.
    db.env = Some(vec!["VERSION=2".into()]);
    let updated = engine
        .backend
        .update(&lease, &group(vec![db]), &opts)
        .await
        .expect("update");
    assert_ne!(updated.service("db").unwrap().instances[0].id, first_id);
    let after = engine.sh(&lease, "db", "cat /data/file").await;
    assert_eq!(after.stdout, "kept\n", "{after:?}");

    let inspect = engine
        .backend
        .docker()
        .inspect_container(&updated.service("db").unwrap().instances[0].id, None)
        .await
        .unwrap();
    let data = inspect
        .mounts
        .unwrap()
        .into_iter()
        .find(|m| m.destination.as_deref() == Some("/data"))
        .unwrap();
    assert_eq!(data.typ.as_deref(), Some("volume"));
}

#[tokio::test]
async fn replicas_run_under_the_profiles_limits() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    // The test profile: 250 millis of CPU, 64 MiB of memory; the test config: 256 pids.
    let status = engine
        .backend
        .deploy(&lease, &group(vec![idle("box")]), &DeployOptions::default())
        .await
        .expect("deploy");
    let id = &status.service("box").unwrap().instances[0].id;
    let host = engine
        .backend
        .docker()
        .inspect_container(id, None)
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(host.nano_cpus, Some(250_000_000));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.memory_swap, Some(64 << 20), "no swap beyond the limit");
    assert_eq!(host.pids_limit, Some(256));
    assert_eq!(
        host.restart_policy.unwrap().name,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED)
    );

    // What the kernel enforces, read from inside (cgroup v2 file, else v1).
    let read = |v2: &str, v1: &str| {
        format!("cat /sys/fs/cgroup/{v2} 2>/dev/null || cat /sys/fs/cgroup/{v1}")
    };
    let memory = engine
        .sh(
            &lease,
            "box",
            &read("memory.max", "memory/memory.limit_in_bytes"),
        )
        .await;
    assert_eq!(
        memory.stdout.trim(),
        (64u64 << 20).to_string(),
        "{memory:?}"
    );
    let pids = engine
        .sh(&lease, "box", &read("pids.max", "pids/pids.max"))
        .await;
    assert_eq!(pids.stdout.trim(), "256", "{pids:?}");
    let cpu = engine
        .sh(&lease, "box", &read("cpu.max", "cpu/cpu.cfs_quota_us"))
        .await;
    // v2: "25000 100000"; v1: "25000" (a quarter of each 100 ms period).
    assert!(cpu.stdout.trim().starts_with("25000"), "{cpu:?}");
}
