//! The Kumo home directory (`--home`, `KUMO_HOME`, default `~/.kumo`): keys live in `keys/`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Where Kumo keeps its files.
#[derive(Debug, Args)]
pub(crate) struct HomeArgs {
    /// Kumo's home directory (keys are in its `keys/` folder) [default: ~/.kumo]
    #[arg(long, env = "KUMO_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
}

impl HomeArgs {
    /// The home directory: `--home`, else `KUMO_HOME`, else `~/.kumo`.
    pub(crate) fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.home {
            Some(dir) => Ok(dir.clone()),
            None => std::env::home_dir()
                .map(|h| h.join(".kumo"))
                .context("cannot find your home directory: pass --home or set KUMO_HOME"),
        }
    }

    /// The key directory.
    pub(crate) fn keys_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(self.dir()?.join("keys"))
    }
}
