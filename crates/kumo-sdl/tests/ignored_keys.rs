//! Keys Akash's parser ignores: accepted with a warning (field, line, the field meant), never
//! in the manifest (the hash is that of the file without them), refused by `parse_strict`;
//! keys Akash refuses stay refused. Also Akash's v2.0 and v2.1 rules for persistent volumes
//! that a service does not mount.

/// A file that uses most sections, each key on its own line so that a test can add a key
/// beside it.
const BASE: &str = r#"version: "2.0"
services:
  web:
    image: nginx:1.27
    env:
      - MODE=prod
    command: ["nginx"]
    args: ["-g", "daemon off;"]
    expose:
      - port: 80
        as: 80
        http_options:
          max_body_size: 2097152
        to:
          - global: true
            ip: pub
          - service: db
    params:
      storage:
        data:
          mount: /var/www
  db:
    image: registry.example.com/postgres:16
    credentials:
      host: registry.example.com
      username: me
      password: secret123
    expose:
      - port: 5432
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
          - size: 1Gi
          - name: data
            size: 2Gi
            attributes:
              persistent: true
              class: beta2
    db:
      resources:
        cpu:
          units: 1.5
        memory:
          size: 1Gi
        storage:
          size: 5Gi
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: a100
  placement:
    dc:
      attributes:
        region: eu
      signedBy:
        anyOf:
          - akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63
      pricing:
        web:
          denom: uakt
          amount: 1000
        db:
          denom: uakt
          amount: 2000
deployment:
  web:
    dc:
      profile: web
      count: 2
  db:
    dc:
      profile: db
      count: 1
endpoints:
  pub:
    kind: ip
reclamation:
  min_window: 24h
"#;

/// `text` with `lines` put right after (or before) the one line equal to `marker`, and the
/// line number the first of them ends up on.
fn insert(text: &str, marker: &str, lines: &str, before: bool) -> (String, usize) {
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == marker)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "marker {marker:?} must be on exactly one line"
    );
    let at = if before { found[0] } else { found[0] + 1 };
    let mut out: Vec<&str> = text.lines().collect();
    out.splice(at..at, lines.lines());
    (out.join("\n") + "\n", at + 1)
}

/// (after this line, add these lines, warning path, fragment the warning must contain)
const IGNORED: &[(&str, &str, &str, &str)] = &[
    (
        "    image: nginx:1.27",
        "    environment:\n      - DEBUG=1",
        "services.web.environment",
        "did you mean `env`?",
    ),
    (
        "    image: nginx:1.27",
        "    cmd: [\"sleep\", \"infinity\"]",
        "services.web.cmd",
        "did you mean `command`?",
    ),
    (
        "    image: nginx:1.27",
        "    volumes:\n      - data:/var/www",
        "services.web.volumes",
        "did you mean `params.storage`?",
    ),
    (
        "    image: registry.example.com/postgres:16",
        "    depends-on:\n      - web",
        "services.db.depends-on",
        "ignored like `depends_on`",
    ),
    (
        "    image: registry.example.com/postgres:16",
        "    depends_on: [web]",
        "services.db.depends_on",
        "docker-compose's `depends_on` has no SDL equivalent",
    ),
    (
        "          - service: db",
        "            servcie: web",
        "services.web.expose[0].to[1].servcie",
        "did you mean `service`?",
    ),
    (
        "        as: 80",
        "        protocol: udp",
        "services.web.expose[0].protocol",
        "did you mean `proto`?",
    ),
    (
        "          max_body_size: 2097152",
        "          read_timout: 30000",
        "services.web.expose[0].http_options.read_timout",
        "did you mean `read_timeout`?",
    ),
    (
        "          - service: db",
        "            http_options:\n              max_body_size: 1024",
        "services.web.expose[0].to[1].http_options",
        "did you mean `services.web.expose[0].http_options`?",
    ),
    (
        "          mount: /var/www",
        "          read-only: true",
        "services.web.params.storage.data.read-only",
        "did you mean `readOnly`?",
    ),
    (
        "    params:",
        "      tee_type: cpu",
        "services.web.params.tee_type",
        "the fields here are: storage, permissions, tee",
    ),
    (
        "      password: secret123",
        "      token: abc",
        "services.db.credentials.token",
        "the fields here are: host, email, username, password",
    ),
    (
        "  placement:",
        "  placements: {}",
        "profiles.placements",
        "did you mean `placement`?",
    ),
    (
        "          units: 1.5",
        "        network: 1Gbps",
        "profiles.compute.db.resources.network",
        "the fields here are: cpu, memory, storage, gpu",
    ),
    (
        "          units: 0.5",
        "          arch: amd64",
        "profiles.compute.web.resources.cpu.arch",
        "the fields here are: units, attributes",
    ),
    (
        "          size: 512Mi",
        "          attributes:\n            kind: ddr5",
        "profiles.compute.web.resources.memory.attributes",
        "the fields here are: size",
    ),
    (
        "            size: 2Gi",
        "            mount: /var/www",
        "profiles.compute.web.resources.storage[1].mount",
        "the fields here are: name, size, attributes",
    ),
    (
        "                - model: a100",
        "                  vram: 80Gi",
        "profiles.compute.db.resources.gpu.attributes.vendor.nvidia[0].vram",
        "did you mean `ram`?",
    ),
    (
        "        region: eu",
        "      placement: eu-west",
        "profiles.placement.dc.placement",
        "the fields here are: attributes, signedBy, pricing",
    ),
    (
        "      signedBy:",
        "        oneOf:\n          - akash18qa2a2ltfyvkyj0ggj3hkvuj6twzyumuaru9s4",
        "profiles.placement.dc.signedBy.oneOf",
        "did you mean `anyOf`?",
    ),
    (
        "          amount: 1000",
        "          currency: usd",
        "profiles.placement.dc.pricing.web.currency",
        "the fields here are: denom, amount",
    ),
    (
        "      count: 2",
        "      replicas: 3",
        "deployment.web.dc.replicas",
        "did you mean `count`?",
    ),
    (
        "    kind: ip",
        "    name: public",
        "endpoints.pub.name",
        "the fields here are: kind",
    ),
    (
        "  min_window: 24h",
        "  max_window: 48h",
        "reclamation.max_window",
        "did you mean `min_window`?",
    ),
];

