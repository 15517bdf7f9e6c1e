//! A detached `kumo devnet` for an end-to-end test of the real binaries (a validator and a
//! provider with the Docker backend, VMs off), brought down however the test ends; and the
//! check that the Docker engine and a test image are there, which skips the test with a line
//! the harness shows, or fails it under `KUMO_REQUIRE_DOCKER=1`.
//!
//! Included with `#[path = "support/devnet.rs"] mod devnet;` by the tests that use all of it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

/// Whether the engine answers and has `image`; prints why `test` is skipped when not (panics
/// instead under `KUMO_REQUIRE_DOCKER=1`).
pub(crate) fn docker_ready(image: &str, test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("KUMO_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "KUMO_REQUIRE_DOCKER=1 but Docker or {image} is missing: run scripts/test-images.sh"
            );
        }
        skip::report(
            test,
            &format!(
                "no Docker engine or no {image} (run scripts/test-images.sh; KUMO_REQUIRE_DOCKER=1 makes this a failure)"
            ),
        );
    }
    ok
}

/// Bytes as text, for messages.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running devnet in `dir`; `kumo devnet down` on drop.
pub(crate) struct Devnet {
    /// Its directory (`devnet.env`, `keys/`, homes).
    pub(crate) dir: PathBuf,
    /// What `kumo devnet up -o json` printed (`info.node`, `info.provider`, `info.instance`, …).
    pub(crate) info: Value,
}

#[path = "../../../../tests/skip.rs"]
mod skip;

impl Devnet {
    /// `kumo devnet up --detach` in `dir`, on free ports, without VMs.
    pub(crate) fn up(dir: &Path) -> Devnet {
        Devnet::up_with_providers(dir, 1)
    }

    /// `kumo devnet up --providers N --detach` in `dir`, on free ports, without VMs
    /// (`info.providers[i]`: `name`, `address`, ...; the first is the cheapest).
    pub(crate) fn up_with_providers(dir: &Path, providers: usize) -> Devnet {
        let out = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args([
                "devnet",
                "up",
                "--base-port",
                "0",
                "--vm",
                "off",
                "--providers",
                &providers.to_string(),
                "--detach",
                "-o",
                "json",
                "--home",
            ])
            .arg(dir)
            .env_remove("KUMO_HOME")
            .env_remove("KUMO_NODE")
            .output()
            .expect("run kumo devnet up");
        // Brought down even if `up` failed half-way.
        let mut devnet = Devnet {
            dir: dir.to_path_buf(),
            info: Value::Null,
        };
        assert!(out.status.success(), "devnet up: {}", text(&out.stderr));
        devnet.info = serde_json::from_slice(&out.stdout).expect("devnet up -o json");
        devnet
    }

    /// `info.<key>` as text.
    pub(crate) fn info(&self, key: &str) -> String {
        self.info["info"][key]
            .as_str()
            .unwrap_or_else(|| panic!("devnet info has no {key}: {}", self.info))
            .to_string()
    }

    /// The devnet's environment, as `devnet.env` sets it (`KUMO_NODE`, `KUMO_HOME`, ...), for a
    /// `kumo` spawned by hand.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.join("devnet.env"))
            .expect("devnet.env")
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `kumo ARGS` with the devnet's environment.
    pub(crate) fn kumo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .expect("run kumo")
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["devnet", "down", "--home"])
            .arg(&self.dir)
            .output();
    }
}
