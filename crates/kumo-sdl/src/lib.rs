//! Akash-compatible SDL: deployment files in, group specs and a manifest out.
//!
//! An SDL file (YAML, versions 2.0 and 2.1, exactly as Akash Network reads them) says which
//! services to run, on what resources, where, and at what price. [`parse`] turns it into:
//! - [`Sdl::groups`]: one [`GroupSpec`] per placement group. These go on chain in
//!   `CreateDeployment`, and providers bid on them.
//! - [`Sdl::manifest`]: what the provider runs (images, commands, env, ports). It never goes
//!   on chain; only [`Sdl::manifest_hash`] does, and the provider checks the manifest the
//!   tenant sends against it.
//!
//! A rejected file gets one [`SdlError`] naming the field and line:
//!
//! ```
//! let err = kumo_sdl::parse("version: \"2.0\"\nservices: {}\n").unwrap_err();
//! assert_eq!(err.to_string(), "services: must name at least one service (line 2)");
//! ```
//!
//! Modules, in the order data flows through them: [`yaml`](crate) (text → tree with lines),
//! `input` (tree → typed, shape-checked file), `build` (cross references, group building,
//! limits), [`manifest`] (what providers run) and [`akash`] (Akash's JSON shapes and the hash).

pub mod akash;
mod build;
mod error;
mod input;
pub mod manifest;
mod units;
mod warning;
mod yaml;

pub use build::VM_CAPABILITY;
pub use error::SdlError;
pub use input::valid_denom;
use kumo_types::GroupSpec;
pub use manifest::Manifest;
pub use warning::SdlWarning;
pub use yaml::MAX_INPUT_BYTES;

/// SDL format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SdlVersion {
    /// `version: "2.0"`: one resource unit per service.
    #[serde(rename = "2.0")]
    V2_0,
    /// `version: "2.1"`: services sharing a compute profile share a resource unit.
    #[serde(rename = "2.1")]
    V2_1,
}

/// A parsed, valid SDL file.
#[derive(Debug, Clone)]
pub struct Sdl {
    version: SdlVersion,
    groups: Vec<GroupSpec>,
    manifest: Manifest,
    reclamation_min_window_secs: Option<u64>,
    warnings: Vec<SdlWarning>,
}

/// Parses and validates an SDL file. A file is accepted exactly when Akash's parser accepts
/// it (but see ARCHITECTURE.md for the few, documented differences); what Akash would ignore
/// silently is listed in [`Sdl::warnings`].
///
/// ```
/// let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hello-web.yaml")).unwrap();
/// let with_typo = text.replacen("    image:", "    environment: [DEBUG=1]\n    image:", 1);
/// let sdl = kumo_sdl::parse(&with_typo).unwrap();
/// assert_eq!(sdl.warnings()[0].path, "services.web.environment");
/// assert!(sdl.warnings()[0].message.contains("did you mean `env`?"));
/// assert_eq!(sdl.manifest_hash(), kumo_sdl::parse(&text).unwrap().manifest_hash());
/// assert!(kumo_sdl::parse_strict(&with_typo).is_err());
/// ```
pub fn parse(text: &str) -> Result<Sdl, SdlError> {
    let root = yaml::parse(text).map_err(|e| SdlError::new(e.path, e.line, e.message))?;
    let input = input::read(&root)?;
    let (groups, manifest, build_warnings) = build::build(&input)?;
    let mut warnings = input.warnings;
    warnings.extend(build_warnings);
    Ok(Sdl {
        version: input.version,
        groups,
        manifest,
        reclamation_min_window_secs: input.reclamation.map(|r| r.min_window_secs),
        warnings,
    })
}

/// Like [`parse`], but a file with warnings is refused: the first warning becomes the error.
/// For tenants who want no part of a file ignored (`--strict` in the CLI).
pub fn parse_strict(text: &str) -> Result<Sdl, SdlError> {
    let sdl = parse(text)?;
    match sdl.warnings.first() {
        Some(w) => Err(w.to_error()),
        None => Ok(sdl),
    }
}

impl Sdl {
    /// The file's format version.
    pub fn version(&self) -> SdlVersion {
        self.version
    }

    /// Group specs, one per placement profile, in name order: what goes on chain.
    pub fn groups(&self) -> &[GroupSpec] {
        &self.groups
    }

    /// The manifest: what the provider runs.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest hash that goes on chain (Akash's deployment version).
    pub fn manifest_hash(&self) -> [u8; 32] {
        self.manifest.hash()
    }

    /// Shortest reclamation window a provider must offer, in seconds (`reclamation.min_window`).
    pub fn reclamation_min_window_secs(&self) -> Option<u64> {
        self.reclamation_min_window_secs
    }

    /// Parts of the file that were accepted but have no effect, in file order: keys Akash's
    /// parser ignores (docker-compose's `depends_on`, `environment` for `env`, typos), each with
    /// the field probably meant; persistent volumes no container mounts.
    pub fn warnings(&self) -> &[SdlWarning] {
        &self.warnings
    }

    /// Every denomination the file prices in.
    pub fn denoms(&self) -> Vec<&str> {
        let mut d: Vec<&str> = self
            .groups
            .iter()
            .flat_map(|g| g.resources.iter().map(|u| u.price.denom.as_str()))
            .collect();
        d.sort();
        d.dedup();
        d
    }
}
