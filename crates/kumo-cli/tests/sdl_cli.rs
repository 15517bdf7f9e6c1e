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

/// `kumo … | true`: the reader is gone before kumo prints. kumo exits 0 without a panic.
#[test]
fn a_closed_pipe_on_stdout_ends_kumo_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["sdl", "manifest", &example("wordpress-mysql.yaml")])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run kumo");
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
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

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kumo-sdl-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// hello-web.yaml with keys Akash ignores: `environment` (line 9) and `depends-on` (line 11).
fn with_ignored_keys() -> String {
    let text = std::fs::read_to_string(example("hello-web.yaml")).unwrap();
    let marked = text.replacen(
        "    image: kumo-example/hello-web:1\n",
        "    image: kumo-example/hello-web:1\n    environment:\n      - GREETING=hi\n    depends-on: [db]\n",
        1,
    );
    assert_ne!(marked, text);
    marked
}

#[test]
fn check_warns_about_ignored_keys_and_strict_refuses_them() {
    let dir = Scratch::new("check");
    let file = dir.write("typos.yaml", &with_ignored_keys());
    let clean = dir.write(
        "clean.yaml",
        &std::fs::read_to_string(example("hello-web.yaml")).unwrap(),
    );

    let out = kumo(&["sdl", "check", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid SDL"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: {file}: services.web.environment: not an SDL field here, ignored (Akash ignores it too); did you mean `env`? (a list of NAME=value) (line 9)"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "services.web.depends-on: ignored (Akash ignores it too): ignored like `depends_on`"
        ),
        "{err}"
    );
    assert!(err.contains("(line 11)"), "{err}");

    let out = kumo(&["sdl", "check", &file, "-o", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["warnings"][0]["path"], "services.web.environment");
    assert_eq!(v["warnings"][0]["line"], 9);
    assert_eq!(v["warnings"][1]["path"], "services.web.depends-on");

    // The ignored keys are not in the manifest: same hash as the file without them.
    let hash = |f: &str| stdout(&kumo(&["sdl", "hash", f])).trim().to_string();
    assert_eq!(hash(&file).len(), 64);
    assert_eq!(hash(&file), hash(&clean));

    let out = kumo(&["sdl", "check", &file, "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("error: {file}: services.web.environment: "))
            && err.contains("(line 9)"),
        "{err}"
    );
    assert!(err.contains("refused by --strict: 2 part(s)"), "{err}");

    let out = kumo(&["sdl", "check", &file, "--strict", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["path"], "services.web.environment");
    assert_eq!(v["error"]["line"], 9);

    // A clean file passes --strict.
    let out = kumo(&["sdl", "check", &clean, "--strict"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `kumo deploy` against `node` with a tenant key in `home`.
fn deploy(home: &str, node: &str, file: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "deploy",
        file,
        "--home",
        home,
        "--keyring-backend",
        "test",
        "--node",
        node,
        "--bid-wait",
        "1s",
    ];
    args.extend(extra);
    kumo(&args)
}

#[test]
fn deploy_shows_warnings_first_and_strict_refuses_before_sending_anything() {
    let dir = Scratch::new("deploy");
    let file = dir.write("typos.yaml", &with_ignored_keys());
    let home = dir.0.join("home").to_string_lossy().into_owned();
    let out = kumo(&[
        "keys",
        "add",
        "tenant",
        "--home",
        &home,
        "--keyring-backend",
        "test",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A listener stands in for the node: it sees whether the command connects at all.
    let node = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    node.set_nonblocking(true).unwrap();
    let url = format!("http://{}", node.local_addr().unwrap());

    let out = deploy(&home, &url, &file, &["--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused by --strict, nothing was sent"),
        "{err}"
    );
    assert!(err.contains("services.web.environment"), "{err}");
    assert!(err.contains("(line 9)"), "{err}");
    assert!(
        matches!(node.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "deploy --strict connected to the node"
    );
    // `kumo update --strict` refuses the same file before reaching the node too.
    let out = kumo(&[
        "update",
        "7",
        &file,
        "--strict",
        "--home",
        &home,
        "--keyring-backend",
        "test",
        "--node",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused by --strict, nothing was sent") && err.contains("(line 9)"),
        "{err}"
    );
    assert!(
        matches!(node.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "update --strict connected to the node"
    );

    // Without --strict the warnings come first, then the deployment goes ahead (here it stops
    // at the stand-in node, which never answers an HTTP request properly).
    let child = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args([
            "deploy",
            &file,
            "--home",
            &home,
            "--keyring-backend",
            "test",
            "--node",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let conn = loop {
        match node.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "deploy never connected"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    drop(conn);
    drop(node);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let warning = err
        .find("warning: ")
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(
        err[warning..].starts_with(&format!("warning: {file}: services.web.environment")),
        "{err}"
    );
    assert!(
        err[..warning].trim().is_empty(),
        "the warnings must be the first thing printed: {err}"
    );
}
