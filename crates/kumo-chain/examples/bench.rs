//! Runs the state-machine benchmarks and prints their JSON.
//!
//! ```text
//! cargo run --release -p kumo-chain --example bench -- chain
//! cargo run --release -p kumo-chain --example bench -- escrow
//! cargo run --release -p kumo-chain --example bench -- escrow-cold   # caches evicted first
//! cargo run --release -p kumo-chain --example bench -- chain-single  # no batch verification
//! ```
//!
//! It allocates with mimalloc, as the `kumo` binary does (see `kumo bench --help`).

/// The allocator of the `kumo` binary, so the numbers match `kumo bench`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "chain".into());
    let json = match which.as_str() {
        "chain" => serde_json::to_string(&kumo_chain::bench::chain(&Default::default())),
        "chain-single" => {
            serde_json::to_string(&kumo_chain::bench::chain(&kumo_chain::bench::ChainConfig {
                batch_verify: false,
                ..Default::default()
            }))
        }
        "escrow" => serde_json::to_string(&kumo_chain::bench::escrow(&Default::default())),
        "escrow-cold" => serde_json::to_string(&kumo_chain::bench::escrow(
            &kumo_chain::bench::EscrowConfig {
                cold_cache: true,
                ..Default::default()
            },
        )),
        other => {
            eprintln!("unknown benchmark {other:?}: use chain or escrow");
            std::process::exit(2);
        }
    };
    println!("{}", json.expect("serializes"));
}
