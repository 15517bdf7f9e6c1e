//! The lease lifecycle ([`kumo_provider::lifecycle`]) on a fake backend: no Docker, no chain,
//! milliseconds per test. What a tenant would notice: a manifest runs and is routed; a closed
//! lease leaves nothing running and no route; a replica removed behind the provider's back
//! comes back; an overdue lease refuses a late manifest; and, the race this design exists
//! for, a close that lands while a refresh is redeploying never leaves an orphan.
//!
//! The real-Docker tests of the same paths are in `crates/kumo-cli/tests/` (devnet) and
//! `crates/kumo-workload/tests/docker/`.

use std::sync::Arc;
use std::time::Duration;

use kumo_gateway::{GatewayError, routes::RouteTable};
use kumo_provider::{
    ProviderConfig, daemon::LeaseHost, inventory::Inventory, lifecycle::Lifecycle,
    metrics::ProviderMetrics, state::State,
};
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::{Address, GroupSpec, LeaseId};
use kumo_workload::{Backend, fake::FakeBackend};
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
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeBackend::new().with_deploy_delay(deploy_delay));
    let config = ProviderConfig {
        data_dir: dir.path().into(),
        ..ProviderConfig::default()
    };
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
