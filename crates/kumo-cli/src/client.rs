//! What the commands that talk to a node share: `--node URL` / `KUMO_NODE`, and a runtime to
//! wait on the client with.

use clap::Args;
use kumo_client::NodeClient;

/// The node to talk to.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// The node's API URL.
    #[arg(
        long,
        env = "KUMO_NODE",
        value_name = "URL",
        default_value = "http://127.0.0.1:26657"
    )]
    pub(crate) node: String,
}

impl NodeArgs {
    /// A client of the node.
    pub(crate) fn client(&self) -> anyhow::Result<NodeClient> {
        Ok(NodeClient::new(&self.node)?)
    }
}

/// Runs a future to completion on a small runtime (the CLI's commands are one request or a few).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}
