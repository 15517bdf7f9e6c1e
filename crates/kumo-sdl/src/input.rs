//! The SDL file as written: typed and shape-checked.
//!
//! This is the schema layer. It turns the YAML tree into [`Input`], refusing wrong types,
//! out-of-range numbers and malformed values, each with the field's path and line. Rules that
//! relate one part of the file to another (a deployment naming a profile that does not exist,
//! say) live in `build`.
//!
//! Field names, defaults and limits are those of Akash's SDL schema and Go parser. Unknown
//! keys follow the Go parser section by section: where it refuses them (the top level, `gpu`,
//! the CPU, GPU and storage `attributes`) they are errors ([`Fields::of`]); everywhere else it
//! drops them silently, and Kumo drops them too, with a warning that names the key, its line
//! and the field probably meant ([`Fields::lenient`]). Kumo's own `vm` block is strict.

use std::collections::BTreeMap;

use kumo_types::{Attribute, Dec, DecCoin, SignedBy};

use crate::SdlVersion;
use crate::error::{Loc, SdlError};
use crate::manifest::{HttpOptions, Proto, VmImage, VmSpec};
use crate::units;
use crate::warning::{self, SdlWarning};
use crate::yaml::{Kind, Node};

type Result<T> = std::result::Result<T, SdlError>;

/// The whole file.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) version: SdlVersion,
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) compute: BTreeMap<String, ComputeProfile>,
    pub(crate) placement: BTreeMap<String, PlacementProfile>,
    /// service → placement → which compute profile and how many.
    pub(crate) deployment: BTreeMap<String, BTreeMap<String, ServiceDeployment>>,
    pub(crate) endpoints: BTreeMap<String, EndpointDecl>,
    pub(crate) reclamation: Option<Reclamation>,
    /// Things accepted but ignored, for the user to see.
    pub(crate) warnings: Vec<SdlWarning>,
}

/// `services.<name>`.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) loc: Loc,
    pub(crate) image: String,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) args: Option<Vec<String>>,
    pub(crate) env: Option<Vec<String>>,
    pub(crate) expose: Vec<Expose>,
    pub(crate) params: Option<Params>,
    pub(crate) credentials: Option<Credentials>,
    /// `runtime: vm` with its `vm:` block (Kumo's extension); `None` for a container.
    pub(crate) vm: Option<VmSpec>,
}

/// `services.<name>.expose[i]`.
#[derive(Debug, Clone)]
pub(crate) struct Expose {
    pub(crate) loc: Loc,
    pub(crate) port: u32,
    /// `as`; 0 when not given (then the port itself is used outside).
    pub(crate) external_port: u32,
    /// The protocol as written (Akash keys IP port collisions on it).
    pub(crate) proto_written: String,
    pub(crate) proto: Proto,
    pub(crate) to: Vec<ExposeTo>,
    pub(crate) accept: Option<Vec<String>>,
    pub(crate) http_options: HttpOptions,
}

/// `services.<name>.expose[i].to[j]`.
#[derive(Debug, Clone)]
pub(crate) struct ExposeTo {
    pub(crate) loc: Loc,
    pub(crate) service: String,
    pub(crate) global: bool,
    pub(crate) ip: String,
}

/// `services.<name>.params`.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// Volume name → where it is mounted.
    pub(crate) storage: BTreeMap<String, StorageParams>,
    pub(crate) permissions: Option<Option<Vec<String>>>,
    pub(crate) tee: Option<String>,
    pub(crate) loc: Loc,
}

/// `services.<name>.params.storage.<volume>`.
#[derive(Debug, Clone)]
pub(crate) struct StorageParams {
    pub(crate) loc: Loc,
    pub(crate) mount: String,
    pub(crate) read_only: bool,
}

/// `services.<name>.credentials`: how to pull a private image.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) host: String,
    pub(crate) email: String,
    pub(crate) username: String,
    pub(crate) password: String,
}

/// `profiles.compute.<name>`.
#[derive(Debug, Clone)]
pub(crate) struct ComputeProfile {
    pub(crate) loc: Loc,
    pub(crate) cpu_millis: u64,
    pub(crate) cpu_attributes: Vec<Attribute>,
    pub(crate) memory_bytes: u64,
    pub(crate) storage: Vec<StorageVolume>,
    pub(crate) gpu_units: u64,
    pub(crate) gpu_attributes: Vec<Attribute>,
    /// Where `cpu.units`, `memory.size` and `gpu.units` are written, for limit errors.
    pub(crate) cpu_units_at: Loc,
    pub(crate) memory_size_at: Loc,
    pub(crate) gpu_units_at: Loc,
}

/// `profiles.compute.<name>.resources.storage[i]`.
#[derive(Debug, Clone)]
pub(crate) struct StorageVolume {
    /// The volume (`…storage[i]`, or `…storage` when written as one mapping).
    pub(crate) loc: Loc,
    /// Its `size` field.
    pub(crate) size_at: Loc,
    pub(crate) name: String,
    pub(crate) bytes: u64,
    /// `class` and `persistent`, normalised and sorted by key.
    pub(crate) attributes: Vec<Attribute>,
}

impl StorageVolume {
    pub(crate) fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.as_str())
    }
}

/// `profiles.placement.<name>`.
#[derive(Debug, Clone)]
pub(crate) struct PlacementProfile {
    pub(crate) loc: Loc,
    pub(crate) attributes: Vec<Attribute>,
    pub(crate) signed_by: SignedBy,
    /// Where `pricing` is written.
    pub(crate) pricing_at: Loc,
    /// compute profile → price per block.
    pub(crate) pricing: BTreeMap<String, Price>,
}

/// `profiles.placement.<name>.pricing.<profile>`: a price and where its parts are written.
#[derive(Debug, Clone)]
pub(crate) struct Price {
    pub(crate) coin: DecCoin,
    pub(crate) denom_at: Loc,
    pub(crate) amount_at: Loc,
}

/// `deployment.<service>.<placement>`.
#[derive(Debug, Clone)]
pub(crate) struct ServiceDeployment {
    pub(crate) loc: Loc,
    pub(crate) profile: String,
    pub(crate) count: u32,
}

/// `endpoints.<name>`.
#[derive(Debug, Clone)]
pub(crate) struct EndpointDecl {
    pub(crate) loc: Loc,
}

/// `reclamation`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reclamation {
    pub(crate) min_window_secs: u64,
}

// ---------------------------------------------------------------------------------------------
// Reading helpers.

/// The entries of a mapping, checked against the fields it may have.
struct Fields<'a> {
    loc: Loc,
    entries: Vec<(&'a str, usize, &'a Node)>,
}

