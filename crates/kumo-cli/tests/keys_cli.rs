//! Drives `kumo keys …` through the real binary, with the test backend and with the file
//! backend unlocked through `KUMO_KEYRING_PASSPHRASE`, as scripts use them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kumo_types::{Address, PublicKey};
use serde_json::Value;

/// Runs kumo with a clean environment: only the variables given.
fn kumo_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kumo"));
    cmd.args(args)
        .env_remove("KUMO_HOME")
        .env_remove("KUMO_KEYRING_PASSPHRASE")
        .env_remove("KUMO_KEYRING_BACKEND")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kumo");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The address must be the one the public key hashes to.
fn assert_consistent(key: &Value) {
    let pk: PublicKey = serde_json::from_value(key["public_key"].clone()).unwrap();
    let addr: Address = serde_json::from_value(key["address"].clone()).unwrap();
    assert_eq!(Address::from_public_key(&pk), addr);
    assert!(key["address"].as_str().unwrap().starts_with("kumo1"));
}

fn fails_with(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stdout(o));
    assert!(
        stderr(o).contains(needle),
        "{:?} not in {}",
        needle,
        stderr(o)
    );
}

#[test]
fn test_backend_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap();
    let keys = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        all.extend(["--keyring-backend", "test", "--home", home]);
        kumo_env(&all, &[], stdin)
    };

    let alice = json(&keys(&["add", "alice", "-o", "json"], b""));
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["backend"], "test");
    assert_consistent(&alice);
    assert!(dir.path().join("keys/alice.json").exists());

    let shown = json(&keys(&["show", "alice", "-o", "json"], b""));
    assert_eq!(shown, alice);
    let text = stdout(&keys(&["show", "alice"], b""));
    assert!(text.contains(alice["address"].as_str().unwrap()), "{text}");
    assert!(
        text.contains(alice["public_key"].as_str().unwrap()),
        "{text}"
    );

    // The same name twice, an unknown name, a bad name: clear errors, nothing printed.
    let o = keys(&["add", "alice"], b"");
    fails_with(&o, "already exists");
    assert!(stdout(&o).is_empty());
    fails_with(&keys(&["show", "bob"], b""), "no key named \"bob\"");
    fails_with(&keys(&["add", "../x"], b""), "is invalid");

    // Export needs the explicit flag, then prints the secret and warns on stderr.
    let o = keys(&["export", "alice"], b"");
    fails_with(&o, "--unsafe-export-secret");
    assert!(stdout(&o).is_empty());
    let o = keys(&["export", "alice", "--unsafe-export-secret"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    let secret = stdout(&o).trim().to_string();
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));

    // Importing what export printed gives the same account under another name.
    let carol = json(&keys(&["import", "carol", "-o", "json"], secret.as_bytes()));
    assert_eq!(carol["address"], alice["address"]);
    assert_eq!(carol["public_key"], alice["public_key"]);
    fails_with(&keys(&["import", "dave"], b"not hex"), "64 hex digits");

    let list = json(&keys(&["list", "-o", "json"], b""));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "carol"]);

    // Deleting asks for confirmation; off a terminal, --yes gives it.
    fails_with(&keys(&["delete", "carol"], b""), "--yes");
    let o = json(&keys(&["delete", "carol", "--yes", "-o", "json"], b""));
    assert_eq!(o["deleted"], "carol");
    fails_with(&keys(&["show", "carol"], b""), "no key named");
    assert_eq!(
        json(&keys(&["list", "-o", "json"], b""))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn file_backend_with_env_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap();
    // KUMO_HOME instead of --home; the file backend is the default.
    let run = |args: &[&str], pass: Option<&str>, stdin: &[u8]| {
        let mut env = vec![("KUMO_HOME", home)];
        if let Some(p) = pass {
            env.push(("KUMO_KEYRING_PASSPHRASE", p));
        }
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        kumo_env(&all, &env, stdin)
    };

    let bob = json(&run(
        &["add", "bob", "-o", "json"],
        Some("correct horse"),
        b"",
    ));
    assert_eq!(bob["backend"], "file");
    assert_consistent(&bob);

    // No passphrase and no terminal: say how to give one.
    fails_with(&run(&["add", "eve"], None, b""), "KUMO_KEYRING_PASSPHRASE");
    // Listing and showing need no passphrase.
    let shown = json(&run(&["show", "bob", "-o", "json"], None, b""));
    assert_eq!(shown, bob);

    let o = run(
        &["export", "bob", "--unsafe-export-secret"],
        Some("wrong"),
        b"",
    );
    fails_with(&o, "wrong passphrase");
    assert!(stdout(&o).is_empty());

    let exported = json(&run(
        &["export", "bob", "--unsafe-export-secret", "-o", "json"],
        Some("correct horse"),
        b"",
    ));
    assert_eq!(exported["address"], bob["address"]);
    let secret = exported["secret_key"].as_str().unwrap();
    // The file holds the secret encrypted only.
    let file = std::fs::read_to_string(Path::new(home).join("keys/bob.json")).unwrap();
    assert!(!file.contains(secret));

    // Export's JSON imports as is, under a new passphrase.
    let copy = json(&run(
        &["import", "bob2", "-o", "json"],
        Some("another one"),
        stdout(&run(
            &["export", "bob", "--unsafe-export-secret", "-o", "json"],
            Some("correct horse"),
            b"",
        ))
        .as_bytes(),
    ));
    assert_eq!(copy["address"], bob["address"]);
    fails_with(
        &run(
            &["export", "bob2", "--unsafe-export-secret"],
            Some("correct horse"),
            b"",
        ),
        "wrong passphrase",
    );
    // A file-backend key cannot be read as a test one.
    fails_with(
        &run(
            &[
                "export",
                "bob",
                "--unsafe-export-secret",
                "--keyring-backend",
                "test",
            ],
            None,
            b"",
        ),
        "--keyring-backend file",
    );
}

#[test]
fn home_defaults_to_dot_kumo() {
    let dir = tempfile::tempdir().unwrap();
    let o = kumo_env(
        &[
            "keys",
            "add",
            "k",
            "--keyring-backend",
            "test",
            "-o",
            "json",
        ],
        &[("HOME", dir.path().to_str().unwrap())],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join(".kumo/keys/k.json").exists());
}
