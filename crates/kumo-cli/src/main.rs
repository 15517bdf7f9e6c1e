//! The `kumo` binary: parses arguments, runs a command from the library crates, maps errors to
//! exit codes. Each command lives in its own module.

mod bench;
mod bench_deploy;
mod bench_failover;
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
mod top_up;
mod tx;

use clap::Parser;

/// mimalloc rather than the system allocator: with a large state, glibc's allocator touches
/// cold metadata on the small allocations and frees that block execution is full of.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quiet_on_closed_pipe();
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

/// `kumo lease list | head -1` closes the pipe while kumo still prints. Rust ignores SIGPIPE,
/// so the next `println!` fails, and `println!` panics on failure: the user would see a panic
/// for a normal shell habit. The output was not wanted any more, so kumo exits 0 quietly, as
/// a Unix tool does; any other panic goes to the default hook.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
