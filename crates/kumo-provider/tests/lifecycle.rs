//! The lease lifecycle ([`kumo_provider::lifecycle`]) on a fake backend: no Docker, no chain,
//! milliseconds per test. What a tenant would notice: a manifest runs and is routed; a closed
//! lease leaves nothing running and no route; a replica removed behind the provider's back
//! comes back; an overdue lease refuses a late manifest; and, the race this design exists
//! for, a close that lands while a refresh is redeploying never leaves an orphan. A closed
//! lease's last logs are kept: readable by its owner only, within a size cap, until the
//! retention ends.
//!
//! The real-Docker tests of the same paths are in `crates/kumo-cli/tests/` (devnet) and
//! `crates/kumo-workload/tests/docker/`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use kumo_gateway::{GatewayError, routes::RouteTable};
use kumo_provider::{
    ProviderConfig, daemon::LeaseHost, inventory::Inventory, lifecycle::Lifecycle,
    metrics::ProviderMetrics, state::State,
};
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::{Address, GroupSpec, LeaseId};
use kumo_workload::{Backend, LogOptions, fake::FakeBackend};
use tokio::sync::Mutex;

const SDL: &str = r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to: [{global: true}]
      - port: 9000
        as: 9000
        to: [{global: true}]
profiles:
  compute:
    small:
      resources: {cpu: {units: 0.1}, memory: {size: 64Mi}, storage: {size: 128Mi}}
  placement:
    dc:
      pricing:
        small: {denom: ukumo, amount: 10}
deployment:
  web:
    dc: {profile: small, count: 2}
"#;

struct World {
    _dir: tempfile::TempDir,
    host: Arc<LeaseHost>,
    fake: Arc<FakeBackend>,
    leases: Lifecycle,
    spec: GroupSpec,
    group: ManifestGroup,
}

fn lease(n: u64) -> LeaseId {
    LeaseId {
        owner: Address([7; 20]),
        dseq: n,
        gseq: 1,
        oseq: 1,
        provider: Address([9; 20]),
    }
}

fn world(deploy_delay: Duration) -> World {
    world_configured(deploy_delay, |_| {})
}

/// A world whose provider config `configure` changed first.
fn world_configured(deploy_delay: Duration, configure: impl FnOnce(&mut ProviderConfig)) -> World {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::new().with_deploy_delay(deploy_delay));
    let mut config = ProviderConfig {
        data_dir: dir.path().into(),
        ..ProviderConfig::default()
    };
    configure(&mut config);
    let inventory = Inventory::from_discovered(64_000, 256 << 30, 4 << 40, &config.capacity);
    let host = Arc::new(LeaseHost {
        state: State::open(&dir.path().join("provider.redb")).unwrap(),
        config,
        backend: fake.clone(),
        vm: None,
        routes: RouteTable::new(),
        inventory,
        reserve_lock: Mutex::new(()),
        metrics: ProviderMetrics::default(),
    });
    let sdl = kumo_sdl::parse(SDL).unwrap();
    World {
        _dir: dir,
        leases: Lifecycle::start(host.clone()),
        host,
        fake,
        spec: sdl.groups()[0].clone(),
        group: sdl.manifest().groups[0].clone(),
    }
}

impl World {
    /// A lease as `LeaseCreated` leaves it: recorded, with its owner.
    async fn created(&self, id: LeaseId) {
        self.host.record_lease(id, self.spec.clone()).await.unwrap();
        self.leases.adopt(id);
    }

    /// A lease whose manifest was accepted and deployed.
    async fn running(&self, id: LeaseId) {
        self.created(id).await;
        self.leases.manifest(id, self.group.clone()).await.unwrap();
    }

    async fn engine_leases(&self) -> Vec<LeaseId> {
        self.fake.leases().await.unwrap()
    }

    /// The lease's log lines as the gateway serves them (live or kept), `[service-replica] line`.
    async fn logs(&self, id: &LeaseId, opts: LogOptions) -> Vec<String> {
        let stream = self.host.lease_logs(id, &opts).await.unwrap();
        stream
            .map(|l| {
                let l = l.unwrap();
                format!("[{}-{}] {}", l.service, l.replica, l.line)
            })
            .collect()
            .await
    }
}