impl<'a> Fields<'a> {
    /// Reads `node` as a mapping whose keys are among `allowed` (any keys if `allowed` is None).
    fn of(node: &'a Node, path: &str, allowed: Option<&[&str]>) -> Result<Fields<'a>> {
        let loc = Loc::new(path, node.line);
        let Kind::Map(raw) = &node.kind else {
            return Err(loc.err(format!("expected a mapping, found {}", node.type_name())));
        };
        let mut entries = Vec::with_capacity(raw.len());
        for (key, value) in raw {
            let Kind::Scalar { value: name, .. } = &key.kind else {
                return Err(SdlError::new(
                    path,
                    key.line,
                    "mapping keys must be plain names",
                ));
            };
            if let Some(allowed) = allowed
                && !allowed.contains(&name.as_str())
            {
                return Err(warning::refused_key(path, name, key.line, allowed));
            }
            entries.push((name.as_str(), key.line, value));
        }
        Ok(Fields { loc, entries })
    }

    /// Reads `node` as a mapping with the fields `known`, where Akash's parser drops other
    /// keys without a word (its sections decoded without strict field checks): each other key
    /// is left out, unread, with a warning.
    fn lenient(
        node: &'a Node,
        path: &str,
        known: &[&str],
        warnings: &mut Vec<SdlWarning>,
    ) -> Result<Fields<'a>> {
        let mut fields = Fields::of(node, path, None)?;
        fields.entries.retain(|(name, line, _)| {
            let keep = known.contains(name);
            if !keep {
                warnings.push(warning::ignored_key(path, name, *line, known));
            }
            keep
        });
        Ok(fields)
    }

    /// Like [`Fields::lenient`], but YAML null counts as an empty mapping.
    fn lenient_or_empty(
        node: &'a Node,
        path: &str,
        known: &[&str],
        warnings: &mut Vec<SdlWarning>,
    ) -> Result<Fields<'a>> {
        if node.is_null() {
            return Ok(Fields {
                loc: Loc::new(path, node.line),
                entries: Vec::new(),
            });
        }
        Fields::lenient(node, path, known, warnings)
    }

    /// Like [`Fields::of`], but YAML null counts as an empty mapping.
    fn of_or_empty(node: &'a Node, path: &str, allowed: Option<&[&str]>) -> Result<Fields<'a>> {
        if node.is_null() {
            return Ok(Fields {
                loc: Loc::new(path, node.line),
                entries: Vec::new(),
            });
        }
        Fields::of(node, path, allowed)
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    /// The field, or an error saying it is required.
    fn require(&self, key: &str, hint: &str) -> Result<&'a Node> {
        self.get(key).ok_or_else(|| {
            SdlError::new(
                self.loc.field(key),
                self.loc.line,
                format!("is required{hint}"),
            )
        })
    }

    fn path(&self, key: &str) -> String {
        self.loc.field(key)
    }

    /// The line a key is written on (the mapping's line if absent).
    fn key_line(&self, key: &str) -> usize {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or(self.loc.line, |(_, line, _)| *line)
    }

    /// Entries as (name, path, node), in document order.
    fn iter(&self) -> impl Iterator<Item = (&'a str, String, &'a Node)> + '_ {
        self.entries
            .iter()
            .map(|(k, _, v)| (*k, self.loc.field(k), *v))
    }
}

fn scalar<'a>(node: &'a Node, path: &str, what: &str) -> Result<(&'a str, bool)> {
    match &node.kind {
        Kind::Scalar { value, plain } if !node.is_null() => Ok((value.as_str(), *plain)),
        _ => Err(SdlError::new(
            path,
            node.line,
            format!("expected {what}, found {}", node.type_name()),
        )),
    }
}

/// Text. Like Akash's parser, an unquoted number or boolean is taken as its text.
fn text(node: &Node, path: &str) -> Result<String> {
    scalar(node, path, "text").map(|(v, _)| v.to_string())
}

/// Text, or the empty string for null.
fn text_or_empty(node: &Node, path: &str) -> Result<String> {
    if node.is_null() {
        return Ok(String::new());
    }
    text(node, path)
}

