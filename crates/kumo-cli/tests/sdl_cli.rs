//! Drives the real `kumo` binary through `kumo sdl …` as a user or a script would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn kumo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(args)
        .output()
        .expect("run kumo")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/akash-sdl/testdata/sdl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_examples() {
    for name in [
        "hello-web.yaml",
        "wordpress-mysql.yaml",
        "gpu-pytorch-job.yaml",
    ] {
        let out = kumo(&["sdl", "check", &example(name)]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stdout(&out).contains("valid SDL"), "{}", stdout(&out));
    }
}

#[test]
fn check_reports_field_and_line_and_fails() {
    let dir = std::env::temp_dir().join(format!("kumo-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(example("hello-web.yaml"))
        .unwrap()
        .replace("port: 80\n", "port: 70000\n");
    std::fs::write(&bad, text).unwrap();
    let bad = bad.to_string_lossy().into_owned();

    let out = kumo(&["sdl", "check", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("services.web.expose[0].port: 70000 is outside 1-65535 (line 10)"),
        "{}",
        stderr(&out)
    );

    let out = kumo(&["sdl", "check", &bad, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["path"], "services.web.expose[0].port");
    assert_eq!(v["error"]["line"], 10);

    // Other commands refuse the file too, and print nothing on stdout.
    let out = kumo(&["sdl", "groups", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("(line 10)"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn groups_and_manifest_render_akash_fixtures_exactly() {
    let case = suite().join("input/v2.1/ip-endpoint/input.yaml");
    let case = case.to_string_lossy();
    for (cmd, fixture) in [
        ("groups", "group-specs.json"),
        ("manifest", "manifest.json"),
    ] {
        let out = kumo(&["sdl", cmd, &case, "--akash"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let got: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                suite()
                    .join("output-fixtures/v2.1/ip-endpoint")
                    .join(fixture),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(got, want, "kumo sdl {cmd} --akash");
    }
}

#[test]
fn hash_is_stable_and_agrees_across_commands_and_stdin() {
    let file = example("wordpress-mysql.yaml");
    let a = stdout(&kumo(&["sdl", "hash", &file])).trim().to_string();
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&kumo(&["sdl", "check", &file, "-o", "json"]))).unwrap();
    assert_eq!(json["hash"], a.as_str());

    let mut child = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["sdl", "hash", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(std::fs::read_to_string(&file).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), a);

    let other = stdout(&kumo(&["sdl", "hash", &example("hello-web.yaml")]));
    assert_ne!(other.trim(), a);
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = kumo(&["sdl", "check", "/nonexistent/deploy.yaml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read /nonexistent/deploy.yaml"),
        "{}",
        stderr(&out)
    );
}
