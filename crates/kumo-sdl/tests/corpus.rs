//! Realistic SDL files, and realistic mistakes.
//!
//! `tests/corpus/` holds deployment files in the styles people actually write: awesome-akash
//! templates and Console/Cloudmos-generated `deploy.yml` files (GPU inference servers,
//! notebooks, databases with persistent volumes, multi-service apps, anchors and merge keys,
//! `depends_on`, IBC prices, leased IPs). Each file has a test asserting what a user would
//! check after deploying it: groups, images, counts, ports, resources, prices and warnings.
//!
//! The `malformed` module is a table of small files with exactly one mistake each, and the
//! field path and line the error must name. Convention for lines: an error about a scalar
//! points at the scalar's line; an error about a whole block mapping may point at its first
//! entry (that is where YAML places a block mapping), but never at some other field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kumo_sdl::manifest::{ManifestService, Proto};
use kumo_sdl::{Sdl, SdlVersion};
use kumo_types::{EndpointKind, GroupSpec, ResourceUnit, Resources};

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;

/// Every file of the corpus; [`every_corpus_file_has_a_test`] keeps this list honest.
const CORPUS: &[&str] = &[
    "audited-multi-region.yaml",
    "ip-endpoint.yaml",
    "jupyter-pytorch.yaml",
    "minecraft.yaml",
    "nginx-static.yaml",
    "postgres.yaml",
    "private-registry.yaml",
    "redis-cache.yaml",
    "ssh-ubuntu.yaml",
    "tgi-inference.yml",
    "v21-shared-profile.yaml",
    "vllm-inference.yaml",
    "vm-ssh.yaml",
    "wordpress-mysql.yml",
];

const USDC: &str = "ibc/170C677610AC31DF0904FFE09CD3B5C657492170E7E52372E48756B71E56F2F1";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn read(name: &str) -> String {
    let path = corpus_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> Sdl {
    kumo_sdl::parse(&read(name)).unwrap_or_else(|e| panic!("{name} was rejected: {e}"))
}

fn group<'a>(sdl: &'a Sdl, name: &str) -> &'a GroupSpec {
    sdl.groups()
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no group {name:?}"))
}

fn group_names(sdl: &Sdl) -> Vec<&str> {
    sdl.groups().iter().map(|g| g.name.as_str()).collect()
}

/// The only resource unit of the only group.
fn only_unit(sdl: &Sdl) -> &ResourceUnit {
    assert_eq!(sdl.groups().len(), 1, "expected one group");
    let units = &sdl.groups()[0].resources;
    assert_eq!(units.len(), 1, "expected one resource unit");
    &units[0]
}

fn service<'a>(sdl: &'a Sdl, group: &str, name: &str) -> &'a ManifestService {
    sdl.manifest()
        .services()
        .find(|(g, s)| *g == group && s.name == name)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no service {name:?} in group {group:?}"))
}

fn service_names(sdl: &Sdl) -> Vec<(&str, &str)> {
    sdl.manifest()
        .services()
        .map(|(g, s)| (g, s.name.as_str()))
        .collect()
}

/// (port, external port, protocol, global, service it is exposed to) of each manifest expose.
fn ports(svc: &ManifestService) -> Vec<(u32, u32, Proto, bool, &str)> {
    svc.expose
        .iter()
        .map(|e| {
            (
                e.port,
                e.external_port,
                e.proto,
                e.global,
                e.service.as_str(),
            )
        })
        .collect()
}

/// (name, bytes, class, persistent) of each volume, in the order Akash puts them.
fn volumes(res: &Resources) -> Vec<(&str, u64, Option<&str>, bool)> {
    res.storage
        .iter()
        .map(|v| (v.name.as_str(), v.bytes, v.class(), v.is_persistent()))
        .collect()
}

/// (volume, mount path, read-only) of each mount of a service.
fn mounts(svc: &ManifestService) -> Vec<(&str, &str, bool)> {
    svc.params
        .as_ref()
        .and_then(|p| p.storage.as_ref())
        .map(|s| {
            s.iter()
                .map(|m| (m.name.as_str(), m.mount.as_str(), m.read_only))
                .collect()
        })
        .unwrap_or_default()
}

fn gpu_keys(res: &Resources) -> Vec<&str> {
    for a in &res.gpu.attributes {
        assert_eq!(a.value, "true", "GPU attribute {} is not `true`", a.key);
    }
    res.gpu.attributes.iter().map(|a| a.key.as_str()).collect()
}

fn endpoint_kinds(res: &Resources) -> Vec<EndpointKind> {
    res.endpoints.iter().map(|e| e.kind).collect()
}

/// (denom, amount) of a unit's price, the amount as its shortest decimal text.
fn price(unit: &ResourceUnit) -> (&str, String) {
    (unit.price.denom.as_str(), unit.price.amount.to_string())
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

fn attributes(group: &GroupSpec) -> Vec<(&str, &str)> {
    group
        .requirements
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.value.as_str()))
        .collect()
}

fn hex(hash: [u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The corpus, file by file.

#[test]
fn every_corpus_file_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, CORPUS, "tests/corpus/ and CORPUS disagree");
    assert!(CORPUS.len() >= 12);
}