#[tokio::test]
async fn a_manifest_runs_every_replica_and_routes_to_each() {
    let w = world(Duration::ZERO);
    w.running(lease(1)).await;
    let status = w.fake.status(&lease(1)).await.unwrap();
    assert_eq!(status.service("web").unwrap().instances.len(), 2);
    let routes = w.host.routes.lease(&lease(1)).expect("the lease is routed");
    assert_eq!(routes.http.len(), 1, "one generated host name");
    assert_eq!(routes.http[0].targets.len(), 2, "both replicas are targets");
    assert_eq!(routes.ports.len(), 1, "port 9000 is forwarded");
}

#[tokio::test]
async fn a_closed_lease_leaves_no_workload_route_or_record_and_its_owner_ends() {
    let w = world(Duration::ZERO);
    w.running(lease(1)).await;
    w.running(lease(2)).await;
    w.leases.close(lease(1), "closed by the tenant").await;
    assert_eq!(w.engine_leases().await, vec![lease(2)]);
    assert!(w.host.routes.lease(&lease(1)).is_none());
    assert!(w.host.state.lease(&lease(1)).unwrap().is_none());
    assert_eq!(w.leases.owned().await, vec![lease(2)]);
    // A manifest for the closed lease is refused and starts nothing.
    let late = w.leases.manifest(lease(1), w.group.clone()).await;
    assert!(matches!(late, Err(GatewayError::NotFound(_))), "{late:?}");
    assert_eq!(w.engine_leases().await, vec![lease(2)]);
}

/// A refresh whose engine listing caught a deploy half done (replicas created, no address yet)
/// must not replace the routes the deploy set afterwards with empty ones: the tenant would get
/// 502s until the next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_taken_during_a_deploy_does_not_empty_its_routes() {
    let w = world(Duration::from_millis(200));
    w.created(lease(1)).await;
    let deploy = {
        let leases = w.leases.clone();
        let group = w.group.clone();
        tokio::spawn(async move { leases.manifest(lease(1), group).await })
    };
    // The listing is taken while the replicas exist but have no address.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let half = w.fake.status(&lease(1)).await.unwrap();
    assert!(half.services[0].instances.iter().all(|r| r.ip.is_none()));
    let refresh = w.leases.refresh(false).await;
    deploy.await.unwrap().unwrap();
    assert_eq!(refresh.failed, 0);
    let routes = w.host.routes.lease(&lease(1)).unwrap();
    assert_eq!(routes.http[0].targets.len(), 2, "{routes:?}");
}

