//! Does a provider satisfy a group's requirements? The rules Akash's chain applies to a bid.
//!
//! - **Attributes** ([`attributes_subset_of`]): every required attribute must be matched by one
//!   of the provider's: the required key is a glob pattern in Go's `filepath.Match` syntax
//!   ([`glob_match`]: `*`, `?`, `[a-z]`, `\` escapes; `*` stops at `/`) and the values must be
//!   equal. This is Akash's `AttributesSubsetOf`.
//! - **signedBy** ([`signed_by_satisfied`]): an auditor "vouches" for a group when the
//!   attributes it signed for the provider are a superset of the group's required attributes.
//!   With `all_of`, every listed auditor must vouch; with `any_of`, at least one.
//! - **Capabilities** ([`capabilities_satisfied`]): a storage volume with attributes
//!   (`class`, `persistent`) must find them all within one of the provider's
//!   `capabilities/storage/<n>/<name>` groups (Akash's `GetCapabilitiesGroup` + `IN`); a GPU
//!   request must have one of its attributes among the provider's `capabilities/gpu/...`
//!   attributes (Akash's `GetCapabilitiesMap` + `AnyIN`).
//!
//! [`match_group`] applies all three and says which one failed. [`match_group_within`] does the
//! same within a work budget ([`Meter`]), which the chain uses so that no bid, however crafted
//! its attributes, costs more than a bounded amount of validator time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Attribute, GroupSpec, PlacementRequirements};

/// The attributes one auditor signed for one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The auditor's address, as written in `signedBy`.
    pub auditor: String,
    /// The attributes the auditor vouches for.
    pub attributes: Vec<Attribute>,
}

/// Why a provider does not match a group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// A required attribute is missing.
    #[error(
        "provider lacks required attribute {key}={value}: add it to the provider's attributes or relax the SDL's placement attributes"
    )]
    MissingAttribute {
        /// Required key (may be a pattern).
        key: String,
        /// Required value.
        value: String,
    },
    /// An `all_of` auditor has not vouched for the required attributes.
    #[error(
        "auditor {0} (signedBy.allOf) has not signed the group's required attributes for this provider"
    )]
    AllOf(String),
    /// No `any_of` auditor has vouched for the required attributes.
    #[error(
        "none of the auditors in signedBy.anyOf ({0}) signed the group's required attributes for this provider"
    )]
    AnyOf(String),
    /// A storage volume's class/persistence is not offered.
    #[error(
        "provider offers no storage matching volume {volume:?} ({wanted}): it needs capabilities/storage/<n>/... attributes for it"
    )]
    Storage {
        /// Volume name.
        volume: String,
        /// The volume's attributes, `k=v` joined by commas.
        wanted: String,
    },
    /// Matching needed more work than the budget allows.
    #[error(
        "matching the provider's attributes against the group takes too much work (chain parameter max_match_work): use fewer or simpler wildcard attributes"
    )]
    TooComplex,
    /// The requested GPU is not offered.
    #[error(
        "provider offers none of the GPUs requested ({0}): it needs matching capabilities/gpu/... attributes"
    )]
    Gpu(String),
}

/// Go's `filepath.Match` on `/`-separated names: whether `name` matches `pattern`.
///
/// A port of Go's algorithm (chunks of literals, `?` and classes, each optionally preceded by
/// `*`, matched leftmost-first without backtracking), so it runs in O(len(pattern) ×
/// len(name)) at worst, never exponentially. A malformed pattern (unclosed `[`, trailing `\`)
/// matches nothing, as in Go, where the error makes Akash's caller treat it as no match.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    glob_metered(pattern, name, &Meter::unlimited()).unwrap_or(false)
}

/// A budget of matching work, counted in pattern characters processed: matching is then
/// bounded however adversarial the patterns and names (the chain's `max_match_work`).
#[derive(Debug)]
pub struct Meter {
    left: std::cell::Cell<u64>,
}

impl Meter {
    /// A budget of `units`.
    pub fn new(units: u64) -> Meter {
        Meter {
            left: std::cell::Cell::new(units),
        }
    }