#[test]
fn vllm_inference_gpu_server() {
    let sdl = load("vllm-inference.yaml");
    assert_eq!(sdl.version(), SdlVersion::V2_0);
    assert_eq!(group_names(&sdl), ["dcloud"]);
    assert!(sdl.warnings().is_empty());

    let unit = only_unit(&sdl);
    assert_eq!(unit.count, 1);
    assert_eq!(price(unit), ("uakt", "100000".to_string()));
    let res = &unit.resources;
    assert_eq!(res.cpu.millis, 8000);
    assert_eq!(res.memory.bytes, 32 * GI);
    assert_eq!(res.gpu.units, 1);
    assert_eq!(
        gpu_keys(res),
        [
            "vendor/nvidia/model/a100/ram/80Gi/interface/pcie",
            "vendor/nvidia/model/h100/ram/80Gi/interface/sxm",
        ]
    );
    // Akash orders volumes by size: the 10Gi shm volume comes before the 20Gi root volume.
    assert_eq!(
        volumes(res),
        [
            ("shm", 10 * GI, Some("ram"), false),
            ("default", 20 * GI, None, false),
            ("data", 100 * GI, Some("beta3"), true),
        ]
    );
    assert_eq!(endpoint_kinds(res), [EndpointKind::RandomPort]);

    let svc = service(&sdl, "dcloud", "vllm");
    assert_eq!(svc.image, "vllm/vllm-openai:v0.6.3");
    assert_eq!(svc.count, 1);
    assert_eq!(svc.command, strings(&["bash", "-c"]));
    // A folded (`>-`) block becomes one line.
    assert_eq!(
        svc.args,
        strings(&[
            "python3 -m vllm.entrypoints.openai.api_server --model meta-llama/Meta-Llama-3.1-8B-Instruct --max-model-len 8192 --gpu-memory-utilization 0.95"
        ])
    );
    assert_eq!(svc.env.as_ref().map(Vec::len), Some(3));
    assert_eq!(ports(svc), [(8000, 8000, Proto::Tcp, true, "")]);
    assert_eq!(
        mounts(svc),
        [("data", "/root/.cache", false), ("shm", "/dev/shm", false)]
    );
}

#[test]
fn tgi_inference_priced_in_usdc() {
    let sdl = load("tgi-inference.yml");
    assert_eq!(sdl.version(), SdlVersion::V2_1);
    assert_eq!(group_names(&sdl), ["akash"]);
    assert_eq!(attributes(group(&sdl, "akash")), [("host", "akash")]);
    assert_eq!(sdl.denoms(), [USDC]);

    let unit = only_unit(&sdl);
    assert_eq!(price(unit), (USDC, "0.25".to_string()));
    let res = &unit.resources;
    assert_eq!(res.cpu.millis, 6000);
    assert_eq!(res.memory.bytes, 24 * GI);
    assert_eq!(volumes(res), [("default", 60 * GI, None, false)]);
    // `units: "1"` as a string is one GPU; models without `ram` have plain keys.
    assert_eq!(res.gpu.units, 1);
    assert_eq!(
        gpu_keys(res),
        [
            "vendor/nvidia/model/a6000",
            "vendor/nvidia/model/l40s/ram/48Gi",
            "vendor/nvidia/model/rtx4090",
        ]
    );
    // Container port 8080 served as 80: the provider's shared HTTP ingress.
    assert_eq!(endpoint_kinds(res), [EndpointKind::SharedHttp]);

    let svc = service(&sdl, "akash", "tgi");
    assert_eq!(
        svc.image,
        "ghcr.io/huggingface/text-generation-inference:2.4.0"
    );
    assert_eq!(svc.command, None);
    assert_eq!(
        svc.args,
        strings(&[
            "--model-id",
            "mistralai/Mistral-7B-Instruct-v0.3",
            "--port",
            "8080"
        ])
    );
    assert_eq!(
        svc.env,
        strings(&["HUGGING_FACE_HUB_TOKEN=", "MAX_TOTAL_TOKENS=8192"])
    );
    assert_eq!(ports(svc), [(8080, 80, Proto::Tcp, true, "")]);
    let http = &svc.expose[0].http_options;
    assert_eq!(http.max_body_size, 10_485_760);
    assert_eq!((http.read_timeout, http.send_timeout), (60_000, 60_000));
}

#[test]
fn jupyter_notebook_any_nvidia_gpu() {
    let sdl = load("jupyter-pytorch.yaml");
    assert_eq!(sdl.version(), SdlVersion::V2_0);
    let unit = only_unit(&sdl);
    assert_eq!(price(unit), ("uact", "1000".to_string()));
    let res = &unit.resources;
    assert_eq!(res.cpu.millis, 4000);
    assert_eq!(res.memory.bytes, 16 * GI);
    // `nvidia:` with no model list means any NVIDIA GPU.
    assert_eq!(res.gpu.units, 1);
    assert_eq!(gpu_keys(res), ["vendor/nvidia/model/*"]);
    assert_eq!(
        volumes(res),
        [
            ("default", 10 * GI, None, false),
            ("work", 50 * GI, Some("beta2"), true),
        ]
    );

    let svc = service(&sdl, "akash", "jupyter");
    assert_eq!(
        svc.image,
        "quay.io/jupyter/pytorch-notebook:cuda12-2024-10-14"
    );
    // `yes` in an env list stays the text "yes".
    assert_eq!(
        svc.env,
        strings(&[
            "JUPYTER_TOKEN=change-me-please",
            "JUPYTER_ENABLE_LAB=yes",
            "GRANT_SUDO=yes"
        ])
    );
    assert_eq!(ports(svc), [(8888, 80, Proto::Tcp, true, "")]);
    assert_eq!(mounts(svc), [("work", "/home/jovyan/work", false)]);
}

