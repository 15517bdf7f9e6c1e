//! `kumo sdl …`: check a deployment file, show its group specs, manifest and hash.
//!
//! Warnings (keys Akash's parser ignores, such as `environment` for `env`) go to stderr;
//! `kumo sdl check --strict` refuses a file that has any.

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
    /// Keys Akash ignores are reported as warnings (field, line, the field probably meant).
    Check(CheckArgs),
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

/// `kumo sdl check`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) file: FileArg,
    /// Refuse the file if anything in it would be ignored (every warning becomes an error).
    #[arg(long)]
    pub(crate) strict: bool,
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
        eprintln!("warning: {}: {warning}", file.file.display());
    }
    Ok(sdl)
}

impl SdlCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            SdlCommand::Check(args) => check(&args.file, args.strict, format),
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

/// A warning as JSON: the shape of an error (`path`, `line`, `message`, `text`).
fn warning_json(w: &kumo_sdl::SdlWarning) -> serde_json::Value {
    json!({ "path": w.path, "line": w.line, "message": w.message, "text": w.to_string() })
}

/// `kumo sdl check`: a one-line verdict; the error (field, line, reason) on failure. With
/// `strict`, a file with warnings fails, each warning printed as an error.
fn check(file: &FileArg, strict: bool, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let text = read_file(&file.file)?;
    let name = file.file.display();
    let parsed = kumo_sdl::parse(&text);
    let refused = strict && parsed.as_ref().is_ok_and(|sdl| !sdl.warnings().is_empty());
    match (parsed, format) {
        (Ok(sdl), OutputFormat::Text) if refused => {
            for warning in sdl.warnings() {
                eprintln!("error: {name}: {}", warning.to_error());
            }
            eprintln!(
                "error: {name}: refused by --strict: {} part(s) of the file would be ignored",
                sdl.warnings().len()
            );
            Ok(ExitCode::FAILURE)
        }
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
            let warnings: Vec<_> = sdl.warnings().iter().map(warning_json).collect();
            let mut out = json!({
                "file": name.to_string(),
                "valid": !refused,
                "version": sdl.version(),
                "groups": sdl.groups().len(),
                "services": sdl.manifest().services().count(),
                "denoms": sdl.denoms(),
                "hash": hex::encode(sdl.manifest_hash()),
                "warnings": warnings,
            });
            if refused {
                let e = sdl.warnings()[0].to_error();
                out["error"] = json!({ "path": e.path, "line": e.line, "message": e.message, "text": e.to_string() });
                print_json(&out)?;
                return Ok(ExitCode::FAILURE);
            }
            print_json(&out)?;
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