fn versions() -> [String; 2] {
    [
        BASE.to_string(),
        BASE.replace("version: \"2.0\"", "version: \"2.1\""),
    ]
}

#[test]
fn the_base_file_is_clean() {
    for base in versions() {
        let sdl = kumo_sdl::parse(&base).unwrap();
        assert!(sdl.warnings().is_empty(), "{:?}", sdl.warnings());
        assert!(kumo_sdl::parse_strict(&base).is_ok());
    }
}

#[test]
fn ignored_keys_are_accepted_with_a_warning_and_leave_the_hash_alone() {
    for base in versions() {
        let clean = kumo_sdl::parse(&base).unwrap();
        let mut seen = 0;
        for (marker, lines, path, hint) in IGNORED {
            let before = *marker == "  placement:";
            let (text, line) = insert(&base, marker, lines, before);
            let sdl = kumo_sdl::parse(&text).unwrap_or_else(|e| panic!("{path}: refused: {e}"));
            assert_eq!(sdl.warnings().len(), 1, "{path}: {:?}", sdl.warnings());
            let w = &sdl.warnings()[0];
            assert_eq!(w.path, *path);
            assert_eq!(w.line, Some(line), "{w}");
            assert!(w.message.contains("Akash ignores it too"), "{w}");
            assert!(w.message.contains(hint), "{path}: want {hint:?} in {w}");
            assert_eq!(
                w.to_string(),
                format!("{path}: {} (line {line})", w.message)
            );
            assert_eq!(
                sdl.manifest_hash(),
                clean.manifest_hash(),
                "{path}: the manifest changed"
            );
            assert_eq!(sdl.groups(), clean.groups(), "{path}: the groups changed");
            seen += 1;
        }
        assert!(seen >= 20);
    }
}

#[test]
fn strict_parsing_refuses_each_ignored_key_at_its_field_and_line() {
    for base in versions() {
        for (marker, lines, path, _) in IGNORED {
            let before = *marker == "  placement:";
            let (text, line) = insert(&base, marker, lines, before);
            let err = kumo_sdl::parse_strict(&text)
                .err()
                .unwrap_or_else(|| panic!("{path}: accepted by parse_strict"));
            assert_eq!(err.path, *path);
            assert_eq!(err.line, Some(line));
            assert!(err.message.contains("strict"), "{err}");
        }
    }
}

#[test]
fn ignored_values_reach_neither_the_manifest_nor_the_environment() {
    let (text, _) = insert(
        BASE,
        "    image: nginx:1.27",
        "    environment:\n      - SECRET_MODE=debug\n    cmd: [\"sleep\"]",
        false,
    );
    let sdl = kumo_sdl::parse(&text).unwrap();
    assert_eq!(sdl.warnings().len(), 2);
    let manifest = serde_json::to_string(&kumo_sdl::akash::manifest_json(sdl.manifest())).unwrap();
    assert!(!manifest.contains("SECRET_MODE"), "{manifest}");
    assert!(!manifest.contains("sleep"), "{manifest}");
    assert!(manifest.contains("MODE=prod"), "{manifest}");
}