#[test]
fn postgres_with_persistent_beta3_volume() {
    let sdl = load("postgres.yaml");
    assert_eq!(group_names(&sdl), ["dcloud"]);
    let g = group(&sdl, "dcloud");
    assert_eq!(attributes(g), [("host", "akash")]);
    assert_eq!(
        g.requirements.signed_by.any_of,
        ["akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63"]
    );
    assert!(g.requirements.signed_by.all_of.is_empty());

    let unit = only_unit(&sdl);
    assert_eq!(price(unit), ("uakt", "1000".to_string()));
    assert_eq!(unit.resources.cpu.millis, 2000);
    assert_eq!(unit.resources.memory.bytes, 4 * GI);
    assert_eq!(unit.resources.gpu.units, 0);
    assert!(unit.resources.gpu.attributes.is_empty());
    assert_eq!(
        volumes(&unit.resources),
        [
            ("default", GI, None, false),
            ("pgdata", 20 * GI, Some("beta3"), true),
        ]
    );
    // A global port other than 80 gets a random external port from the provider.
    assert_eq!(endpoint_kinds(&unit.resources), [EndpointKind::RandomPort]);

    let svc = service(&sdl, "dcloud", "postgres");
    assert_eq!(svc.image, "postgres:16.4");
    assert_eq!(ports(svc), [(5432, 0, Proto::Tcp, true, "")]);
    assert_eq!(mounts(svc), [("pgdata", "/var/lib/postgresql/data", false)]);
    assert!(
        svc.env
            .iter()
            .flatten()
            .any(|e| e == "PGDATA=/var/lib/postgresql/data/pgdata")
    );
}

#[test]
fn redis_cache_on_a_ram_volume() {
    let sdl = load("redis-cache.yaml");
    assert_eq!(sdl.version(), SdlVersion::V2_1);
    let unit = only_unit(&sdl);
    // `units: 500m` is half a core; `amount: 0.5` a fractional price.
    assert_eq!(unit.resources.cpu.millis, 500);
    assert_eq!(unit.resources.memory.bytes, GI);
    assert_eq!(price(unit), ("uakt", "0.5".to_string()));
    assert_eq!(
        volumes(&unit.resources),
        [
            ("default", 512 * MI, None, false),
            ("cache", GI, Some("ram"), false),
        ]
    );

    let svc = service(&sdl, "akash", "redis");
    assert_eq!(svc.image, "redis:7.4-alpine");
    assert_eq!(svc.command, strings(&["redis-server"]));
    // The empty argument after --save must survive.
    assert_eq!(
        svc.args,
        strings(&["--save", "", "--appendonly", "no", "--maxmemory", "900mb"])
    );
    assert_eq!(svc.env, None);
    assert_eq!(ports(svc), [(6379, 6379, Proto::Tcp, true, "")]);
    assert_eq!(mounts(svc), [("cache", "/data", false)]);
}

#[test]
fn ssh_box_on_port_22() {
    let sdl = load("ssh-ubuntu.yaml");
    let unit = only_unit(&sdl);
    assert_eq!(unit.resources.cpu.millis, 1000);
    assert_eq!(unit.resources.memory.bytes, 2 * GI);
    assert_eq!(
        volumes(&unit.resources),
        [("default", 20 * GI, None, false)]
    );
    assert_eq!(price(unit), ("uakt", "10000".to_string()));
    assert_eq!(endpoint_kinds(&unit.resources), [EndpointKind::RandomPort]);

    let svc = service(&sdl, "akash", "ssh");
    assert_eq!(svc.image, "ubuntu:24.04");
    assert_eq!(ports(svc), [(22, 22, Proto::Tcp, true, "")]);
    assert_eq!(svc.command, strings(&["sh", "-c"]));
    // A literal (`|`) block keeps its lines.
    let script = &svc.args.as_ref().unwrap()[0];
    assert_eq!(script.lines().count(), 4);
    assert!(script.ends_with("exec /usr/sbin/sshd -D -e\n"));
    // The key, spaces and all, is one env entry.
    assert_eq!(
        svc.env,
        strings(&[
            "SSH_PUBKEY=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq3nVJ1xqRkvN8nM4H0kF9Pz6c7bZp2kQeM0vU7g2Rk user@laptop"
        ])
    );
}