fn is_integer_syntax(value: &str) -> bool {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An unquoted whole number within `min..=max`.
fn uint(node: &Node, path: &str, min: u64, max: u64) -> Result<u64> {
    let (value, plain) = scalar(node, path, "a whole number")?;
    let range = || format!("{value} is outside {min}-{max}");
    if !plain || !is_integer_syntax(value) {
        return Err(SdlError::new(
            path,
            node.line,
            format!("expected a whole number, found {value:?}"),
        ));
    }
    if value.starts_with('-') {
        return Err(SdlError::new(path, node.line, range()));
    }
    let n: u64 = value
        .trim_start_matches('+')
        .parse()
        .map_err(|_| SdlError::new(path, node.line, range()))?;
    if n < min || n > max {
        return Err(SdlError::new(path, node.line, range()));
    }
    Ok(n)
}

/// A boolean (`true`/`false`, and the YAML 1.1 `yes`/`no`/`on`/`off` Go's decoder accepts).
fn boolean(node: &Node, path: &str) -> Result<bool> {
    let (value, plain) = scalar(node, path, "true or false")?;
    match (value, plain) {
        ("true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON", true) => Ok(true),
        ("false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF", true) => {
            Ok(false)
        }
        _ => Err(SdlError::new(
            path,
            node.line,
            format!("expected true or false, found {value:?}"),
        )),
    }
}

/// A list of text, or null (kept distinct from an empty list, as Akash renders them apart).
fn text_list_or_null(node: &Node, path: &str) -> Result<Option<Vec<String>>> {
    if node.is_null() {
        return Ok(None);
    }
    let Kind::Seq(items) = &node.kind else {
        return Err(SdlError::new(
            path,
            node.line,
            format!("expected a list of text, found {}", node.type_name()),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| text(item, &format!("{path}[{i}]")))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The line of item `i` of a list node (the list's own line if it is not a list).
fn item_line(node: &Node, i: usize) -> usize {
    match &node.kind {
        Kind::Seq(items) => items.get(i).map_or(node.line, |n| n.line),
        _ => node.line,
    }
}

fn seq<'a>(node: &'a Node, path: &str, what: &str) -> Result<&'a [Node]> {
    match &node.kind {
        Kind::Seq(items) => Ok(items),
        _ if node.is_null() => Ok(&[]),
        _ => Err(SdlError::new(
            path,
            node.line,
            format!("expected a list of {what}, found {}", node.type_name()),
        )),
    }
}

/// A mapping of names to text values (attributes), sorted by key.
fn attribute_map(node: &Node, path: &str) -> Result<Vec<Attribute>> {
    let fields = Fields::of_or_empty(node, path, None)?;
    let mut attrs = Vec::new();
    for (key, path, value) in fields.iter() {
        attrs.push(Attribute::new(key, text(value, &path)?));
    }
    attrs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(attrs)
}

// ---------------------------------------------------------------------------------------------
// The file.

const TOP_FIELDS: &[&str] = &[
    "version",
    "include",
    "services",
    "profiles",
    "deployment",
    "endpoints",
    "reclamation",
];

pub(crate) fn read(root: &Node) -> Result<Input> {
    let top = Fields::of(root, "", Some(TOP_FIELDS)).map_err(|e| {
        if e.path.is_empty() {
            SdlError::new("", e.line.unwrap_or(1), "an SDL file must be a YAML mapping with `version`, `services`, `profiles` and `deployment`")
        } else {
            e
        }
    })?;
    let version_node = top.require("version", " (\"2.0\" or \"2.1\")")?;
    let version_text = text(version_node, "version")?;
    let version = match version_text.as_str() {
        "2.0" | "2" | "2.0.0" => SdlVersion::V2_0,
        "2.1" | "2.1.0" => SdlVersion::V2_1,
        other => {
            return Err(SdlError::new(
                "version",
                version_node.line,
                format!("unsupported version {other:?} (supported: \"2.0\", \"2.1\")"),
            ));
        }
    };
    if let Some(include) = top.get("include") {
        text_list_or_null(include, "include")?;
    }

    let mut warnings = Vec::new();
    let services_node = top.require("services", "")?;
    let mut services = BTreeMap::new();
    let service_fields = Fields::of(services_node, "services", None)?;
    if service_fields.entries.is_empty() {
        return Err(SdlError::new(
            "services",
            services_node.line,
            "must name at least one service",
        ));
    }
    for (name, path, node) in service_fields.iter() {
        services.insert(
            name.to_string(),
            read_service(node, &path, version, &mut warnings)?,
        );
    }

    let profiles = Fields::lenient(
        top.require("profiles", "")?,
        "profiles",
        &["compute", "placement"],
        &mut warnings,
    )?;
    let mut compute = BTreeMap::new();
    let compute_fields = Fields::of(
        profiles.require("compute", "")?,
        &profiles.path("compute"),
        None,
    )?;
    for (name, path, node) in compute_fields.iter() {
        compute.insert(name.to_string(), read_compute(node, &path, &mut warnings)?);
    }
    let mut placement = BTreeMap::new();
    let placement_fields = Fields::of(
        profiles.require("placement", "")?,
        &profiles.path("placement"),
        None,
    )?;
    for (name, path, node) in placement_fields.iter() {
        placement.insert(
            name.to_string(),
            read_placement(node, &path, &mut warnings)?,
        );
    }

    let mut deployment = BTreeMap::new();
    let deployment_fields = Fields::of(top.require("deployment", "")?, "deployment", None)?;
    for (service, path, node) in deployment_fields.iter() {
        let mut per_placement = BTreeMap::new();
        for (placement_name, path, node) in Fields::of(node, &path, None)?.iter() {
            let fields = Fields::lenient(node, &path, &["profile", "count"], &mut warnings)?;
            let profile_node = fields.require("profile", " (the compute profile to run)")?;
            let count_node = fields.require("count", " (how many instances, at least 1)")?;
            per_placement.insert(
                placement_name.to_string(),
                ServiceDeployment {
                    loc: Loc::new(path.clone(), node.line),
                    profile: text(profile_node, &fields.path("profile"))?,
                    count: uint(count_node, &fields.path("count"), 1, u64::from(u32::MAX))? as u32,
                },
            );
        }
        deployment.insert(service.to_string(), per_placement);
    }

    let mut endpoints = BTreeMap::new();
    if let Some(node) = top.get("endpoints") {
        for (name, path, node) in Fields::of_or_empty(node, "endpoints", None)?.iter() {
            if !valid_endpoint_name(name) {
                return Err(SdlError::new(
                    path,
                    node.line,
                    "is not a valid endpoint name (lowercase letters first, then lowercase letters, digits, '-' or '_'; at least 2 characters)",
                ));
            }
            let fields = Fields::lenient(node, &path, &["kind"], &mut warnings)?;
            let kind_path = fields.path("kind");
            let kind = text(
                fields.require("kind", " (the only kind is `ip`)")?,
                &kind_path,
            )?;
            if kind != "ip" {
                return Err(SdlError::new(
                    kind_path,
                    node.line,
                    format!("unknown endpoint kind {kind:?} (the only kind is `ip`)"),
                ));
            }
            endpoints.insert(
                name.to_string(),
                EndpointDecl {
                    loc: Loc::new(path, node.line),
                },
            );
        }
    }

    let reclamation = match top.get("reclamation") {
        None => None,
        Some(node) => Some(read_reclamation(node, &mut warnings)?),
    };

    Ok(Input {
        version,
        services,
        compute,
        placement,
        deployment,
        endpoints,
        reclamation,
        warnings,
    })
}

/// `^[a-z]+[-_0-9a-z]+$`, as Akash's schema.
fn valid_endpoint_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_lowercase()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

fn read_reclamation(node: &Node, warnings: &mut Vec<SdlWarning>) -> Result<Reclamation> {
    let fields = Fields::lenient(node, "reclamation", &["min_window"], warnings)?;
    let path = fields.path("min_window");
    let window_node = fields.require("min_window", " (e.g. \"24h\")")?;
    let window = text(window_node, &path)?;
    let bad = || {
        SdlError::new(
            &path,
            window_node.line,
            format!("{window:?} is not a window: write a whole number of s, m or h, e.g. \"24h\""),
        )
    };
    let unit = match window.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        _ => return Err(bad()),
    };
    let digits = &window[..window.len() - 1];
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(Reclamation {
        min_window_secs: n.checked_mul(unit).ok_or_else(bad)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Services.

const SERVICE_FIELDS: &[&str] = &[
    "image",
    "command",
    "args",
    "env",
    "expose",
    "dependencies",
    "params",
    "credentials",
    // Kumo's VM extension (docs/sdl-extensions.md).
    "runtime",
    "vm",
];

fn read_service(
    node: &Node,
    path: &str,
    version: SdlVersion,
    warnings: &mut Vec<SdlWarning>,
) -> Result<Service> {
    let fields = Fields::lenient(node, path, SERVICE_FIELDS, warnings)?;
    let vm = read_runtime(&fields)?;
    let image = match &vm {
        // A VM boots the disk image of its `vm:` block; that URL stands in as its image.
        Some(vm) => vm.image.url.clone(),
        None => {
            let image_path = fields.path("image");
            let image_node =
                fields.require("image", " (the container image to run, e.g. nginx:1.27)")?;
            let image = text_or_empty(image_node, &image_path)?;
            if image.trim().is_empty() {
                return Err(SdlError::new(
                    image_path,
                    image_node.line,
                    "is empty: name the container image to run, e.g. nginx:1.27",
                ));
            }
            image
        }
    };
    let list = |key: &str| match fields.get(key) {
        Some(n) => text_list_or_null(n, &fields.path(key)),
        None => Ok(None),
    };
    let command = list("command")?;
    let args = list("args")?;
    let env = list("env")?;
    if let Some(env) = &env {
        for (i, var) in env.iter().enumerate() {
            let name = var.split('=').next().unwrap_or_default();
            if !valid_env_name(name) {
                return Err(SdlError::new(
                    format!("{}[{i}]", fields.path("env")),
                    fields.get("env").map_or(0, |n| item_line(n, i)),
                    format!(
                        "{name:?} is not a valid environment variable name (write NAME=value; the name uses letters, digits, '_', '-' or '.', not starting with a digit)"
                    ),
                ));
            }
        }
    }

    let mut expose = Vec::new();
    if let Some(node) = fields.get("expose") {
        let expose_path = fields.path("expose");
        for (i, item) in seq(node, &expose_path, "ports")?.iter().enumerate() {
            expose.push(read_expose(item, &format!("{expose_path}[{i}]"), warnings)?);
        }
    }
    if let Some(node) = fields.get("dependencies") {
        let dep_path = fields.path("dependencies");
        for (i, item) in seq(node, &dep_path, "dependencies")?.iter().enumerate() {
            let dep = Fields::lenient(item, &format!("{dep_path}[{i}]"), &["service"], warnings)?;
            if let Some(s) = dep.get("service") {
                text_or_empty(s, &dep.path("service"))?;
            }
        }
    }
    let params = match fields.get("params") {
        None => None,
        Some(node) => Some(read_params(node, &fields.path("params"), warnings)?),
    };
    let credentials = match fields.get("credentials") {
        None => None,
        Some(node) => Some(read_credentials(
            node,
            &fields.path("credentials"),
            version,
            warnings,
        )?),
    };
    Ok(Service {
        loc: Loc::new(path, node.line),
        image,
        command,
        args,
        env,
        expose,
        params,
        credentials,
        vm,
    })
}

/// Service fields that mean nothing for a VM (it boots a disk image; settings go in
/// `vm.user_data`), refused so that a tenant does not think they took effect.
const CONTAINER_ONLY_FIELDS: &[&str] =
    &["image", "command", "args", "env", "credentials", "params"];

/// The largest `vm.user_data` accepted (cloud-init's seed is read in one go by the guest).
pub(crate) const MAX_USER_DATA: usize = 64 * 1024;

/// `runtime` and `vm` of a service: `None` for a container (no `runtime`, or `runtime:
/// container`), the VM's settings for `runtime: vm`.
fn read_runtime(fields: &Fields<'_>) -> Result<Option<VmSpec>> {
    let runtime = match fields.get("runtime") {
        None => None,
        Some(node) => {
            let path = fields.path("runtime");
            let value = text(node, &path)?;
            match value.as_str() {
                "container" => None,
                "vm" => Some(node),
                other => {
                    return Err(SdlError::new(
                        path,
                        node.line,
                        format!("unknown runtime {other:?} (expected `container` or `vm`)"),
                    ));
                }
            }
        }
    };
    let vm_node = fields.get("vm");
    let vm_node = match (runtime, vm_node) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(SdlError::new(
                fields.path("vm"),
                fields.key_line("vm"),
                "is only read for `runtime: vm`: add `runtime: vm` to the service, or remove the block",
            ));
        }
        (Some(node), None) => {
            return Err(SdlError::new(
                fields.path("vm"),
                node.line,
                "is required for `runtime: vm` (the disk image by url and sha256, and ssh_keys)",
            ));
        }
        (Some(_), Some(vm)) => vm,
    };
    for key in CONTAINER_ONLY_FIELDS {
        if fields.get(key).is_some() {
            return Err(SdlError::new(
                fields.path(key),
                fields.key_line(key),
                "does not apply to `runtime: vm` (a VM boots vm.image; configure the guest with vm.user_data)",
            ));
        }
    }
    read_vm(vm_node, &fields.path("vm")).map(Some)
}

fn read_vm(node: &Node, path: &str) -> Result<VmSpec> {
    let fields = Fields::of(
        node,
        path,
        Some(&["image", "ssh_keys", "user", "user_data"]),
    )?;

    let image_node = fields.require("image", " (`image: {url: https://…, sha256: …}`)")?;
    let image = Fields::of(image_node, &fields.path("image"), Some(&["url", "sha256"]))?;
    let url_path = image.path("url");
    let url_node = image.require("url", " (where the provider downloads the disk image)")?;
    let url = text(url_node, &url_path)?.trim().to_string();
    if !valid_image_url(&url) {
        return Err(SdlError::new(
            url_path,
            url_node.line,
            format!("{url:?} is not an http:// or https:// URL of a disk image (qcow2 or raw)"),
        ));
    }
    let sha_path = image.path("sha256");
    let sha_node = image.require(
        "sha256",
        " (the image's SHA-256, so the provider can verify it)",
    )?;
    let sha256 = text(sha_node, &sha_path)?.trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SdlError::new(
            sha_path,
            sha_node.line,
            "is not a SHA-256: write the 64 hex digits `sha256sum` prints for the image",
        ));
    }

    let keys_path = fields.path("ssh_keys");
    let keys_node = fields.require("ssh_keys", " (at least one OpenSSH public key)")?;
    let mut ssh_keys = Vec::new();
    for (i, item) in seq(keys_node, &keys_path, "OpenSSH public keys")?
        .iter()
        .enumerate()
    {
        let key_path = format!("{keys_path}[{i}]");
        let key = text(item, &key_path)?.trim().to_string();
        if let Err(why) = check_ssh_key(&key) {
            return Err(SdlError::new(key_path, item.line, why));
        }
        ssh_keys.push(key);
    }
    if ssh_keys.is_empty() {
        return Err(SdlError::new(
            keys_path,
            keys_node.line,
            "must list at least one OpenSSH public key (the line in ~/.ssh/id_ed25519.pub), or nobody can log in",
        ));
    }

    let user = match fields.get("user") {
        None => crate::manifest::DEFAULT_VM_USER.to_string(),
        Some(node) => {
            let path = fields.path("user");
            let user = text(node, &path)?;
            if !valid_user_name(&user) {
                return Err(SdlError::new(
                    path,
                    node.line,
                    format!(
                        "{user:?} is not a usable login name (lowercase letters, digits, '_' or '-', starting with a letter or '_', at most 32 characters, not root)"
                    ),
                ));
            }
            user
        }
    };

    let user_data = match fields.get("user_data") {
        None => None,
        Some(node) => {
            let path = fields.path("user_data");
            let data = text(node, &path)?;
            if data.len() > MAX_USER_DATA {
                return Err(SdlError::new(
                    path,
                    node.line,
                    format!(
                        "is {} bytes; at most {MAX_USER_DATA} are accepted (fetch larger setup scripts from the guest)",
                        data.len()
                    ),
                ));
            }
            Some(data)
        }
    };

    Ok(VmSpec {
        image: VmImage { url, sha256 },
        ssh_keys,
        user,
        user_data,
    })
}

/// `http://host/…` or `https://host/…`, no spaces.
fn valid_image_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split('/').next().unwrap_or_default();
            !host.is_empty() && !url.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// A Linux login name the guest's `useradd` takes, other than root.
fn valid_user_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 32
        && name != "root"
        && matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// Key types OpenSSH accepts in `authorized_keys`.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Checks one `authorized_keys` line (`TYPE BASE64 [comment]`): a known type, and a key blob
/// that decodes and names the same type (what a truncated or mis-pasted key fails).
fn check_ssh_key(line: &str) -> std::result::Result<(), String> {
    use base64::Engine as _;
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(
            "is not an OpenSSH public key: write the whole line of the .pub file (`ssh-ed25519 AAAA… comment`)"
                .into(),
        );
    };
    if line.contains(['\n', '\r']) {
        return Err("must be one line: list each key as its own item".into());
    }
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(format!(
            "unknown key type {kind:?} (expected one of: {}); a private key does not belong here",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let bad = || {
        format!(
            "the {kind} key data is damaged (not the base64 ssh-keygen writes): copy the .pub line again"
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| bad())?;
    // The blob starts with the key type as an SSH string: a big-endian u32 length, then bytes.
    let named = bytes
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| bytes.get(4..4 + len));
    if named != Some(kind.as_bytes()) {
        return Err(bad());
    }
    Ok(())
}

/// Kubernetes' rule for environment variable names: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

const EXPOSE_FIELDS: &[&str] = &["port", "as", "proto", "to", "accept", "http_options"];
/// A destination's fields. Akash's decoder also reads `http_options` here but never uses it.
const EXPOSE_TO_FIELDS: &[&str] = &["service", "global", "ip", "http_options"];

fn read_expose(node: &Node, path: &str, warnings: &mut Vec<SdlWarning>) -> Result<Expose> {
    let fields = Fields::lenient(node, path, EXPOSE_FIELDS, warnings)?;
    let port = uint(
        fields.require("port", " (the port the container listens on)")?,
        &fields.path("port"),
        1,
        65535,
    )? as u32;
    let external_port = match fields.get("as") {
        Some(n) if !n.is_null() => uint(n, &fields.path("as"), 1, 65535)? as u32,
        _ => 0,
    };
    let (proto_written, proto) = match fields.get("proto") {
        None => (String::new(), Proto::Tcp),
        Some(n) => {
            let p = text_or_empty(n, &fields.path("proto"))?;
            let proto = match p.to_ascii_uppercase().as_str() {
                "TCP" | "" => Proto::Tcp,
                "UDP" => Proto::Udp,
                _ => {
                    return Err(SdlError::new(
                        fields.path("proto"),
                        n.line,
                        format!("unsupported protocol {p:?} (use tcp or udp)"),
                    ));
                }
            };
            (p, proto)
        }
    };
    let mut to = Vec::new();
    if let Some(node) = fields.get("to") {
        let to_path = fields.path("to");
        for (i, item) in seq(node, &to_path, "destinations")?.iter().enumerate() {
            let item_path = format!("{to_path}[{i}]");
            let f = Fields::lenient(item, &item_path, EXPOSE_TO_FIELDS, warnings)?;
            if let Some(n) = f.get("http_options") {
                let at = Loc::new(f.path("http_options"), f.key_line("http_options"));
                check_ignored_http_options(n, &at, path, warnings)?;
            }
            let service = match f.get("service") {
                Some(n) => text_or_empty(n, &f.path("service"))?,
                None => String::new(),
            };
            let global = match f.get("global") {
                Some(n) if !n.is_null() => boolean(n, &f.path("global"))?,
                _ => false,
            };
            let ip = match f.get("ip") {
                Some(n) => text_or_empty(n, &f.path("ip"))?,
                None => String::new(),
            };
            to.push(ExposeTo {
                loc: Loc::new(item_path, item.line),
                service,
                global,
                ip,
            });
        }
    }
    let accept = match fields.get("accept") {
        Some(n) => {
            let accept_path = fields.path("accept");
            let hosts = text_list_or_null(n, &accept_path)?;
            for (i, host) in hosts.iter().flatten().enumerate() {
                if !valid_hostname(host) {
                    return Err(SdlError::new(
                        format!("{accept_path}[{i}]"),
                        item_line(n, i),
                        format!(
                            "{host:?} is not a valid host name (lowercase DNS name, e.g. app.example.com)"
                        ),
                    ));
                }
            }
            hosts
        }
        None => None,
    };
    let http_options = match fields.get("http_options") {
        Some(n) => read_http_options(n, &fields.path("http_options"), warnings)?,
        None => read_http_options(
            &Node {
                line: node.line,
                kind: Kind::Map(Vec::new()),
            },
            path,
            warnings,
        )?,
    };
    Ok(Expose {
        loc: Loc::new(path, node.line),
        port,
        external_port,
        proto_written,
        proto,
        to,
        accept,
        http_options,
    })
}

/// A DNS-1123 subdomain of at most 253 characters, as Kubernetes (and so Akash) requires.
pub(crate) fn valid_hostname(host: &str) -> bool {
    host.len() <= 253
        && !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

const HTTP_FIELDS: &[&str] = &[
    "max_body_size",
    "proxy_buffer_size",
    "read_timeout",
    "send_timeout",
    "next_tries",
    "next_timeout",
    "next_cases",
];
const NEXT_CASES: &[&str] = &[
    "error", "timeout", "500", "502", "503", "504", "403", "404", "429", "off",
];

fn read_http_options(
    node: &Node,
    path: &str,
    warnings: &mut Vec<SdlWarning>,
) -> Result<HttpOptions> {
    let fields = Fields::lenient_or_empty(node, path, HTTP_FIELDS, warnings)?;
    let num = |key: &str, max: u64, default: u32| -> Result<u32> {
        match fields.get(key) {
            Some(n) if !n.is_null() => {
                let v = uint(n, &fields.path(key), 0, max)? as u32;
                Ok(if v == 0 { default } else { v })
            }
            _ => Ok(default),
        }
    };
    let mut next_cases = Vec::new();
    if let Some(n) = fields.get("next_cases") {
        let cases_path = fields.path("next_cases");
        for (i, item) in seq(n, &cases_path, "cases")?.iter().enumerate() {
            let case = text(item, &format!("{cases_path}[{i}]"))?;
            if !NEXT_CASES.contains(&case.as_str()) {
                return Err(SdlError::new(
                    format!("{cases_path}[{i}]"),
                    item.line,
                    format!(
                        "unknown case {case:?} (expected one of: {})",
                        NEXT_CASES.join(", ")
                    ),
                ));
            }
            next_cases.push(case);
        }
        if next_cases.iter().any(|c| c == "off") && next_cases.len() > 1 {
            return Err(SdlError::new(
                cases_path,
                n.line,
                "`off` must be the only case when given",
            ));
        }
    }
    if next_cases.is_empty() {
        next_cases = vec!["error".into(), "timeout".into()];
    }
    Ok(HttpOptions {
        max_body_size: num("max_body_size", 104_857_600, 1_048_576)?,
        proxy_buffer_size: num("proxy_buffer_size", 1_048_576, 0)?,
        read_timeout: num("read_timeout", 60_000, 60_000)?,
        send_timeout: num("send_timeout", 60_000, 60_000)?,
        next_tries: num("next_tries", u64::from(u32::MAX), 3)?,
        next_timeout: num("next_timeout", u64::from(u32::MAX), 0)?,
        next_cases,
    })
}

/// `expose[i].to[j].http_options`: Akash's decoder reads it (so a value of the wrong type fails
/// there) but never uses it; the options that apply are the port's own `http_options`.
fn check_ignored_http_options(
    node: &Node,
    at: &Loc,
    expose_path: &str,
    warnings: &mut Vec<SdlWarning>,
) -> Result<()> {
    let fields = Fields::lenient_or_empty(node, &at.path, HTTP_FIELDS, warnings)?;
    for (key, field_path, value) in fields.iter() {
        if value.is_null() {
            continue;
        }
        if key == "next_cases" {
            text_list_or_null(value, &field_path)?;
        } else {
            uint(value, &field_path, 0, u64::from(u32::MAX))?;
        }
    }
    warnings.push(SdlWarning::new(
        at.path.clone(),
        at.line,
        format!(
            "ignored (Akash ignores it too): HTTP options apply to the port, not to one destination; did you mean `{expose_path}.http_options`?"
        ),
    ));
    Ok(())
}

fn read_params(node: &Node, path: &str, warnings: &mut Vec<SdlWarning>) -> Result<Params> {
    let fields =
        Fields::lenient_or_empty(node, path, &["storage", "permissions", "tee"], warnings)?;
    let mut storage = BTreeMap::new();
    if let Some(n) = fields.get("storage") {
        for (volume, vpath, vnode) in Fields::of_or_empty(n, &fields.path("storage"), None)?.iter()
        {
            let v = Fields::lenient_or_empty(vnode, &vpath, &["mount", "readOnly"], warnings)?;
            let mount = match v.get("mount") {
                Some(m) => text_or_empty(m, &v.path("mount"))?,
                None => String::new(),
            };
            let read_only = match v.get("readOnly") {
                Some(m) if !m.is_null() => boolean(m, &v.path("readOnly"))?,
                _ => false,
            };
            storage.insert(
                volume.to_string(),
                StorageParams {
                    loc: Loc::new(vpath, vnode.line),
                    mount,
                    read_only,
                },
            );
        }
    }
    let permissions = match fields.get("permissions") {
        None => None,
        Some(n) => {
            let p = Fields::lenient_or_empty(n, &fields.path("permissions"), &["read"], warnings)?;
            match p.get("read") {
                None => Some(None),
                Some(r) => {
                    let read_path = p.path("read");
                    let read = text_list_or_null(r, &read_path)?;
                    for (i, item) in read.iter().flatten().enumerate() {
                        if !matches!(item.as_str(), "deployment" | "logs" | "events") {
                            return Err(SdlError::new(
                                format!("{read_path}[{i}]"),
                                r.line,
                                format!(
                                    "unknown permission {item:?} (expected deployment, logs or events)"
                                ),
                            ));
                        }
                    }
                    Some(read)
                }
            }
        }
    };
    let tee = match fields.get("tee") {
        None => None,
        Some(n) => {
            let tee = text_or_empty(n, &fields.path("tee"))?;
            if !matches!(tee.as_str(), "cpu" | "cpu-gpu") {
                return Err(SdlError::new(
                    fields.path("tee"),
                    n.line,
                    format!("unsupported tee type {tee:?} (allowed: cpu, cpu-gpu)"),
                ));
            }
            Some(tee)
        }
    };
    Ok(Params {
        storage,
        permissions,
        tee,
        loc: Loc::new(path, node.line),
    })
}

fn read_credentials(
    node: &Node,
    path: &str,
    version: SdlVersion,
    warnings: &mut Vec<SdlWarning>,
) -> Result<Credentials> {
    let fields = Fields::lenient(
        node,
        path,
        &["host", "email", "username", "password"],
        warnings,
    )?;
    let get = |key: &str, min_len: usize, required: bool| -> Result<String> {
        let value = match fields.get(key) {
            Some(n) => text_or_empty(n, &fields.path(key))?,
            None => String::new(),
        };
        let line = fields.get(key).map_or(node.line, |n| n.line);
        if required && value.trim().is_empty() {
            return Err(SdlError::new(
                fields.path(key),
                line,
                "is required to pull a private image",
            ));
        }
        if !value.is_empty() && value.chars().count() < min_len {
            return Err(SdlError::new(
                fields.path(key),
                line,
                format!("is too short (at least {min_len} characters)"),
            ));
        }
        Ok(value)
    };
    let host = get("host", 1, true)?;
    let username = get("username", 1, true)?;
    let password = get("password", 6, true)?;
    let email = get("email", 5, false)?;
    // Akash's v2.0 parser drops the e-mail and keeps values untrimmed; v2.1 trims them.
    Ok(match version {
        SdlVersion::V2_0 => Credentials {
            host,
            email: String::new(),
            username,
            password,
        },
        SdlVersion::V2_1 => Credentials {
            host: host.trim().to_string(),
            email: email.trim().to_string(),
            username: username.trim().to_string(),
            password: password.trim().to_string(),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Profiles.

fn read_compute(node: &Node, path: &str, warnings: &mut Vec<SdlWarning>) -> Result<ComputeProfile> {
    let outer = Fields::lenient(node, path, &["resources"], warnings)?;
    let resources_node = outer.require("resources", " (cpu, memory and storage)")?;
    let fields = Fields::lenient(
        resources_node,
        &outer.path("resources"),
        &["cpu", "memory", "storage", "gpu"],
        warnings,
    )?;

    let cpu = Fields::lenient(
        fields.require("cpu", " (e.g. `cpu: {units: 0.5}`)")?,
        &fields.path("cpu"),
        &["units", "attributes"],
        warnings,
    )?;
    let units_path = cpu.path("units");
    let units_node = cpu.require("units", " (e.g. 0.5 or 500m)")?;
    let (units_text, _) = scalar(units_node, &units_path, "a CPU amount such as 0.5 or 500m")?;
    let cpu_millis =
        units::parse_cpu(units_text).map_err(|e| SdlError::new(&units_path, units_node.line, e))?;
    let cpu_units_at = Loc::new(&units_path, units_node.line);
    let mut cpu_attributes = Vec::new();
    if let Some(n) = cpu.get("attributes") {
        let attr = Fields::of_or_empty(n, &cpu.path("attributes"), Some(&["arch"]))?;
        for (key, apath, value) in attr.iter() {
            cpu_attributes.push(Attribute::new(key, text(value, &apath)?));
        }
    }

    // Akash's memory section has an `attributes` field that its decoder skips (`yaml:"-"`),
    // so it is ignored like any unknown key.
    let memory = Fields::lenient(
        fields.require("memory", " (e.g. `memory: {size: 512Mi}`)")?,
        &fields.path("memory"),
        &["size"],
        warnings,
    )?;
    let size_path = memory.path("size");
    let size_node = memory.require("size", " (e.g. 512Mi)")?;
    let memory_bytes = units::parse_size(scalar(size_node, &size_path, "a size such as 512Mi")?.0)
        .map_err(|e| SdlError::new(&size_path, size_node.line, e))?;
    let memory_size_at = Loc::new(&size_path, size_node.line);

    let storage_path = fields.path("storage");
    let storage_node = fields.require("storage", " (e.g. `storage: {size: 1Gi}`)")?;
    let storage = read_storage(storage_node, &storage_path, warnings)?;

    let (gpu_units, gpu_attributes) = match fields.get("gpu") {
        None => (0, Vec::new()),
        Some(n) => read_gpu(n, &fields.path("gpu"), warnings)?,
    };
    let gpu_units_at = match fields.get("gpu") {
        Some(n) => {
            let gpu = Fields::of(n, &fields.path("gpu"), None)?;
            Loc::new(gpu.path("units"), gpu.key_line("units"))
        }
        None => Loc::new(fields.path("gpu"), fields.loc.line),
    };

    Ok(ComputeProfile {
        loc: Loc::new(path, node.line),
        cpu_millis,
        cpu_attributes,
        memory_bytes,
        storage,
        gpu_units,
        gpu_attributes,
        cpu_units_at,
        memory_size_at,
        gpu_units_at,
    })
}

fn read_storage(
    node: &Node,
    path: &str,
    warnings: &mut Vec<SdlWarning>,
) -> Result<Vec<StorageVolume>> {
    let mut volumes = Vec::new();
    match &node.kind {
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                volumes.push(read_volume(item, &format!("{path}[{i}]"), true, warnings)?);
            }
        }
        Kind::Map(_) => volumes.push(read_volume(node, path, false, warnings)?),
        _ => {
            return Err(SdlError::new(
                path,
                node.line,
                format!(
                    "expected a volume or a list of volumes, found {}",
                    node.type_name()
                ),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for volume in &volumes {
        if !seen.insert(volume.name.as_str()) {
            return Err(SdlError::new(
                path,
                node.line,
                format!(
                    "volume name {:?} is used twice (an unnamed volume is called \"default\")",
                    volume.name
                ),
            ));
        }
    }
    sort_volumes(&mut volumes);
    Ok(volumes)
}

/// Akash's volume order: smaller first; then by class presence and name; then non-persistent
/// first; then by name. (Stable, as Go's sort.SliceStable.)
fn sort_volumes(volumes: &mut [StorageVolume]) {
    // Akash's comparator reads the `persistent` attribute where it means `class`; we keep its
    // exact behaviour, since the order ends up on chain.
    let less = |a: &StorageVolume, b: &StorageVolume| -> bool {
        if a.bytes != b.bytes {
            return a.bytes < b.bytes;
        }
        let ai = a.attribute("persistent").filter(|v| !v.is_empty());
        let bi = b.attribute("persistent").filter(|v| !v.is_empty());
        match (ai, bi) {
            (None, Some(_)) => return true,
            (Some(x), Some(y)) if x < y => return true,
            (Some(_), None) => return false,
            _ => {}
        }
        let ap = a.attribute("persistent") == Some("true");
        let bp = b.attribute("persistent") == Some("true");
        if !ap {
            return true;
        } else if !bp {
            return false;
        }
        a.name < b.name
    };
    // Insertion sort with Go's `less`: stable, and faithful even where `less` is not a strict
    // order (small lists only: a profile has a handful of volumes).
    let n = volumes.len();
    for i in 1..n {
        let mut j = i;
        while j > 0 && less(&volumes[j], &volumes[j - 1]) {
            volumes.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn read_volume(
    node: &Node,
    path: &str,
    in_list: bool,
    warnings: &mut Vec<SdlWarning>,
) -> Result<StorageVolume> {
    let fields = Fields::lenient(node, path, &["name", "size", "attributes"], warnings)?;
    let size_path = fields.path("size");
    let size_node = fields.require("size", " (e.g. 1Gi)")?;
    let bytes = units::parse_size(scalar(size_node, &size_path, "a size such as 1Gi")?.0)
        .map_err(|e| SdlError::new(&size_path, size_node.line, e))?;
    // A single volume written as a mapping is always the default one, as in Akash.
    let name = match fields.get("name") {
        Some(n) if in_list => text_or_empty(n, &fields.path("name"))?,
        _ => String::new(),
    };
    let name = if name.is_empty() {
        "default".to_string()
    } else {
        name
    };
    let attributes = match fields.get("attributes") {
        None => Vec::new(),
        Some(n) => read_storage_attributes(n, &fields.path("attributes"))?,
    };
    Ok(StorageVolume {
        loc: Loc::new(path, node.line),
        size_at: Loc::new(size_path, size_node.line),
        name,
        bytes,
        attributes,
    })
}

const STORAGE_CLASSES: &[&str] = &["default", "beta1", "beta2", "beta3", "ram"];

fn read_storage_attributes(node: &Node, path: &str) -> Result<Vec<Attribute>> {
    let fields = Fields::of(node, path, Some(&["persistent", "class"]))?;
    let err = |msg: String| SdlError::new(path, node.line, msg);
    let mut persistent = match fields.get("persistent") {
        Some(n) => text_or_empty(n, &fields.path("persistent"))?,
        None => "false".to_string(),
    };
    let mut class = match fields.get("class") {
        Some(n) => Some(text_or_empty(n, &fields.path("class"))?),
        None => None,
    };
    let class_line = fields.key_line("class");
    match class.as_deref() {
        None | Some("") => {
            if persistent == "true" {
                class = Some("default".into());
            }
        }
        Some("ram") => {
            if persistent != "false" {
                return Err(err(
                    "class \"ram\" cannot be persistent (ram volumes vanish with the container)"
                        .into(),
                ));
            }
        }
        Some(other) => {
            if persistent == "false" {
                return Err(err(format!(
                    "class {other:?} needs `persistent: true` (only persistent volumes have a class, except ram)"
                )));
            }
        }
    }
    persistent = match persistent.as_str() {
        "true" | "on" | "yes" => "true".into(),
        "false" | "off" | "no" => "false".into(),
        other => {
            return Err(SdlError::new(
                fields.path("persistent"),
                fields.key_line("persistent"),
                format!("expected true or false, found {other:?}"),
            ));
        }
    };
    let mut attrs = vec![Attribute::new("persistent", persistent)];
    if let Some(class) = class {
        if !STORAGE_CLASSES.contains(&class.as_str()) {
            return Err(SdlError::new(
                fields.path("class"),
                class_line,
                format!(
                    "unknown storage class {class:?} (expected one of: {})",
                    STORAGE_CLASSES.join(", ")
                ),
            ));
        }
        attrs.push(Attribute::new("class", class));
    }
    attrs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(attrs)
}

fn read_gpu(
    node: &Node,
    path: &str,
    warnings: &mut Vec<SdlWarning>,
) -> Result<(u64, Vec<Attribute>)> {
    let fields = Fields::of(node, path, Some(&["units", "attributes"]))?;
    let units = match fields.get("units") {
        None => 0,
        Some(n) => {
            let upath = fields.path("units");
            let (value, _) = scalar(n, &upath, "a whole number of GPUs")?;
            if !value.bytes().all(|b| b.is_ascii_digit()) || value.is_empty() {
                return Err(SdlError::new(
                    upath,
                    n.line,
                    format!("expected a whole number of GPUs, found {value:?}"),
                ));
            }
            value
                .parse::<u64>()
                .map_err(|_| SdlError::new(&upath, n.line, format!("{value} is too large")))?
        }
    };
    let attributes = match fields.get("attributes") {
        None => Vec::new(),
        Some(n) => read_gpu_attributes(n, &fields.path("attributes"), warnings)?,
    };
    if units > 0 && attributes.is_empty() {
        return Err(SdlError::new(
            path,
            node.line,
            "GPU units > 0 need `attributes` naming the vendor, e.g. `attributes: {vendor: {nvidia: [{model: a100}]}}`",
        ));
    }
    if units == 0 && !attributes.is_empty() {
        return Err(SdlError::new(
            fields.path("attributes"),
            node.line,
            "GPU attributes need `units` of at least 1",
        ));
    }
    Ok((units, attributes))
}

fn read_gpu_attributes(
    node: &Node,
    path: &str,
    warnings: &mut Vec<SdlWarning>,
) -> Result<Vec<Attribute>> {
    let fields = Fields::of(node, path, Some(&["vendor"]))?;
    let vendor_path = fields.path("vendor");
    let vendor_node = fields.require("vendor", " (e.g. `vendor: {nvidia: [{model: a100}]}`)")?;
    let vendor = Fields::of(vendor_node, &vendor_path, None)?;
    if vendor.entries.is_empty() {
        return Err(SdlError::new(
            &vendor_path,
            vendor_node.line,
            "name at least one vendor (supported: nvidia)",
        ));
    }
    let mut attrs = Vec::new();
    for (name, vpath, models) in vendor.iter() {
        if name != "nvidia" {
            return Err(SdlError::new(
                vpath,
                models.line,
                format!("unsupported GPU vendor {name:?} (supported: nvidia)"),
            ));
        }
        for (i, model) in seq(models, &vpath, "GPU models")?.iter().enumerate() {
            let mpath = format!("{vpath}[{i}]");
            let m = Fields::lenient(model, &mpath, &["model", "ram", "interface"], warnings)?;
            let mut key = match m.get("model") {
                Some(n) => text_or_empty(n, &m.path("model"))?,
                None => String::new(),
            };
            if let Some(n) = m.get("ram") {
                let rpath = m.path("ram");
                let bytes = units::parse_binary_size(scalar(n, &rpath, "a size such as 80Gi")?.0)
                    .map_err(|e| SdlError::new(&rpath, n.line, e))?;
                key = format!("{key}/ram/{}", units::whole_gi(bytes));
            }
            if let Some(n) = m.get("interface") {
                let ipath = m.path("interface");
                let interface = text(n, &ipath)?;
                if !matches!(interface.as_str(), "pcie" | "sxm") {
                    return Err(SdlError::new(
                        ipath,
                        n.line,
                        format!("invalid GPU interface {interface:?} (expected pcie or sxm)"),
                    ));
                }
                key = format!("{key}/interface/{interface}");
            }
            attrs.push(Attribute::new(format!("vendor/nvidia/model/{key}"), "true"));
        }
    }
    if attrs.is_empty() {
        attrs.push(Attribute::new("vendor/nvidia/model/*", "true"));
    }
    attrs.sort_by(|a, b| a.key.cmp(&b.key));
    for pair in attrs.windows(2) {
        if pair[0].key == pair[1].key {
            return Err(SdlError::new(
                path,
                node.line,
                format!("GPU model {:?} is listed twice", pair[0].key),
            ));
        }
    }
    Ok(attrs)
}

fn read_placement(
    node: &Node,
    path: &str,
    warnings: &mut Vec<SdlWarning>,
) -> Result<PlacementProfile> {
    let fields = Fields::lenient(node, path, &["attributes", "signedBy", "pricing"], warnings)?;
    let attributes = match fields.get("attributes") {
        None => Vec::new(),
        Some(n) => attribute_map(n, &fields.path("attributes"))?,
    };
    let mut signed_by = SignedBy::default();
    if let Some(n) = fields.get("signedBy") {
        let s =
            Fields::lenient_or_empty(n, &fields.path("signedBy"), &["allOf", "anyOf"], warnings)?;
        if let Some(n) = s.get("allOf") {
            signed_by.all_of = text_list_or_null(n, &s.path("allOf"))?.unwrap_or_default();
        }
        if let Some(n) = s.get("anyOf") {
            signed_by.any_of = text_list_or_null(n, &s.path("anyOf"))?.unwrap_or_default();
        }
    }
    let pricing_path = fields.path("pricing");
    let pricing_node = fields.require(
        "pricing",
        " (the most you pay per block for each compute profile, e.g. `web: {denom: uakt, amount: 1000}`)",
    )?;
    let mut pricing = BTreeMap::new();
    for (profile, ppath, pnode) in Fields::of(pricing_node, &pricing_path, None)?.iter() {
        pricing.insert(profile.to_string(), read_price(pnode, &ppath, warnings)?);
    }
    Ok(PlacementProfile {
        pricing_at: Loc::new(pricing_path.clone(), fields.key_line("pricing")),
        loc: Loc::new(path, node.line),
        attributes,
        signed_by,
        pricing,
    })
}

/// Whether `denom` is a denomination Kumo can price in: a micro-unit (`uakt`, `uusd`,
/// `ukumo`) or an IBC voucher (`ibc/<64 hex digits>`). Which of them a chain accepts for
/// payment is a chain parameter, checked at deploy time.
pub fn valid_denom(denom: &str) -> bool {
    if let Some(hash) = denom.strip_prefix("ibc/") {
        return hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    }
    denom.len() >= 3
        && denom.len() <= 128
        && denom.starts_with('u')
        && denom[1..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn read_price(node: &Node, path: &str, warnings: &mut Vec<SdlWarning>) -> Result<Price> {
    let fields = Fields::lenient(node, path, &["denom", "amount"], warnings)?;
    let denom_path = fields.path("denom");
    let denom_node = fields.require("denom", " (e.g. uakt)")?;
    let denom = text(denom_node, &denom_path)?;
    if !valid_denom(&denom) {
        return Err(SdlError::new(
            denom_path,
            denom_node.line,
            format!(
                "{denom:?} is not a denomination (expected a micro-denomination such as uakt, uact or uusd, or an IBC denomination ibc/<64 hex digits>)"
            ),
        ));
    }
    let amount_path = fields.path("amount");
    let amount_node = fields.require("amount", " (the most you pay per block)")?;
    let (amount_text, _) = scalar(amount_node, &amount_path, "an amount such as 1000 or 0.5")?;
    let amount: Dec = amount_text.parse().map_err(|e: kumo_types::DecimalError| {
        SdlError::new(&amount_path, amount_node.line, e.to_string())
    })?;
    if amount.is_zero() {
        return Err(SdlError::new(
            amount_path,
            amount_node.line,
            "is zero: offer a price above 0",
        ));
    }
    Ok(Price {
        coin: DecCoin::new(denom, amount),
        denom_at: Loc::new(denom_path, denom_node.line),
        amount_at: Loc::new(amount_path, amount_node.line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_endpoint_name("ep1"));
        assert!(valid_endpoint_name("my_ip-2"));
        assert!(!valid_endpoint_name("Invalid-Name"));
        assert!(!valid_endpoint_name("a"));
        assert!(valid_hostname("hello.localhost"));
        assert!(!valid_hostname("Hello.com"));
        assert!(!valid_hostname("-a.com"));
        assert!(valid_env_name("PORT"));
        assert!(!valid_env_name("1PORT"));
        assert!(valid_denom("uakt"));
        assert!(valid_denom(
            "ibc/170C677610AC31DF0904FFE09CD3B5C657492170E7E52372E48756B71E56F2F1"
        ));
        assert!(!valid_denom("invalidtoken"));
        assert!(!valid_denom("ibc/xyz"));
    }
}