    /// No limit.
    pub fn unlimited() -> Meter {
        Meter::new(u64::MAX)
    }

    /// Units left.
    pub fn left(&self) -> u64 {
        self.left.get()
    }

    fn charge(&self, units: usize) -> Result<(), Stop> {
        let units = units as u64;
        match self.left.get().checked_sub(units) {
            Some(l) => {
                self.left.set(l);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(Stop::Budget)
            }
        }
    }
}

/// Why matching stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Go's `ErrBadPattern`: the pattern matches nothing.
    BadPattern,
    /// The meter ran out.
    Budget,
}

/// The budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBudget;

/// [`glob_match`] within a [`Meter`].
pub fn glob_metered(pattern: &str, name: &str, meter: &Meter) -> Result<bool, OutOfBudget> {
    let budget = |e| match e {
        Stop::BadPattern => Ok(false),
        Stop::Budget => Err(OutOfBudget),
    };
    meter
        .charge(pattern.len() + name.len())
        .map_err(|_| OutOfBudget)?;
    // Fast path: a pattern without metacharacters is a plain comparison.
    if !pattern.contains(['*', '?', '[', '\\']) {
        return Ok(pattern == name);
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go_match(&p, &n, meter).or_else(budget)
}

const SEPARATOR: char = '/';

fn go_match(mut pattern: &[char], mut name: &[char], meter: &Meter) -> Result<bool, Stop> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // Trailing * matches the rest of the name unless it has a separator.
            return Ok(!name.contains(&SEPARATOR));
        }
        // Look for a match at the current position.
        let (t, ok) = match_chunk(chunk, name, meter)?;
        // The last chunk must exhaust the name.
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if star {
            // Look for a match skipping i+1 characters; a star cannot skip a separator.
            let mut i = 0;
            while i < name.len() && name[i] != SEPARATOR {
                let (t, ok) = match_chunk(chunk, &name[i + 1..], meter)?;
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        // No match: still report a syntax error in the rest of the pattern, as Go does.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, &[], meter)?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off the next chunk: leading stars, then literals/`?`/classes up to the next star.
fn scan_chunk(mut pattern: &[char]) -> (bool, &[char], &[char]) {
    let mut star = false;
    while pattern.first() == Some(&'*') {
        pattern = &pattern[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '\\' if i + 1 < pattern.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Whether `chunk` matches the start of `s`; returns the rest of `s`.
fn match_chunk<'a>(
    mut chunk: &[char],
    mut s: &'a [char],
    meter: &Meter,
) -> Result<(&'a [char], bool), Stop> {
    meter.charge(chunk.len() + 1)?;
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == '-' {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == SEPARATOR {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let c = if c == '\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(Stop::BadPattern)?
                } else {
                    c
                };
                if !failed {
                    if c != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { (&[], false) } else { (s, true) })
}

/// A possibly escaped character of a class; errors where Go's `getEsc` does.
fn get_esc(chunk: &[char]) -> Result<(char, &[char]), Stop> {
    let mut chunk = chunk;
    match chunk.first() {
        None | Some('-') | Some(']') => return Err(Stop::BadPattern),
        Some('\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(Stop::BadPattern);
            }
        }
        _ => {}
    }
    let rest = &chunk[1..];
    if rest.is_empty() {
        return Err(Stop::BadPattern);
    }
    Ok((chunk[0], rest))
}

/// Whether `have` matches the requirement `req`: key pattern matches, value equal.
pub fn attribute_matches(req: &Attribute, have: &Attribute) -> bool {
    attribute_matches_metered(req, have, &Meter::unlimited()).unwrap_or(false)
}

fn attribute_matches_metered(
    req: &Attribute,
    have: &Attribute,
    meter: &Meter,
) -> Result<bool, OutOfBudget> {
    meter
        .charge(req.value.len().min(have.value.len()) + 1)
        .map_err(|_| OutOfBudget)?;
    Ok(req.value == have.value && glob_metered(&req.key, &have.key, meter)?)
}

/// Akash's `AttributesSubsetOf(required, have)`: every required attribute is matched by one in
/// `have`. Returns the first one that is not.
pub fn attributes_subset_of<'a>(
    required: &'a [Attribute],
    have: &[Attribute],
) -> Result<(), &'a Attribute> {
    // An unlimited meter never runs out; the closure keeps an empty `required` from indexing.
    subset_metered(required, have, &Meter::unlimited()).unwrap_or_else(|_| Err(&required[0]))
}

fn subset_metered<'a>(
    required: &'a [Attribute],
    have: &[Attribute],
    meter: &Meter,
) -> Result<Result<(), &'a Attribute>, OutOfBudget> {
    for req in required {
        let mut found = false;
        for h in have {
            if attribute_matches_metered(req, h, meter)? {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(Err(req));
        }
    }
    Ok(Ok(()))
}

/// Whether the auditors' attestations satisfy `req.signed_by` for `req.attributes`.
pub fn signed_by_satisfied(
    req: &PlacementRequirements,
    attestations: &[Attestation],
) -> Result<(), MatchError> {
    signed_by_metered(req, attestations, &Meter::unlimited())
}

fn signed_by_metered(
    req: &PlacementRequirements,
    attestations: &[Attestation],
    meter: &Meter,
) -> Result<(), MatchError> {
    let vouches = |auditor: &str| -> Result<bool, MatchError> {
        for a in attestations.iter().filter(|a| a.auditor == auditor) {
            if subset_metered(&req.attributes, &a.attributes, meter)
                .map_err(|_| MatchError::TooComplex)?
                .is_ok()
            {
                return Ok(true);
            }
        }
        Ok(false)
    };
    for auditor in &req.signed_by.all_of {
        if !vouches(auditor)? {
            return Err(MatchError::AllOf(auditor.clone()));
        }
    }
    if !req.signed_by.any_of.is_empty() {
        for a in &req.signed_by.any_of {
            if vouches(a)? {
                return Ok(());
            }
        }
        return Err(MatchError::AnyOf(req.signed_by.any_of.join(", ")));
    }
    Ok(())
}

/// Akash's `GetCapabilitiesGroup(prefix)`: `capabilities/<prefix>/<n>/<name> = v` grouped by `n`
/// into lists of `name = v`, ordered by `n`.
pub fn capabilities_group(attrs: &[Attribute], prefix: &str) -> Vec<Vec<Attribute>> {
    let head = format!("capabilities/{prefix}/");
    let mut groups: BTreeMap<&str, Vec<Attribute>> = BTreeMap::new();
    for a in attrs {
        let Some(rest) = a.key.strip_prefix(&head) else {
            continue;
        };
        let Some((n, name)) = rest.split_once('/') else {
            continue;
        };
        if name.is_empty() || name.contains('/') {
            continue;
        }
        groups
            .entry(n)
            .or_default()
            .push(Attribute::new(name, a.value.clone()));
    }
    groups.into_values().collect()
}

/// Akash's `GetCapabilitiesMap(prefix)`: `capabilities/<prefix>/<rest> = v` as `rest = v`.
pub fn capabilities_map(attrs: &[Attribute], prefix: &str) -> Vec<Attribute> {
    let head = format!("capabilities/{prefix}/");
    attrs
        .iter()
        .filter_map(|a| {
            let rest = a.key.strip_prefix(&head)?;
            (!rest.is_empty()).then(|| Attribute::new(rest, a.value.clone()))
        })
        .collect()
}

fn join(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .map(|a| format!("{}={}", a.key, a.value))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the provider's `capabilities/storage` and `capabilities/gpu` attributes offer what
/// the group's resource units ask for.
pub fn capabilities_satisfied(group: &GroupSpec, provider: &[Attribute]) -> Result<(), MatchError> {
    capabilities_metered(group, provider, &Meter::unlimited())
}

fn capabilities_metered(
    group: &GroupSpec,
    provider: &[Attribute],
    meter: &Meter,
) -> Result<(), MatchError> {
    let too_complex = |_| MatchError::TooComplex;
    let storage = capabilities_group(provider, "storage");
    let gpus = capabilities_map(provider, "gpu");
    for unit in &group.resources {
        for vol in &unit.resources.storage {
            if vol.attributes.is_empty() {
                continue;
            }
            let mut offered = false;
            for g in &storage {
                if subset_metered(&vol.attributes, g, meter)
                    .map_err(too_complex)?
                    .is_ok()
                {
                    offered = true;
                    break;
                }
            }
            if !offered {
                return Err(MatchError::Storage {
                    volume: vol.name.clone(),
                    wanted: join(&vol.attributes),
                });
            }
        }
        let gpu = &unit.resources.gpu;
        if gpu.units > 0 {
            let mut ok = gpu.attributes.is_empty() && !gpus.is_empty();
            'gpu: for req in &gpu.attributes {
                for have in &gpus {
                    if attribute_matches_metered(req, have, meter).map_err(too_complex)? {
                        ok = true;
                        break 'gpu;
                    }
                }
            }
            if !ok {
                return Err(MatchError::Gpu(join(&gpu.attributes)));
            }
        }
    }
    Ok(())
}

/// All the checks a bid must pass on the provider side: attributes, signedBy, capabilities.
pub fn match_group(
    group: &GroupSpec,
    provider: &[Attribute],
    attestations: &[Attestation],
) -> Result<(), MatchError> {
    match_group_within(group, provider, attestations, &Meter::unlimited())
}

/// [`match_group`] within a work budget: [`MatchError::TooComplex`] when it runs out, so the
/// cost of a bid's checks is bounded whatever the attributes (Go's algorithm is
/// O(pattern × name) per pair, and there are up to attributes² pairs per auditor).
pub fn match_group_within(
    group: &GroupSpec,
    provider: &[Attribute],
    attestations: &[Attestation],
    meter: &Meter,
) -> Result<(), MatchError> {
    subset_metered(&group.requirements.attributes, provider, meter)
        .map_err(|_| MatchError::TooComplex)?
        .map_err(|a| MatchError::MissingAttribute {
            key: a.key.clone(),
            value: a.value.clone(),
        })?;
    signed_by_metered(&group.requirements, attestations, meter)?;
    capabilities_metered(group, provider, meter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gpu, ResourceUnit, Resources, SignedBy, Storage};

    #[test]
    fn glob_follows_filepath_match() {
        let cases = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*/b", "abc/b", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abe", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a*", "ab/c", false),
            ("capabilities/gpu/*", "capabilities/gpu/vendor", true),
            ("region", "regions", false),
            ("[", "a", false),
            ("a[", "a", false),
            ("*x", "xxx", true),
            ("a/*", "a/", true),
            // From Go's path/filepath match_test.go.
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[]a]", "]", false),
            ("[-]", "-", false),
            ("[x-]", "x", false),
            ("[a-b-c]", "a", false),
            ("[^", "a", false),
            ("[^bc", "a", false),
            ("a[", "ab", false),
            ("a/b[", "x", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("ab[^e-g]", "abc", true),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p:?} vs {n:?}");
        }
    }

    #[test]
    fn metering_bounds_the_work() {
        let req = vec![Attribute::new("*".to_string() + &"a".repeat(200) + "b", "v"); 64];
        let have = vec![Attribute::new("a".repeat(250), "v"); 64];
        let group = GroupSpec {
            name: "g".into(),
            requirements: PlacementRequirements {
                signed_by: SignedBy::default(),
                attributes: req,
            },
            resources: vec![],
        };
        let meter = Meter::new(1_000_000);
        assert_eq!(
            match_group_within(&group, &have, &[], &meter),
            Err(MatchError::TooComplex)
        );
        assert_eq!(meter.left(), 0);
        // Unlimited, it finishes and finds no match.
        assert!(matches!(
            match_group(&group, &have, &[]),
            Err(MatchError::MissingAttribute { .. })
        ));
        // A plain match costs little.
        let meter = Meter::new(1_000);
        let ok = GroupSpec {
            requirements: PlacementRequirements::default(),
            ..group
        };
        assert!(match_group_within(&ok, &have, &[], &meter).is_ok());
    }

    #[test]
    fn glob_is_not_exponential() {
        let pattern = "*a".repeat(120) + "b";
        let name = "a".repeat(250);
        let start = std::time::Instant::now();
        assert!(!glob_match(&pattern, &name));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    fn attrs(kv: &[(&str, &str)]) -> Vec<Attribute> {
        kv.iter().map(|(k, v)| Attribute::new(*k, *v)).collect()
    }

    #[test]
    fn signed_by_any_and_all() {
        let mut req = PlacementRequirements {
            signed_by: SignedBy::default(),
            attributes: attrs(&[("region", "us-west")]),
        };
        let att = vec![
            Attestation {
                auditor: "a1".into(),
                attributes: attrs(&[("region", "us-west"), ("tier", "1")]),
            },
            Attestation {
                auditor: "a2".into(),
                attributes: attrs(&[("tier", "1")]),
            },
        ];
        assert!(signed_by_satisfied(&req, &[]).is_ok());
        req.signed_by.any_of = vec!["a2".into(), "a1".into()];
        assert!(signed_by_satisfied(&req, &att).is_ok());
        req.signed_by.any_of = vec!["a2".into(), "a3".into()];
        assert!(matches!(
            signed_by_satisfied(&req, &att),
            Err(MatchError::AnyOf(_))
        ));
        req.signed_by.any_of.clear();
        req.signed_by.all_of = vec!["a1".into()];
        assert!(signed_by_satisfied(&req, &att).is_ok());
        req.signed_by.all_of = vec!["a1".into(), "a2".into()];
        assert_eq!(
            signed_by_satisfied(&req, &att),
            Err(MatchError::AllOf("a2".into()))
        );
    }

    #[test]
    fn storage_and_gpu_capabilities() {
        let mut unit = ResourceUnit {
            resources: Resources {
                storage: vec![Storage {
                    name: "data".into(),
                    bytes: 1,
                    attributes: attrs(&[("class", "beta2"), ("persistent", "true")]),
                }],
                ..Resources::default()
            },
            count: 1,
            price: crate::DecCoin::new("ukumo", crate::Dec::from_int(1)),
        };
        let group = |u: &ResourceUnit| GroupSpec {
            name: "g".into(),
            requirements: PlacementRequirements::default(),
            resources: vec![u.clone()],
        };
        let provider = attrs(&[
            ("capabilities/storage/1/class", "beta2"),
            ("capabilities/storage/1/persistent", "true"),
            ("capabilities/storage/2/class", "beta3"),
            ("capabilities/gpu/vendor/nvidia/model/a100", "true"),
        ]);
        assert!(match_group(&group(&unit), &provider, &[]).is_ok());
        unit.resources.storage[0].attributes[0].value = "beta3".into();
        // beta3 exists but not persistent in the same group.
        assert!(matches!(
            match_group(&group(&unit), &provider, &[]),
            Err(MatchError::Storage { .. })
        ));
        unit.resources.storage.clear();
        unit.resources.gpu = Gpu {
            units: 1,
            attributes: attrs(&[("vendor/nvidia/model/*", "true")]),
        };
        assert!(match_group(&group(&unit), &provider, &[]).is_ok());
        unit.resources.gpu.attributes = attrs(&[("vendor/nvidia/model/h100", "true")]);
        assert!(matches!(
            match_group(&group(&unit), &provider, &[]),
            Err(MatchError::Gpu(_))
        ));
    }

    #[test]
    fn wildcard_keys_in_requirements() {
        let have = attrs(&[("region", "us-west"), ("host", "akash")]);
        assert!(attributes_subset_of(&attrs(&[("reg*", "us-west")]), &have).is_ok());
        assert!(attributes_subset_of(&attrs(&[("reg*", "eu")]), &have).is_err());
        // Nothing required: anything matches (this used to panic).
        assert!(attributes_subset_of(&[], &have).is_ok());
        assert!(attributes_subset_of(&[], &[]).is_ok());
    }
}
