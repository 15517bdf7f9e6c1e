//! What the end-to-end tests of the `kumo` binary share: a `kumo provider run` child process.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// A `kumo provider run` child, killed on drop.
pub(crate) struct ProviderProcess {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl ProviderProcess {
    pub(crate) fn start(config: &Path) -> ProviderProcess {
        let log = config.with_extension("log");
        let mut p = ProviderProcess {
            config: config.to_path_buf(),
            log,
            child: None,
        };
        p.spawn();
        p
    }

    pub(crate) fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["provider", "run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,kumo_provider=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start kumo provider run");
        self.child = Some(child);
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