#[test]
fn wordpress_with_private_mysql() {
    let sdl = load("wordpress-mysql.yml");
    assert_eq!(group_names(&sdl), ["akash"]);
    assert_eq!(
        service_names(&sdl),
        [("akash", "db"), ("akash", "wordpress")]
    );
    // docker-compose's depends_on is accepted, ignored, and reported.
    assert_eq!(sdl.warnings().len(), 1);
    let w = &sdl.warnings()[0];
    assert_eq!(w.path, "services.wordpress.depends_on");
    assert_eq!(w.line, Some(6));
    assert!(w.message.contains("Akash ignores it too"), "{w}");

    let g = group(&sdl, "akash");
    assert_eq!(
        g.requirements.signed_by.any_of,
        [
            "akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63",
            "akash18qa2a2ltfyvkyj0ggj3hkvuj6twzyumuaru9s4",
        ]
    );
    // One unit per service in 2.0, in service-name order.
    assert_eq!(g.resources.len(), 2);
    let (db_unit, wp_unit) = (&g.resources[0], &g.resources[1]);
    assert_eq!(
        (db_unit.resources.id, db_unit.resources.cpu.millis),
        (1, 1000)
    );
    assert_eq!(
        (wp_unit.resources.id, wp_unit.resources.cpu.millis),
        (2, 4000)
    );
    assert_eq!(db_unit.resources.memory.bytes, GI);
    assert_eq!(wp_unit.resources.memory.bytes, 4 * GI);
    assert_eq!(
        volumes(&db_unit.resources),
        [
            ("default", GI, None, false),
            ("wordpress-db", 8 * GI, Some("beta3"), true),
        ]
    );
    assert_eq!(
        volumes(&wp_unit.resources),
        [
            ("default", 4 * GI, None, false),
            ("wordpress-data", 32 * GI, Some("beta3"), true),
        ]
    );
    // MySQL is private: no endpoint at all.
    assert!(db_unit.resources.endpoints.is_empty());
    assert_eq!(
        endpoint_kinds(&wp_unit.resources),
        [EndpointKind::SharedHttp]
    );
    assert_eq!(price(db_unit), ("uakt", "10000".to_string()));
    assert_eq!(g.price().unwrap().amount.to_string(), "20000");

    let db = service(&sdl, "akash", "db");
    assert_eq!(db.image, "mysql:8.4");
    assert_eq!(
        ports(db),
        [
            (3306, 0, Proto::Tcp, false, "wordpress"),
            (33060, 0, Proto::Tcp, false, "wordpress"),
        ]
    );
    assert_eq!(mounts(db), [("wordpress-db", "/var/lib/mysql", false)]);
    let wp = service(&sdl, "akash", "wordpress");
    assert_eq!(wp.image, "wordpress:6.6-php8.3-apache");
    assert_eq!(ports(wp), [(80, 0, Proto::Tcp, true, "")]);
    assert_eq!(wp.expose[0].http_options.max_body_size, 104_857_600);
    assert_eq!(mounts(wp), [("wordpress-data", "/var/www/html", false)]);
    assert!(wp.env.iter().flatten().any(|e| e == "WORDPRESS_DB_HOST=db"));
}

#[test]
fn minecraft_on_tcp_and_udp() {
    let sdl = load("minecraft.yaml");
    let unit = only_unit(&sdl);
    assert_eq!(unit.resources.cpu.millis, 4000);
    assert_eq!(unit.resources.memory.bytes, 8 * GI);
    assert_eq!(
        volumes(&unit.resources),
        [
            ("default", 5 * GI, None, false),
            ("world", 25 * GI, Some("beta2"), true),
        ]
    );
    assert_eq!(
        endpoint_kinds(&unit.resources),
        [EndpointKind::RandomPort, EndpointKind::RandomPort]
    );
    assert_eq!(price(unit), ("uakt", "5000".to_string()));

    let svc = service(&sdl, "akash", "minecraft");
    assert_eq!(svc.image, "itzg/minecraft-server:java21");
    // `proto: UDP` and `proto: tcp` both work; Akash orders ports by number.
    assert_eq!(
        ports(svc),
        [
            (19132, 19132, Proto::Udp, true, ""),
            (25565, 25565, Proto::Tcp, true, ""),
        ]
    );
    // The trailing comment is not part of the value.
    assert_eq!(svc.env.as_ref().unwrap()[0], "EULA=TRUE");
    assert_eq!(mounts(svc), [("world", "/data", false)]);
}

#[test]
fn static_site_with_hosts_and_http_options() {
    let sdl = load("nginx-static.yaml");
    let unit = only_unit(&sdl);
    assert_eq!(unit.count, 2);
    assert_eq!(unit.resources.cpu.millis, 500);
    assert_eq!(unit.resources.memory.bytes, 256 * MI);
    assert_eq!(
        volumes(&unit.resources),
        [("default", 512 * MI, None, false)]
    );
    assert_eq!(endpoint_kinds(&unit.resources), [EndpointKind::SharedHttp]);
    // Price is per instance; the group pays for both.
    assert_eq!(price(unit), ("uakt", "1000".to_string()));
    assert_eq!(sdl.groups()[0].price().unwrap().amount.to_string(), "2000");

    let svc = service(&sdl, "akash", "web");
    assert_eq!(svc.image, "nginx:1.27-alpine");
    assert_eq!(svc.count, 2);
    assert_eq!(ports(svc), [(80, 80, Proto::Tcp, true, "")]);
    let e = &svc.expose[0];
    assert_eq!(e.hosts, strings(&["example.com", "www.example.com"]));
    let h = &e.http_options;
    assert_eq!(h.max_body_size, 2_097_152);
    assert_eq!((h.read_timeout, h.send_timeout), (30_000, 30_000));
    assert_eq!((h.next_tries, h.next_timeout), (5, 10_000));
    assert_eq!(h.next_cases, ["error", "timeout", "502", "503"]);
    assert_eq!(h.proxy_buffer_size, 0);
}

