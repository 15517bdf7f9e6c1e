//! Persistent volumes, `ram` volumes and the resource limits a replica runs under.

use bollard::models::RestartPolicyNameEnum;
use bollard::query_parameters::RestartContainerOptionsBuilder;
use kumo_workload::{Backend, DeployOptions, ReplicaState};

use crate::support::{engine, eventually, group, idle, mount, storage, storage_dir};

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

/// Loop devices backed by `image`, as `losetup -j` lists them.
fn loop_devices_of(image: &std::path::Path) -> String {
    let out = std::process::Command::new("losetup")
        .arg("-j")
        .arg(image)
        .output()
        .expect("losetup runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Blocks the file holds on the host's disk, in bytes.
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[tokio::test]
async fn a_persistent_volume_holds_to_its_size_and_goes_with_the_lease() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let mut db = idle("db");
    mount(
        &mut db,
        storage(
            "data",
            32 << 20,
            &[("class", "beta2"), ("persistent", "true")],
        ),
        "/data",
    );
    engine
        .backend
        .deploy(&lease, &group(vec![db.clone()]), &DeployOptions::default())
        .await
        .expect("deploy");

    // The tenant gets at least what the volume's size says, and not much more.
    let df = engine.sh(&lease, "db", "df -k /data | tail -1").await;
    let free_kib: u64 = df
        .stdout
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ((32 << 10)..(36 << 10)).contains(&free_kib),
        "free space in a 32 MiB volume: {df:?}"
    );

    // The volume's image, found through the engine's record of the volume.
    let volumes = engine
        .backend
        .docker()
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .unwrap()
        .volumes
        .unwrap_or_default();
    let record = volumes
        .iter()
        .find(|v| v.labels.get("kumo.instance") == Some(&engine.instance))
        .expect("the volume's record");
    let image = std::path::PathBuf::from(&record.labels["kumo.disk"]);
    assert!(
        image.starts_with(storage_dir(&engine.instance)),
        "{image:?}"
    );
    assert!(
        !loop_devices_of(&image).is_empty(),
        "mounted through a loop device"
    );
    let reserved = allocated(&image);

    // 64 MiB into a 32 MiB volume: ENOSPC inside, nothing more on the host's disk.
    let fill = engine
        .sh(
            &lease,
            "db",
            "dd if=/dev/zero of=/data/fill bs=1M count=64 2>&1; echo exit=$?",
        )
        .await;
    assert!(
        fill.stdout.contains("No space left on device"),
        "writing past the volume's size: {fill:?}"
    );
    assert!(!fill.stdout.contains("exit=0"), "{fill:?}");
    assert_eq!(
        allocated(&image),
        reserved,
        "the image was preallocated and did not grow"
    );
    assert!(reserved < 48 << 20, "image of {reserved} bytes for 32 MiB");

    // Full, the volume still works once space is freed, and keeps its data across an update
    // that recreates the container.
    let write = engine
        .sh(&lease, "db", "rm /data/fill && echo kept > /data/file")
        .await;
    assert_eq!(write.code, 0, "{write:?}");
    db.env = Some(vec!["VERSION=2".into()]);
    engine
        .backend
        .update(&lease, &group(vec![db]), &DeployOptions::default())
        .await
        .expect("update");
    let after = engine.sh(&lease, "db", "cat /data/file").await;
    assert_eq!(after.stdout, "kept\n", "{after:?}");

    // Closing the lease removes the volume's record, image, mount point and loop device.
    let report = engine.backend.teardown(&lease).await.expect("teardown");
    assert_eq!(report.volumes, 1);
    assert!(!image.exists(), "image {image:?} left behind");
    assert!(
        !image.with_extension("").exists(),
        "mount point left behind"
    );
    assert_eq!(loop_devices_of(&image), "", "loop device left behind");
    assert!(engine.backend.leases().await.unwrap().is_empty());
}

