//! The `kumo` binary: parses arguments, runs a command from the library crates, maps errors to
//! exit codes. Each command lives in its own module.

mod bench;
mod bench_deploy;
mod bench_provider;
mod cli;
mod client;
mod deploy;
mod devnet;
mod home;
mod keys;
mod lease;
mod node;
mod output;
mod provider;
mod query;
mod sdl;
mod testnet;
mod tx;

use clap::Parser;

/// mimalloc rather than the system allocator: with a large state, glibc's allocator touches
/// cold metadata on the small allocations and frees that block execution is full of.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(cli.default_log_level(), cli.global.verbose);
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            output::print_error(cli.global.output, &err);
            std::process::ExitCode::FAILURE
        }
    }
}