#[test]
fn v21_services_sharing_a_profile_share_a_unit() {
    let sdl = load("v21-shared-profile.yaml");
    assert_eq!(sdl.version(), SdlVersion::V2_1);
    assert_eq!(group_names(&sdl), ["dcloud"]);
    assert_eq!(
        service_names(&sdl),
        [
            ("dcloud", "api"),
            ("dcloud", "search"),
            ("dcloud", "worker")
        ]
    );
    assert_eq!(sdl.warnings().len(), 1);
    let w = &sdl.warnings()[0];
    assert_eq!(w.path, "services.worker.depends_on");
    assert_eq!(w.line, Some(22));
    assert!(w.message.contains("Akash ignores it too"), "{w}");

    let g = group(&sdl, "dcloud");
    assert_eq!(attributes(g), [("region", "us-west")]);
    assert_eq!(g.resources.len(), 2);
    // api (count 2) and worker (count 1, merged from the `&deploy` anchor) share `small`.
    let small = &g.resources[0];
    assert_eq!(small.resources.id, 1);
    assert_eq!(small.count, 3);
    assert_eq!(small.resources.cpu.millis, 1000);
    assert_eq!(small.resources.memory.bytes, GI);
    assert_eq!(price(small), ("uakt", "1500".to_string()));
    assert_eq!(endpoint_kinds(&small.resources), [EndpointKind::SharedHttp]);
    // `large` merges `<<: *resources` and overrides cpu and memory; storage comes from the anchor.
    let large = &g.resources[1];
    assert_eq!(large.resources.id, 2);
    assert_eq!(large.count, 1);
    assert_eq!(large.resources.cpu.millis, 4000);
    assert_eq!(large.resources.memory.bytes, 8 * GI);
    assert_eq!(
        volumes(&large.resources),
        [("default", 2 * GI, None, false)]
    );
    assert!(large.resources.endpoints.is_empty());
    assert_eq!(price(large), ("uakt", "1500".to_string()));
    assert_eq!(g.price().unwrap().amount.to_string(), "6000");

    let api = service(&sdl, "dcloud", "api");
    let worker = service(&sdl, "dcloud", "worker");
    let search = service(&sdl, "dcloud", "search");
    assert_eq!((api.count, worker.count, search.count), (2, 1, 1));
    assert_eq!(api.resources.id, 1);
    assert_eq!(worker.resources.id, 1);
    assert_eq!(search.resources.id, 2);
    assert_eq!(api.image, worker.image);
    // `env: *shared-env` is the same list.
    assert_eq!(api.env, worker.env);
    assert_eq!(api.env.as_ref().map(Vec::len), Some(3));
    assert_eq!(worker.command, strings(&["/usr/local/bin/shop-worker"]));
    assert_eq!(worker.args, strings(&["--concurrency", "4"]));
    assert!(worker.expose.is_empty());
    assert_eq!(ports(api), [(3000, 80, Proto::Tcp, true, "")]);
    assert_eq!(ports(search), [(7700, 0, Proto::Tcp, false, "api")]);
}

#[test]
fn private_registry_credentials() {
    let sdl = load("private-registry.yaml");
    assert_eq!(sdl.version(), SdlVersion::V2_1);
    let unit = only_unit(&sdl);
    // `units: "0.5"` as a string.
    assert_eq!(unit.resources.cpu.millis, 500);
    assert_eq!(unit.resources.memory.bytes, 768 * MI);
    assert_eq!(price(unit), ("uact", "2500".to_string()));

    let svc = service(&sdl, "akash", "app");
    assert_eq!(svc.image, "ghcr.io/acme/private-dashboard:2024.10.1");
    let c = svc.credentials.as_ref().expect("credentials");
    assert_eq!(c.host, "ghcr.io");
    assert_eq!(c.email, "ops@acme.example");
    assert_eq!(c.username, "acme-bot");
    assert_eq!(c.password, "ghp_0123456789abcdefghijklmnopqrstuvwxyz");
    assert_eq!(ports(svc), [(8080, 80, Proto::Tcp, true, "")]);
    assert_eq!(svc.expose[0].hosts, strings(&["dashboard.acme.example"]));
}