#[tokio::test]
async fn leases_closed_without_waiting_are_all_torn_down() {
    let w = world(Duration::from_millis(2));
    for n in 0..20 {
        w.running(lease(n)).await;
    }
    for n in 0..20 {
        w.leases.close_soon(lease(n), "closed on chain");
    }
    assert!(w.leases.owned().await.is_empty(), "no owner left at once");
    for _ in 0..200 {
        if w.engine_leases().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(w.engine_leases().await.is_empty());
    assert!(w.host.state.leases().unwrap().is_empty());
}

#[tokio::test]
async fn a_replica_removed_behind_the_providers_back_is_deployed_again_by_the_refresh() {
    let w = world(Duration::ZERO);
    w.running(lease(1)).await;
    w.running(lease(2)).await;
    assert!(w.fake.remove_replica(&lease(1), "web", 1));
    let report = w.leases.refresh(false).await;
    assert_eq!(report.routed, 2);
    assert_eq!(report.redeployed, 1, "only the lease that lost a replica");
    let status = w.fake.status(&lease(1)).await.unwrap();
    assert_eq!(status.service("web").unwrap().instances.len(), 2);
    assert_eq!(
        w.host.routes.lease(&lease(1)).unwrap().http[0]
            .targets
            .len(),
        2
    );
}

#[tokio::test]
async fn a_stopped_replica_is_started_by_the_reconciles_refresh_not_by_the_periodic_one() {
    let w = world(Duration::ZERO);
    w.running(lease(1)).await;
    assert!(w.fake.stop_replica(&lease(1), "web", 0));
    let periodic = w.leases.refresh(false).await;
    assert_eq!(
        periodic.redeployed, 0,
        "the engine's restart policy decides"
    );
    assert_eq!(
        w.fake.status(&lease(1)).await.unwrap().services[0].running,
        1
    );
    let reconcile = w.leases.refresh(true).await;
    assert_eq!(reconcile.redeployed, 1);
    assert_eq!(
        w.fake.status(&lease(1)).await.unwrap().services[0].running,
        2
    );
}

#[tokio::test]
async fn a_lease_past_its_manifest_deadline_refuses_a_late_manifest() {
    let w = world(Duration::ZERO);
    w.created(lease(1)).await;
    w.created(lease(2)).await;
    assert!(
        w.leases.overdue(lease(1), 0).await,
        "a 0 ms deadline has passed"
    );
    assert!(
        !w.leases.overdue(lease(2), 3_600_000).await,
        "an hour has not passed"
    );
    let late = w.leases.manifest(lease(1), w.group.clone()).await;
    assert!(matches!(late, Err(GatewayError::Conflict(_))), "{late:?}");
    assert!(w.engine_leases().await.is_empty(), "nothing was started");
    // A lease with its manifest is never overdue.
    w.leases.manifest(lease(2), w.group.clone()).await.unwrap();
    assert!(!w.leases.overdue(lease(2), 0).await);
}

/// The race of issue 28: a lease closes at the moment its refresh is redeploying it. Before
/// the lifecycle had one owner per lease, the refresh could finish its deploy after the
/// teardown and leave a workload with no lease. Each round: every lease loses a replica (so
/// the refresh redeploys it, taking 5 ms in the fake engine), then a refresh and the close
/// of half of the leases start together, in both orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_leases_while_the_refresh_redeploys_them_leaves_no_orphan() {
    let w = world(Duration::from_millis(5));
    let mut next = 0;
    for round in 0..40 {
        let ids: Vec<LeaseId> = (0..6).map(|i| lease(next + i)).collect();
        next += 6;
        for id in &ids {
            w.running(*id).await;
            assert!(w.fake.remove_replica(id, "web", 0));
        }
        let (closing, staying) = ids.split_at(3);
        let refresh = {
            let leases = w.leases.clone();
            tokio::spawn(async move { leases.refresh(false).await })
        };
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        let closes: Vec<_> = closing
            .iter()
            .map(|id| {
                let leases = w.leases.clone();
                let id = *id;
                tokio::spawn(async move { leases.close(id, "closed by the tenant").await })
            })
            .collect();
        refresh.await.unwrap();
        for c in closes {
            c.await.unwrap();
        }
        // Whatever the order, the closed leases have nothing left, now or after the next
        // refresh; the others run in full.
        w.leases.refresh(false).await;
        let engine = w.engine_leases().await;
        for id in closing {
            assert!(
                !engine.contains(id),
                "round {round}: lease {id} left running"
            );
            assert!(
                w.host.routes.lease(id).is_none(),
                "round {round}: route left"
            );
        }
        for id in staying {
            let status = w.fake.status(id).await.unwrap();
            assert_eq!(status.service("web").unwrap().instances.len(), 2);
        }
        for id in staying {
            w.leases.close(*id, "done").await;
        }
    }
    assert!(w.engine_leases().await.is_empty());
    assert!(w.leases.owned().await.is_empty());
    assert!(
        w.fake.teardowns() >= 240,
        "every lease was torn down once: {}",
        w.fake.teardowns()
    );
}

#[tokio::test]
async fn a_closed_leases_last_logs_are_kept_for_its_owner_and_nobody_else() {
    let w = world_configured(Duration::ZERO, |c| c.closed_logs_lines = 2);
    let owner = lease(1).owner;
    let stranger = Address([8; 20]);
    w.running(lease(1)).await;
    for (replica, line) in [
        (0, "starting"),
        (0, "listening"),
        (1, "starting"),
        (0, "bye"),
    ] {
        assert!(w.fake.write_log(&lease(1), "web", replica, line));
    }
    w.leases.close(lease(1), "closed on chain: owner").await;
    assert!(w.engine_leases().await.is_empty(), "torn down all the same");
    assert!(w.host.state.lease(&lease(1)).unwrap().is_none());

    // The owner still finds the lease, and reads the last 2 lines of each replica.
    let id = w.host.find_lease(&owner, 1, 1, 1).unwrap();
    assert_eq!(id, lease(1));
    assert_eq!(
        w.logs(&id, LogOptions::default()).await,
        ["[web-0] listening", "[web-0] bye", "[web-1] starting"]
    );
    let last = LogOptions {
        service: Some("web".into()),
        tail: Some(1),
        follow: true,
    };
    assert_eq!(w.logs(&id, last).await, ["[web-0] bye", "[web-1] starting"]);
    // Nothing else pretends the lease runs.
    let gone = w.host.refuse_closed(&id).unwrap_err();
    let said = gone.to_string();
    assert!(matches!(gone, GatewayError::Gone(_)), "{gone:?}");
    assert!(
        said.contains("lease 1/1/1 closed at")
            && said.contains("(closed on chain: owner)")
            && said.contains("kept, until"),
        "{said}"
    );
    // Another tenant learns no more than for a running lease.
    let refused = w.host.find_lease(&stranger, 1, 1, 1);
    assert!(
        matches!(refused, Err(GatewayError::Forbidden(_))),
        "{refused:?}"
    );
    let none = w.host.find_lease(&owner, 1, 1, 2);
    assert!(matches!(none, Err(GatewayError::NotFound(_))), "{none:?}");
    // The chain's close event after the provider's own close keeps the lines it has.
    w.leases
        .close(lease(1), "closed on chain: manifest_timeout")
        .await;
    assert_eq!(w.logs(&id, LogOptions::default()).await.len(), 3);
    // A running lease is not refused.
    w.running(lease(2)).await;
    w.host.refuse_closed(&lease(2)).unwrap();
}

