//! How commands talk back: human text by default, JSON with `-o json`, errors on stderr.

use serde::Serialize;

/// Output format chosen with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Prints a value as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Reports a failed command: `error: …` on stderr, or `{"error": …}` on stdout with `-o json`.
pub(crate) fn print_error(format: OutputFormat, err: &anyhow::Error) {
    match format {
        OutputFormat::Text => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
        }
        OutputFormat::Json => {
            let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            println!("{}", serde_json::json!({ "error": chain.join(": ") }));
        }
    }
}

/// Logs to stderr at `base` (`-v` raises the level, `RUST_LOG` overrides it).
pub(crate) fn init_tracing(base: &str, verbose: u8) {
    let default = match verbose {
        0 => base,
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
}