#[test]
fn audited_placements_in_two_regions() {
    let sdl = load("audited-multi-region.yaml");
    // Groups come in name order; each placement is its own group.
    assert_eq!(group_names(&sdl), ["eu-central", "us-west"]);

    let eu = group(&sdl, "eu-central");
    assert_eq!(
        attributes(eu),
        [("organization", "overclock"), ("region", "eu-central")]
    );
    assert_eq!(
        eu.requirements.signed_by.all_of,
        ["akash18qa2a2ltfyvkyj0ggj3hkvuj6twzyumuaru9s4"]
    );
    assert!(eu.requirements.signed_by.any_of.is_empty());
    assert_eq!(eu.resources.len(), 1);
    assert_eq!(eu.resources[0].count, 1);
    assert_eq!(price(&eu.resources[0]), ("uakt", "1200".to_string()));

    let us = group(&sdl, "us-west");
    assert_eq!(
        attributes(us),
        [
            ("capabilities/storage/1/class", "beta2"),
            ("region", "us-west"),
            ("tier", "community"),
        ]
    );
    assert_eq!(
        us.requirements.signed_by.any_of,
        [
            "akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63",
            "akash18qa2a2ltfyvkyj0ggj3hkvuj6twzyumuaru9s4",
        ]
    );
    assert_eq!(
        us.requirements.signed_by.all_of,
        ["akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63"]
    );
    assert_eq!(us.resources[0].count, 2);
    assert_eq!(price(&us.resources[0]), ("uakt", "1000".to_string()));

    for g in [eu, us] {
        let res = &g.resources[0].resources;
        assert_eq!(res.cpu.millis, 250);
        assert_eq!(res.memory.bytes, 512 * MI);
        assert_eq!(volumes(res), [("default", GI, None, false)]);
        assert_eq!(endpoint_kinds(res), [EndpointKind::SharedHttp]);
    }
    assert_eq!(service(&sdl, "eu-central", "web").count, 1);
    assert_eq!(service(&sdl, "us-west", "web").count, 2);
    assert_eq!(
        service(&sdl, "us-west", "web").image,
        "ghcr.io/akash-network/demo-app:latest"
    );
}

#[test]
fn leased_ip_endpoint() {
    let sdl = load("ip-endpoint.yaml");
    let unit = only_unit(&sdl);
    let res = &unit.resources;
    // Port 80 goes through the shared ingress, 443 through a random port, and both through
    // the leased IP.
    assert_eq!(
        endpoint_kinds(res),
        [
            EndpointKind::SharedHttp,
            EndpointKind::LeasedIp,
            EndpointKind::RandomPort,
            EndpointKind::LeasedIp,
        ]
    );
    let svc = service(&sdl, "akash", "proxy");
    assert_eq!(svc.image, "caddy:2.8");
    assert_eq!(
        ports(svc),
        [
            (80, 80, Proto::Tcp, true, ""),
            (443, 443, Proto::Tcp, true, ""),
        ]
    );
    for e in &svc.expose {
        assert_eq!(e.ip, "myip");
        assert_ne!(e.endpoint_sequence_number, 0);
    }
    // The manifest and the group spec agree on the IP endpoint's sequence number.
    let leased: BTreeSet<u32> = res
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::LeasedIp)
        .map(|e| e.sequence_number)
        .collect();
    let in_manifest: BTreeSet<u32> = svc
        .expose
        .iter()
        .map(|e| e.endpoint_sequence_number)
        .collect();
    assert_eq!(leased, in_manifest);
    assert_eq!(leased.len(), 1, "one IP endpoint, one sequence number");
}

#[test]
fn vm_next_to_a_container() {
    let sdl = load("vm-ssh.yaml");
    assert!(sdl.warnings().is_empty(), "{:?}", sdl.warnings());
    let trainer = service(&sdl, "dc", "trainer");
    let vm = trainer.vm.as_ref().expect("trainer runs as a VM");
    assert_eq!(vm.user, "kumo", "the default login user");
    assert_eq!(vm.ssh_keys.len(), 2);
    assert!(vm.ssh_keys[1].starts_with("ecdsa-sha2-nistp256 "));
    // The hash is normalised to lowercase so that the provider compares like with like.
    assert_eq!(
        vm.image.sha256,
        "5c1c5b2b1f0e2e6e8f6b9a0d3c4b2a19181716151413121110ffeeddccbbaa99"
    );
    assert_eq!(
        trainer.image, vm.image.url,
        "the disk image's URL stands in as the image"
    );
    assert_eq!(trainer.resources.cpu.millis, 4000);
    assert_eq!(trainer.resources.memory.bytes, 16 * GI);
    assert_eq!(trainer.resources.storage[0].bytes, 100 * GI);
    let ports: Vec<_> = trainer
        .expose
        .iter()
        .map(|e| (e.port, e.effective_external_port()))
        .collect();
    assert_eq!(ports, [(22, 22), (6006, 80)]);
    let dashboard = service(&sdl, "dc", "dashboard");
    assert!(dashboard.vm.is_none());

    // The VM settings are covered by the manifest hash; the container's JSON has no `vm` key.
    let json = serde_json::to_value(sdl.manifest()).unwrap();
    let services = json["groups"][0]["services"].as_array().unwrap();
    assert!(services.iter().any(|s| s.get("vm").is_some()));
    assert!(services.iter().any(|s| s.get("vm").is_none()));
    let with_key = |key: &str| {
        let text = read("vm-ssh.yaml").replace(
            "        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMCMUAs1v18OYNlX6m9oRk/LcZmFwmSV7lOq4vegNCW9 tenant@laptop",
            &format!("        - {key}"),
        );
        kumo_sdl::parse(&text).unwrap().manifest_hash()
    };
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMCMUAs1v18OYNlX6m9oRk/LcZmFwmSV7lOq4vegNCW9 someone-else";
    assert_eq!(
        with_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMCMUAs1v18OYNlX6m9oRk/LcZmFwmSV7lOq4vegNCW9 tenant@laptop"
        ),
        sdl.manifest_hash()
    );
    assert_ne!(
        with_key(other),
        sdl.manifest_hash(),
        "a changed key changes the hash"
    );
}