#[test]
fn a_typo_for_service_in_a_destination_is_dropped_like_akash_does() {
    // `servcie: db` in place of `service: db`: Akash reads a destination with no service, so
    // the port is not opened to db. The manifest is that of the file without the key.
    let typo = BASE.replace(
        "          - service: db\n",
        "          - servcie: db\n            global: false\n",
    );
    let without = BASE.replace("          - service: db\n", "          - global: false\n");
    let sdl = kumo_sdl::parse(&typo).unwrap();
    let w = &sdl.warnings()[0];
    assert_eq!(w.path, "services.web.expose[0].to[1].servcie");
    assert_eq!(w.line, Some(17));
    assert!(w.message.contains("did you mean `service`?"), "{w}");
    assert_eq!(
        sdl.manifest_hash(),
        kumo_sdl::parse(&without).unwrap().manifest_hash()
    );
}

#[test]
fn ignored_http_options_of_a_destination_are_still_type_checked_as_akash_does() {
    // Akash's decoder reads `to[].http_options` (then ignores it): a value of the wrong type
    // fails there, so it fails here too.
    let (text, _) = insert(
        BASE,
        "          - service: db",
        "            http_options:\n              max_body_size: lots",
        false,
    );
    let err = kumo_sdl::parse(&text).unwrap_err();
    assert_eq!(
        err.path,
        "services.web.expose[0].to[1].http_options.max_body_size"
    );
}

/// (where, lines, before, error path, which added line the key is on): keys Akash's parser
/// refuses stay errors.
const REFUSED: &[(&str, &str, bool, &str, usize)] = &[
    ("profiles:", "labels:\n  team: web", true, "labels", 0),
    (
        "        gpu:",
        "          count: 1",
        false,
        "profiles.compute.db.resources.gpu.count",
        0,
    ),
    (
        "            vendor:",
        "            interface: sxm",
        true,
        "profiles.compute.db.resources.gpu.attributes.interface",
        0,
    ),
    (
        "          units: 0.5",
        "          attributes:\n            features: avx512",
        false,
        "profiles.compute.web.resources.cpu.attributes.features",
        1,
    ),
    (
        "              class: beta2",
        "              mount: /x",
        false,
        "profiles.compute.web.resources.storage[1].attributes.mount",
        0,
    ),
];

#[test]
fn keys_akash_refuses_stay_refused() {
    for base in versions() {
        for (marker, lines, before, path, offset) in REFUSED {
            let (text, line) = insert(&base, marker, lines, *before);
            let err = kumo_sdl::parse(&text)
                .err()
                .unwrap_or_else(|| panic!("{path}: accepted"));
            assert_eq!(err.path, *path, "{err}");
            assert_eq!(err.line, Some(line + offset), "{err}");
            assert!(err.message.contains("unknown field"), "{err}");
        }
    }
}

/// A second persistent volume, `logs`, that no service mounts.
fn with_unmounted_logs(base: &str) -> String {
    insert(
        base,
        "              class: beta2",
        "          - name: logs\n            size: 3Gi\n            attributes:\n              persistent: true",
        false,
    )
    .0
}

#[test]
fn an_unmounted_persistent_volume_beside_a_mounted_one_passes_in_both_versions() {
    // Akash's v2.0 validator reads one mount for the whole service, so once the service mounts
    // any volume, an unmounted persistent one passes; v2.1 checks only mounted volumes.
    for base in versions() {
        let text = with_unmounted_logs(&base);
        let sdl = kumo_sdl::parse(&text).unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(sdl.warnings().len(), 1, "{:?}", sdl.warnings());
        let w = &sdl.warnings()[0];
        assert_eq!(w.path, "profiles.compute.web.resources.storage[2]");
        assert!(
            w.message.contains("not mounted by service \"web\"")
                && w.message.contains("services.web.params.storage.logs.mount"),
            "{w}"
        );
        // The volume is still requested (it is in the group, as in Akash).
        let unit = &sdl.groups()[0].resources[1];
        assert_eq!(unit.resources.storage.len(), 3);
        assert!(kumo_sdl::parse_strict(&text).is_err());
    }
}

#[test]
fn a_persistent_volume_in_a_service_that_mounts_nothing_fails_in_v2_0_only() {
    let no_mounts = |base: &str| {
        with_unmounted_logs(base).replace(
            "    params:\n      storage:\n        data:\n          mount: /var/www\n",
            "    params:\n      storage:\n",
        )
    };
    let err = kumo_sdl::parse(&no_mounts(BASE)).unwrap_err();
    assert!(
        err.to_string()
            .contains("requires services.web.params.storage"),
        "{err}"
    );
    assert_eq!(err.path, "profiles.compute.web.resources.storage[1]");

    let v21 = no_mounts(&versions()[1]);
    let sdl = kumo_sdl::parse(&v21).unwrap_or_else(|e| panic!("v2.1 refused: {e}"));
    let paths: Vec<&str> = sdl.warnings().iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "profiles.compute.web.resources.storage[1]",
            "profiles.compute.web.resources.storage[2]"
        ]
    );
}