#[tokio::test]
async fn a_closed_leases_logs_are_gone_after_the_retention() {
    let w = world_configured(Duration::ZERO, |c| {
        c.closed_logs_retention = Duration::from_millis(300)
    });
    w.running(lease(1)).await;
    w.fake.write_log(&lease(1), "web", 0, "last words");
    w.leases.close(lease(1), "closed on chain: owner").await;
    let owner = lease(1).owner;
    let id = w.host.find_lease(&owner, 1, 1, 1).unwrap();
    assert_eq!(
        w.logs(&id, LogOptions::default()).await,
        ["[web-0] last words"]
    );
    assert_eq!(w.host.prune_closed_logs(), 0, "still within the retention");
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Unknown at once, to the owner and to anyone else, before any prune ran.
    let after = w.host.find_lease(&owner, 1, 1, 1);
    assert!(matches!(after, Err(GatewayError::NotFound(_))), "{after:?}");
    let stranger = w.host.find_lease(&Address([8; 20]), 1, 1, 1);
    assert!(
        matches!(stranger, Err(GatewayError::NotFound(_))),
        "{stranger:?}"
    );
    w.host.refuse_closed(&id).unwrap();
    // And the prune removes the lines.
    assert_eq!(w.host.prune_closed_logs(), 1);
    assert!(w.host.state.closed_leases().unwrap().is_empty());
    let key = kumo_provider::state::lease_key(&lease(1));
    assert!(w.host.state.closed_logs(&key).unwrap().is_empty());
}

#[tokio::test]
async fn a_closed_leases_kept_logs_stay_under_the_size_cap_newest_first() {
    let w = world(Duration::ZERO);
    w.running(lease(1)).await;
    // 2 replicas x 1000 lines of 1 KiB: about twice the cap.
    let filler = "x".repeat(1000);
    for n in 0..1000 {
        for replica in 0..2 {
            w.fake
                .write_log(&lease(1), "web", replica, &format!("{n:04} {filler}"));
        }
    }
    w.leases.close(lease(1), "closed on chain: owner").await;
    let kept = &w.host.state.closed_leases().unwrap()[0];
    assert!(
        kept.bytes <= kumo_provider::closed_logs::MAX_BYTES as u64,
        "{} bytes",
        kept.bytes
    );
    assert!(kept.dropped_lines > 900, "{kept:?}");
    assert_eq!(kept.lines + kept.dropped_lines, 2000);
    let lines = w.logs(&lease(1), LogOptions::default()).await;
    for replica in 0..2 {
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("[web-{replica}]")))
            .collect();
        assert!(
            mine.len() > 400,
            "each replica keeps its share: {}",
            mine.len()
        );
        assert!(
            mine.last().unwrap().contains("] 0999 "),
            "the newest line is kept"
        );
    }
}

#[tokio::test]
async fn no_logs_are_kept_when_closed_logs_lines_is_0() {
    let w = world_configured(Duration::ZERO, |c| c.closed_logs_lines = 0);
    w.running(lease(1)).await;
    w.fake.write_log(&lease(1), "web", 0, "last words");
    w.leases.close(lease(1), "closed on chain: owner").await;
    let found = w.host.find_lease(&lease(1).owner, 1, 1, 1);
    assert!(matches!(found, Err(GatewayError::NotFound(_))), "{found:?}");
    assert!(w.host.state.closed_leases().unwrap().is_empty());
}