#[test]
fn manifest_hashes_are_stable_and_distinct() {
    let mut seen = BTreeSet::new();
    for name in CORPUS {
        let text = read(name);
        let a = kumo_sdl::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let b = kumo_sdl::parse(&text).unwrap();
        assert_eq!(a.manifest_hash(), b.manifest_hash(), "{name}");
        assert_eq!(a.manifest_hash(), a.manifest().hash(), "{name}");
        assert_eq!(a.groups(), b.groups(), "{name}");
        // Comments and a trailing newline are not part of the deployment.
        let commented = format!("# deployed by ci\n{text}\n# end\n");
        let c = kumo_sdl::parse(&commented).unwrap();
        assert_eq!(a.manifest_hash(), c.manifest_hash(), "{name}");
        assert!(
            seen.insert(hex(a.manifest_hash())),
            "{name} has the same manifest hash as another file"
        );
    }
    assert_eq!(seen.len(), CORPUS.len());
}

// ---------------------------------------------------------------------------------------------
// Malformed files: one mistake each, and where the error must point.

mod malformed {
    /// Parses `yaml`, which must be rejected at `path` and `line`; `at` is text on that line
    /// (a guard against miscounted lines in this table).
    fn expect_error(yaml: &str, path: &str, line: Option<usize>, at: &str) {
        if let Some(n) = line {
            let text = yaml.lines().nth(n - 1).unwrap_or("");
            assert!(
                text.contains(at),
                "table error: line {n} is {text:?}, not {at:?}"
            );
        }
        let err = match kumo_sdl::parse(yaml) {
            Ok(_) => panic!("accepted, but should fail at {path} (line {line:?})"),
            Err(e) => e,
        };
        assert!(!err.message.is_empty(), "empty message: {err:?}");
        assert_eq!(
            (err.path.as_str(), err.line),
            (path, line),
            "error was: {err}"
        );
    }

