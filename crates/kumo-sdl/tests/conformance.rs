//! Akash's own SDL test suite, run against kumo-sdl.
//!
//! The suite lives outside the repository, in `../shared/conformance/akash-sdl/` beside the
//! checkout (or where `KUMO_AKASH_SDL_SUITE` points). A missing suite fails the test rather
//! than passing it empty.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn suite() -> PathBuf {
    let dir = std::env::var_os("KUMO_AKASH_SDL_SUITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/akash-sdl")
        });
    assert!(
        dir.join("testdata/sdl/input").is_dir(),
        "Akash SDL conformance suite not found at {} (set KUMO_AKASH_SDL_SUITE)",
        dir.display()
    );
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_inputs_render_exactly_as_akash() {
    let root = suite().join("testdata/sdl");
    let mut cases = 0;
    let mut failures = Vec::new();
    for version in ["v2.0", "v2.1"] {
        let inputs = root.join("input").join(version);
        let mut dirs: Vec<_> = std::fs::read_dir(&inputs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        for case in dirs {
            let name = format!("{version}/{}", case.file_name().unwrap().to_string_lossy());
            let expected = root.join("output-fixtures").join(&name);
            let sdl = match kumo_sdl::parse(&read(&case.join("input.yaml"))) {
                Ok(sdl) => sdl,
                Err(e) => {
                    failures.push(format!("{name}: rejected: {e}"));
                    continue;
                }
            };
            let groups: Value =
                serde_json::from_str(&read(&expected.join("group-specs.json"))).unwrap();
            let manifest: Value =
                serde_json::from_str(&read(&expected.join("manifest.json"))).unwrap();
            let got_groups = kumo_sdl::akash::groups_json(sdl.groups());
            let got_manifest = kumo_sdl::akash::manifest_json(sdl.manifest());
            if got_groups != groups {
                failures.push(format!(
                    "{name}: group specs differ\n  want {groups}\n  got  {got_groups}"
                ));
            }
            if got_manifest != manifest {
                failures.push(format!(
                    "{name}: manifest differs\n  want {manifest}\n  got  {got_manifest}"
                ));
            }
            cases += 1;
        }
    }
    assert!(cases >= 15, "only {cases} conformance cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each invalid file and the field its error must name.
const INVALID: &[(&str, &str)] = &[
    ("count-zero.yaml", "deployment.web.akash.count"),
    (
        "credentials-missing-host.yaml",
        "services.web.credentials.host",
    ),
    ("empty-image.yaml", "services.web.image"),
    ("endpoint-not-used.yaml", "endpoints."),
    ("invalid-endpoint-name.yaml", "endpoints.Invalid-Name"),
    ("invalid-port.yaml", "services.web.expose[0].port"),
    ("invalid-protocol.yaml", "services.web.expose[0].proto"),
    ("ip-without-global.yaml", "services.web.expose[0].to[0].ip"),
    ("missing-deployment.yaml", "deployment"),
    ("missing-image.yaml", "services.web.image"),
    ("missing-memory-size.yaml", "resources.memory.size"),
    ("missing-pricing.yaml", "pricing"),
    ("missing-version.yaml", "version"),
    ("negative-cpu.yaml", "resources.cpu.units"),
    ("persistent-without-mount.yaml", "resources.storage"),
    ("port-too-high.yaml", "services.web.expose[0]"),
    ("port-zero.yaml", "services.web.expose[0].port"),
    ("ram-persistent-true.yaml", "resources.storage"),
    ("unknown-field.yaml", "unknown_field"),
    ("v2.1-reclamation-bad-window.yaml", "reclamation.min_window"),
    ("v2.1-tee-cpu-gpu-no-gpu.yaml", "services.web.params.tee"),
];

const SCHEMA_ONLY_INVALID: &[(&str, &str)] = &[
    ("email-too-short.yaml", "services.web.credentials.email"),
    (
        "invalid-denom.yaml",
        "profiles.placement.akash.pricing.web.denom",
    ),
    (
        "invalid-gpu-vendor.yaml",
        "profiles.compute.web.resources.gpu.attributes.vendor.amd",
    ),
    ("invalid-version.yaml", "version"),
    (
        "password-too-short.yaml",
        "services.web.credentials.password",
    ),
    ("reclamation-compound-window.yaml", "reclamation.min_window"),
];

fn check_rejections(dir: &str, table: &[(&str, &str)]) {
    let dir = suite().join("testdata/sdl/input").join(dir);
    let files = yaml_files(&dir);
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let Some((_, field)) = table.iter().find(|(n, _)| *n == name) else {
            failures.push(format!(
                "{name}: not in this test's table; add the field it must name"
            ));
            continue;
        };
        match kumo_sdl::parse(&read(file)) {
            Ok(_) => failures.push(format!("{name}: accepted, must be rejected")),
            Err(e) => {
                if !e.path.contains(field) || e.line.is_none() {
                    failures.push(format!(
                        "{name}: error names the wrong field (want {field}, with a line): {e}"
                    ));
                }
            }
        }
    }
    assert_eq!(
        files.len(),
        table.len(),
        "the suite and this table list different files"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_inputs_are_rejected_at_the_right_field() {
    check_rejections("invalid", INVALID);
}

#[test]
fn schema_only_invalid_inputs_are_rejected_too() {
    check_rejections("schema-only-invalid", SCHEMA_ONLY_INVALID);
}

/// Fixtures of Akash's Go unit tests that its tests expect to fail, with a fragment of the
/// reason (`go/sdl/*_test.go` in chain-sdk).
const GO_MUST_FAIL: &[(&str, &str)] = &[
    ("simple-reclamation-invalid.yaml", "reclamation"),
    ("simple-reclamation-zero.yaml", "reclamation"),
    ("v2.1-reclamation-invalid.yaml", "reclamation"),
    ("v2.1-reclamation-zero.yaml", "reclamation"),
    ("storageClass1.yaml", "absolute path"),
    ("storageClass2.yaml", "absolute path"),
    ("storageClass3.yaml", "no volume named"),
    ("storageClass4.yaml", "already in use by volume"),
    ("storageClass5.yaml", "to have mount"),
    ("v2.1-credentials-error.yaml", "credentials"),
    ("deployment-svc-mismatch.yaml", "no service profile named"),
    // Akash's Go test accepts this file's 3-character password, but Akash's schema demands at
    // least 6, and the suite's README says Kumo follows the schema where the two disagree
    // (see schema-only-invalid/password-too-short.yaml). The schema wins.
    (
        "v2.1-credentials.yaml",
        "services.web.credentials.password: is too short",
    ),
    (
        "v2.1-deployment-svc-mismatch.yaml",
        "no service profile named",
    ),
];

#[test]
fn go_unit_test_fixtures_are_accepted_or_rejected_as_akash_expects() {
    let dir = suite().join("go/sdl/_testdata");
    let mut files = yaml_files(&dir);
    files.extend(yaml_files(&dir.join("legacy")));
    assert!(files.len() >= 50, "only {} Go fixtures found", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let result = kumo_sdl::parse(&read(file));
        match (GO_MUST_FAIL.iter().find(|(n, _)| *n == name), result) {
            (Some(_), Ok(_)) => failures.push(format!("{name}: accepted, Akash rejects it")),
            (Some((_, why)), Err(e)) if !e.to_string().contains(why) => failures.push(format!(
                "{name}: rejected for the wrong reason (want {why:?}): {e}"
            )),
            (None, Err(e)) => failures.push(format!("{name}: rejected, Akash accepts it: {e}")),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn go_fixture(name: &str) -> kumo_sdl::Sdl {
    let path = suite().join("go/sdl/_testdata").join(name);
    kumo_sdl::parse(&read(&path)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Values Akash's Go tests assert for some fixtures (`v2_test.go`, `v2_1_test.go`).
#[test]
fn go_unit_test_fixtures_produce_the_values_akash_asserts() {
    for name in ["simple-gpu.yaml", "v2.1-simple-gpu.yaml"] {
        let sdl = go_fixture(name);
        let group = &sdl.groups()[0];
        assert_eq!(sdl.groups().len(), 1, "{name}");
        assert_eq!(group.resources.len(), 1, "{name}");
        assert_eq!(group.requirements.attributes.len(), 2, "{name}");
        assert_eq!(group.requirements.attributes[1].key, "region", "{name}");
        assert_eq!(group.requirements.attributes[1].value, "us-west", "{name}");
        let unit = &group.resources[0];
        assert_eq!(unit.count, 2, "{name}");
        assert_eq!(
            unit.resources.gpu.attributes[0].key, "vendor/nvidia/model/a100",
            "{name}"
        );
    }
    for name in ["service-mix.yaml", "v2.1-service-mix.yaml"] {
        let sdl = go_fixture(name);
        let group = &sdl.groups()[0];
        assert_eq!(group.resources.len(), 2, "{name}");
        assert_eq!(group.requirements.attributes.len(), 2, "{name}");
        let ids: Vec<u32> = group.resources.iter().map(|u| u.resources.id).collect();
        assert_eq!(ids, [1, 2], "{name}");
        assert_eq!(
            group.resources[0].resources.gpu.attributes[0].key, "vendor/nvidia/model/*",
            "{name}"
        );
    }
    // The manifest hash changes with the content (sdl_test.go).
    let simple = go_fixture("simple.yaml").manifest_hash();
    assert_ne!(simple, go_fixture("private_service.yaml").manifest_hash());
    assert_ne!(simple, go_fixture("simple-double-ram.yaml").manifest_hash());
    assert_eq!(simple, go_fixture("simple.yaml").manifest_hash());
    // Reclamation windows (reclamation_test.go).
    assert_eq!(
        go_fixture("simple-reclamation.yaml").reclamation_min_window_secs(),
        Some(24 * 3600), // min_window: "24h"
    );
    assert_eq!(
        go_fixture("simple.yaml").reclamation_min_window_secs(),
        None
    );
}