#[tokio::test]
async fn ram_storage_past_its_size_gives_enospc() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    let mut cache = idle("cache");
    mount(
        &mut cache,
        storage("scratch", 8 << 20, &[("class", "ram")]),
        "/scratch",
    );
    engine
        .backend
        .deploy(&lease, &group(vec![cache]), &DeployOptions::default())
        .await
        .expect("deploy");
    let fill = engine
        .sh(
            &lease,
            "cache",
            "dd if=/dev/zero of=/scratch/fill bs=1M count=16 2>&1; echo exit=$?; du -k /scratch/fill",
        )
        .await;
    assert!(
        fill.stdout.contains("No space left on device"),
        "writing past the tmpfs's size: {fill:?}"
    );
    assert!(fill.stdout.contains("8192\t/scratch/fill"), "{fill:?}");
}

#[tokio::test]
async fn a_replica_past_its_ephemeral_storage_is_evicted_with_a_reason() {
    let Some(engine) = engine().await else { return };
    let lease = engine.lease();
    // Ephemeral storage: the root file system's 16 MiB and a 4 MiB scratch volume.
    let mut hog = idle("hog");
    hog.resources.storage[0].bytes = 16 << 20;
    mount(&mut hog, storage("scratch", 4 << 20, &[]), "/scratch");
    let mut calm = idle("calm");
    calm.resources.storage[0].bytes = 16 << 20;
    let services = group(vec![hog, calm]);
    engine
        .backend
        .deploy(&lease, &services, &DeployOptions::default())
        .await
        .expect("deploy");

    // Under the limit (writable layer and scratch volume together): nothing happens.
    for (service, script) in [
        (
            "hog",
            "dd if=/dev/zero of=/big bs=1M count=12 && dd if=/dev/zero of=/scratch/s bs=1M count=3",
        ),
        ("calm", "dd if=/dev/zero of=/small bs=1M count=8"),
    ] {
        let w = engine.sh(&lease, service, script).await;
        assert_eq!(w.code, 0, "{w:?}");
    }
    let evicted = engine.backend.enforce_storage().await.expect("enforce");
    assert!(
        evicted.iter().all(|e| e.lease != lease),
        "nothing is over yet: {evicted:?}"
    );

    // 12 + 3 + 6 MiB > 20 MiB: the hog goes, the calm service stays.
    let w = engine
        .sh(&lease, "hog", "dd if=/dev/zero of=/more bs=1M count=6")
        .await;
    assert_eq!(w.code, 0, "the writable layer has no hard limit: {w:?}");
    let evicted: Vec<_> = engine
        .backend
        .enforce_storage()
        .await
        .expect("enforce")
        .into_iter()
        .filter(|e| e.lease == lease)
        .collect();
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_eq!(
        (evicted[0].service.as_str(), evicted[0].replica),
        ("hog", 0)
    );
    assert_eq!(evicted[0].limit_bytes, 20 << 20);
    assert!(evicted[0].used_bytes > 20 << 20);

    let status = engine.backend.status(&lease).await.expect("status");
    assert!(status.service("hog").is_none(), "removed: {status:?}");
    assert_eq!(status.service("calm").unwrap().running, 1);
    let recorded = engine.backend.evictions(&lease).await.expect("evictions");
    assert_eq!(recorded, evicted, "what the tenant's status shows");
    let reason = &recorded[0].reason;
    assert!(
        reason.contains("evicted") && reason.contains("20 MiB of ephemeral storage"),
        "{reason}"
    );

    // Deployed again (as the provider does for a missing replica), it starts empty; the
    // record stays until the lease closes.
    engine
        .backend
        .deploy(&lease, &services, &DeployOptions::default())
        .await
        .expect("deploy again");
    let fresh = engine
        .sh(&lease, "hog", "ls /big /more 2>&1; ls /scratch")
        .await;
    assert!(fresh.stdout.contains("No such file"), "{fresh:?}");
    assert_eq!(engine.backend.evictions(&lease).await.unwrap().len(), 1);
    engine.backend.teardown(&lease).await.expect("teardown");
    assert!(engine.backend.evictions(&lease).await.unwrap().is_empty());
}