    macro_rules! malformed {
        ($(
            $(#[$attr:meta])*
            $name:ident: $path:literal, $line:expr, $at:literal, $yaml:literal;
        )*) => {
            /// Every snippet of the table, by test name.
            const ALL: &[(&str, &str)] = &[$((stringify!($name), $yaml)),*];
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    expect_error($yaml, $path, $line, $at);
                }
            )*
        };
    }

    #[test]
    fn no_snippet_panics_and_every_one_is_rejected() {
        assert!(ALL.len() >= 15);
        for (name, yaml) in ALL {
            let result = std::panic::catch_unwind(|| kumo_sdl::parse(yaml));
            let result = result.unwrap_or_else(|_| panic!("{name}: the parser panicked"));
            let err = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(!err.to_string().is_empty(), "{name}");
        }
    }

    malformed! {
        port_out_of_range_in_second_expose: "services.web.expose[1].port", Some(9), "port: 70000",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
      - port: 70000
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        ram_volume_marked_persistent:
            "profiles.compute.web.resources.storage[1].attributes", Some(27), "persistent: true",
r#"version: "2.0"
services:
  web:
    image: redis:7
    expose:
      - port: 6379
        to:
          - global: true
    params:
      storage:
        cache:
          mount: /data
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          - size: 1Gi
          - name: cache
            size: 1Gi
            attributes:
              # a RAM volume cannot outlive its container
              persistent: true
              class: ram
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        mount_path_not_absolute: "services.db.params.storage.data.mount", Some(12), "mount: var/lib",
r#"version: "2.0"
services:
  db:
    image: postgres:16
    expose:
      - port: 5432
        to:
          - global: true
    params:
      storage:
        data:
          mount: var/lib/postgresql/data
profiles:
  compute:
    db:
      resources:
        cpu:
          units: 1
        memory:
          size: 1Gi
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes:
              persistent: true
              class: beta3
  placement:
    dcloud:
      pricing:
        db:
          denom: uakt
          amount: 1000
deployment:
  db:
    dcloud:
      profile: db
      count: 1
"#;

        deployment_names_missing_compute_profile:
            "deployment.web.dcloud.profile", Some(28), "profile: wbe",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: wbe
      count: 1
"#;
        missing_price_for_a_profile: "profiles.placement.dcloud.pricing", Some(37), "pricing:",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
  api:
    image: ghcr.io/acme/api:1.0
    expose:
      - port: 8080
        to:
          - service: web
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
    api:
      resources:
        cpu:
          units: 1
        memory:
          size: 1Gi
        storage:
          size: 1Gi
  placement:
    dcloud:
      attributes:
        host: akash
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
  api:
    dcloud:
      profile: api
      count: 1
"#;

        zero_price: "profiles.placement.dcloud.pricing.web.amount", Some(24), "amount: 0",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 0
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        unknown_denom: "profiles.placement.dcloud.pricing.web.denom", Some(23), "denom: akt",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: akt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        gpu_units_without_attributes: "profiles.compute.web.resources.gpu", Some(20), "units: 1",
r#"version: "2.0"
services:
  web:
    image: vllm/vllm-openai:v0.6.3
    expose:
      - port: 8000
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 4
        memory:
          size: 16Gi
        storage:
          size: 50Gi
        gpu:
          units: 1
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        gpu_interface_nvlink:
            "profiles.compute.web.resources.gpu.attributes.vendor.nvidia[0].interface", Some(26),
            "interface: nvlink",
r#"version: "2.0"
services:
  web:
    image: vllm/vllm-openai:v0.6.3
    expose:
      - port: 8000
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 4
        memory:
          size: 16Gi
        storage:
          size: 50Gi
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
                  ram: 80Gi
                  interface: nvlink
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        negative_cpu: "profiles.compute.web.resources.cpu.units", Some(14), "units: -1",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: -1
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        memory_with_bad_suffix: "profiles.compute.web.resources.memory.size", Some(16), "size: 12Gb",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 12Gb
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        count_zero: "deployment.web.dcloud.count", Some(29), "count: 0",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 0
"#;
        accept_host_with_uppercase: "services.web.expose[0].accept[1]", Some(9), "WWW.Example.com",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        accept:
          - example.com
          - WWW.Example.com
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;
        duplicate_yaml_key: "services.web.image", Some(5), "image: nginx:1.27",
r#"version: "2.0"
services:
  web:
    image: nginx:1.25
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;
        invalid_env_var_name: "services.web.env[1]", Some(7), "1API_KEY",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    env:
      - PORT=8080
      - 1API_KEY=abc123
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        yaml_syntax_error: "", Some(4), "image: nginx: latest",
r#"version: "2.0"
services:
  web:
    image: nginx: latest
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        document_is_a_list: "", Some(1), "- version",
r#"- version: "2.0"
- services:
    web:
      image: nginx:1.27
"#;
        unknown_storage_class: "profiles.compute.web.resources.storage[1].attributes.class", Some(27), "class: beta4",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
    params:
      storage:
        data:
          mount: /data
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes:
              persistent: true
              class: beta4
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;
        cpu_below_minimum: "profiles.compute.web.resources.cpu.units", Some(14), "units: 5m",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 5m
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;
        memory_below_minimum: "profiles.compute.web.resources.memory.size", Some(16), "size: 512Ki",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Ki
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;
        storage_below_minimum: "profiles.compute.web.resources.storage.size", Some(18), "size: 1Mi",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Mi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;
        price_above_maximum: "profiles.placement.dcloud.pricing.web.amount", Some(24), "amount: 100000000",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 100000000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;
        too_many_gpus: "profiles.compute.web.resources.gpu.units", Some(20), "units: 25",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
        gpu:
          units: 25
          attributes:
            vendor:
              nvidia:
                - model: a100
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        unsupported_protocol: "services.web.expose[0].proto", Some(7), "proto: http",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        proto: http
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        unsupported_version: "version", Some(1), r#"version: "3.0""#,
r#"version: "3.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        empty_image: "services.web.image", Some(4), r#"image: """#,
r#"version: "2.0"
services:
  web:
    image: ""
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
"#;

        deployment_names_missing_placement: "deployment.web.westcoast", Some(28), "profile: web",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    westcoast:
      profile: web
      count: 1
"#;

        ip_endpoint_without_global: "services.web.expose[1].to[0].ip", Some(11), "ip: myip",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
      - port: 443
        to:
          - ip: myip
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
endpoints:
  myip:
    kind: ip
"#;

        declared_endpoint_never_used: "endpoints.myip", Some(32), "kind: ip",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
endpoints:
  myip:
    kind: ip
"#;

        count_as_text: "deployment.web.dcloud.count", Some(29), r#"count: "1""#,
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
  placement:
    dcloud:
      pricing:
        web:
          denom: uakt
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: "1"
"#;
        persistent_volume_not_mounted_in_v2_0: "profiles.compute.db.resources.storage[1]", Some(20), "- name: data",
r#"version: "2.0"
services:
  db:
    image: postgres:16
    expose:
      - port: 5432
        to:
          - global: true
profiles:
  compute:
    db:
      # the data volume below is never mounted: services.db.params is missing
      resources:
        cpu:
          units: 1
        memory:
          size: 1Gi
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes:
              persistent: true
              class: beta3
  placement:
    dcloud:
      pricing:
        db:
          denom: uakt
          amount: 1000
deployment:
  db:
    dcloud:
      profile: db
      count: 1
"#;

        two_denominations_in_one_deployment: "profiles.placement.dcloud.pricing.web.denom", Some(33), "denom: uact",
r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    expose:
      - port: 80
        to:
          - global: true
  api:
    image: ghcr.io/acme/api:1.0
    expose:
      - port: 8080
        to:
          - service: web
profiles:
  compute:
    web: &small
      resources:
        cpu:
          units: 0.5
        memory:
          size: 512Mi
        storage:
          size: 1Gi
    api: *small
  placement:
    dcloud:
      pricing:
        api:
          denom: uakt
          amount: 1000
        web:
          denom: uact
          amount: 1000
deployment:
  web:
    dcloud:
      profile: web
      count: 1
  api:
    dcloud:
      profile: api
      count: 1
"#;

        empty_file: "", Some(1), "", "";

        comments_only: "", Some(1), "#", "# TODO: write the deployment\n";
    }
}
