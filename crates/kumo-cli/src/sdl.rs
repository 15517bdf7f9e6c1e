//! `kumo sdl …`: check a deployment file, show its group specs, manifest and hash.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::output::{OutputFormat, print_json};

/// SDL commands. FILE may be `-` for standard input.
#[derive(Debug, Subcommand)]
pub(crate) enum SdlCommand {
    /// Check a file: exit 0 if it is valid, else print the field, the line and the reason.
    Check(FileArg),
    /// Print the group specs (what goes on chain) as JSON.
    Groups(RenderArgs),
    /// Print the manifest (what the provider runs) as JSON.
    Manifest(RenderArgs),
    /// Print the manifest hash that goes on chain (hex).
    Hash(FileArg),
}

/// The SDL file to read.
#[derive(Debug, Args)]
pub(crate) struct FileArg {
    /// Path to the SDL file (YAML), or `-` for standard input.
    pub(crate) file: PathBuf,
}

/// The file, and which JSON shape to print.
#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    #[command(flatten)]
    pub(crate) file: FileArg,
    /// Print Akash's own JSON shape (field names, `{"val": …}` quantities, 18-decimal prices).
    #[arg(long)]
    pub(crate) akash: bool,
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .take(kumo_sdl::MAX_INPUT_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .context("reading the SDL from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn load(file: &FileArg) -> anyhow::Result<kumo_sdl::Sdl> {
    let text = read_file(&file.file)?;
    let sdl = kumo_sdl::parse(&text)
        .with_context(|| format!("{} is not a valid SDL", file.file.display()))?;
    for warning in sdl.warnings() {
        tracing::warn!("{}: {warning}", file.file.display());
    }
    Ok(sdl)
}

impl SdlCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            SdlCommand::Check(file) => check(file, format),
            SdlCommand::Groups(args) => {
                let sdl = load(&args.file)?;
                let json = match args.akash {
                    true => kumo_sdl::akash::groups_json(sdl.groups()),
                    false => serde_json::to_value(sdl.groups())?,
                };
                print_json(&json)?;
                Ok(ExitCode::SUCCESS)
            }
            SdlCommand::Manifest(args) => {
                let sdl = load(&args.file)?;
                let json = match args.akash {
                    true => kumo_sdl::akash::manifest_json(sdl.manifest()),
                    false => serde_json::to_value(sdl.manifest())?,
                };
                print_json(&json)?;
                Ok(ExitCode::SUCCESS)
            }
            SdlCommand::Hash(file) => {
                let hash = hex::encode(load(file)?.manifest_hash());
                match format {
                    OutputFormat::Text => println!("{hash}"),
                    OutputFormat::Json => print_json(&json!({ "hash": hash }))?,
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// `kumo sdl check`: a one-line verdict; the error (field, line, reason) on failure.
fn check(file: &FileArg, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let text = read_file(&file.file)?;
    let name = file.file.display();
    match (kumo_sdl::parse(&text), format) {
        (Ok(sdl), OutputFormat::Text) => {
            for warning in sdl.warnings() {
                eprintln!("warning: {name}: {warning}");
            }
            let services = sdl.manifest().services().count();
            println!(
                "{name}: valid SDL {} ({} group(s), {services} service(s), priced in {})",
                match sdl.version() {
                    kumo_sdl::SdlVersion::V2_0 => "2.0",
                    kumo_sdl::SdlVersion::V2_1 => "2.1",
                },
                sdl.groups().len(),
                sdl.denoms().join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        (Ok(sdl), OutputFormat::Json) => {
            print_json(&json!({
                "file": name.to_string(),
                "valid": true,
                "version": sdl.version(),
                "groups": sdl.groups().len(),
                "services": sdl.manifest().services().count(),
                "denoms": sdl.denoms(),
                "hash": hex::encode(sdl.manifest_hash()),
                "warnings": sdl.warnings(),
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        (Err(e), OutputFormat::Text) => {
            eprintln!("error: {name}: {e}");
            Ok(ExitCode::FAILURE)
        }
        (Err(e), OutputFormat::Json) => {
            print_json(&json!({
                "file": name.to_string(),
                "valid": false,
                "error": { "path": e.path, "line": e.line, "message": e.message, "text": e.to_string() },
            }))?;
            Ok(ExitCode::FAILURE)
        }
    }
}
