//! Quantities as SDL files write them: CPU (`0.5`, `500m`), sizes (`512Mi`, `1G`, `1.5Gi`).
//!
//! The arithmetic deliberately follows Akash's Go parser (parse as a 64-bit float, scale,
//! truncate) so that every file yields exactly the numbers Akash computes from it.

/// Decimal and binary size suffixes accepted for memory and storage sizes.
const SIZE_SUFFIXES: &[(&str, u64)] = &[
    ("k", 1_000),
    ("Ki", 1 << 10),
    ("M", 1_000_000),
    ("Mi", 1 << 20),
    ("G", 1_000_000_000),
    ("Gi", 1 << 30),
    ("T", 1_000_000_000_000),
    ("Ti", 1 << 40),
    ("P", 1_000_000_000_000_000),
    ("Pi", 1 << 50),
    ("E", 1_000_000_000_000_000_000),
    ("Ei", 1 << 60),
];

/// Binary suffixes only: GPU memory (`80Gi`).
const BINARY_SUFFIXES: &[(&str, u64)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
];

/// A finite, non-negative number in plain decimal notation (`12`, `0.5`, `1e3`).
fn parse_number(text: &str) -> Result<f64, String> {
    let looks_numeric = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    let value: f64 = if looks_numeric {
        text.parse()
            .map_err(|_| format!("{text:?} is not a number"))?
    } else {
        return Err(format!("{text:?} is not a number"));
    };
    if !value.is_finite() {
        return Err(format!("{text:?} is not a finite number"));
    }
    if value < 0.0 {
        return Err(format!("{text:?} is negative"));
    }
    Ok(value)
}

fn to_u64(value: f64, text: &str) -> Result<u64, String> {
    if value >= 18_446_744_073_709_551_616.0 {
        return Err(format!("{text:?} is too large"));
    }
    // Truncation toward zero, as Go's float-to-integer conversion.
    Ok(value as u64)
}

/// CPU in thousandths of a core: `500m` → 500, `0.5` → 500, `2` → 2000.
pub(crate) fn parse_cpu(text: &str) -> Result<u64, String> {
    if let Some(millis) = text.strip_suffix('m') {
        if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{text:?} is not a CPU amount (write e.g. 500m or 0.5)"
            ));
        }
        return millis
            .parse::<u32>()
            .map(u64::from)
            .map_err(|_| format!("{text:?} is too large"));
    }
    let cores =
        parse_number(text).map_err(|e| format!("{e} (write a CPU amount such as 500m or 0.5)"))?;
    let millis = to_u64(cores * 1000.0, text)?;
    // Akash keeps CPU in a 32-bit field.
    if millis > u64::from(u32::MAX) {
        return Err(format!("{text:?} is too large"));
    }
    Ok(millis)
}

fn parse_with_suffix(text: &str, suffixes: &[(&str, u64)], hint: &str) -> Result<u64, String> {
    for (suffix, scale) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            let value = parse_number(number).map_err(|e| format!("{e} ({hint})"))?;
            return to_u64(value * *scale as f64, text);
        }
    }
    let value = parse_number(text).map_err(|_| format!("{text:?} is not a size ({hint})"))?;
    to_u64(value, text)
}

/// A memory or storage size in bytes: `512Mi`, `1G`, `1.5Gi`, `1048576`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    parse_with_suffix(
        text,
        SIZE_SUFFIXES,
        "write e.g. 512Mi, 1Gi or 1G; suffixes k, Ki, M, Mi, G, Gi, T, Ti, P, Pi, E, Ei",
    )
}

/// A GPU memory size in bytes, binary suffixes only: `80Gi`.
pub(crate) fn parse_binary_size(text: &str) -> Result<u64, String> {
    parse_with_suffix(
        text,
        BINARY_SUFFIXES,
        "write e.g. 80Gi; suffixes Ki, Mi, Gi, Ti, Pi, Ei",
    )
}

/// Whole `Gi` of a byte count, rounded down, as Akash names GPU memory in attributes.
pub(crate) fn whole_gi(bytes: u64) -> String {
    format!("{}Gi", bytes / (1 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_cpu("100m"), Ok(100));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.1"), Ok(100));
        // Go's float arithmetic truncates 1.005 * 1000 = 1004.999…; so do we.
        assert_eq!(parse_cpu("1.005"), Ok(1004));
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu("abc").is_err());
        assert!(parse_cpu("inf").is_err());
        assert!(parse_cpu("m").is_err());
    }

    #[test]
    fn size_forms() {
        assert_eq!(parse_size("512Mi"), Ok(536_870_912));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1k"), Ok(1000));
        assert!(parse_size("1Gb").is_err());
        assert!(parse_size("-1Gi").is_err());
        assert!(parse_size("100Ei").is_err());
        assert_eq!(parse_binary_size("80Gi"), Ok(80 << 30));
        assert!(parse_binary_size("80G").is_err());
        assert_eq!(whole_gi(512 << 20), "0Gi");
    }
}
