//! The `kumo` binary: parses arguments, runs a command from the library crates, maps errors to
//! exit codes. Each command lives in its own module.

mod cli;
mod output;
mod sdl;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(cli.global.verbose);
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            output::print_error(cli.global.output, &err);
            std::process::ExitCode::FAILURE
        }
    }
}
