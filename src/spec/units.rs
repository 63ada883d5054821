//! Sizes as Lima (docker/go-units) reads and writes them.
//!
//! `RAMInBytes` semantics: every unit is binary, so `4G`, `4GB` and `4GiB`
//! all mean 4 × 2³⁰; the unit letter is case-insensitive and one space may
//! separate number and unit. Output is `BytesSize`: four significant digits
//! and a binary unit (`4GiB`, `1.5GiB`, `976.6KiB`).

/// Parses a size like `4GiB`, `512MiB`, `100G`, `1.5 gb` or `1024` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size: {}", crate::spec::yaml::go_quote(s));
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    let number = &s[..i];
    if number.is_empty() || !number.as_bytes()[0].is_ascii_digit() || number.ends_with('.') {
        return Err(invalid());
    }
    let mut rest = &s[i..];
    if let Some(r) = rest.strip_prefix(' ') {
        rest = r;
    }
    let mut unit = rest.chars();
    let mut mul: f64 = 1.0;
    let mut peek = unit.clone().next();
    if let Some(c) = peek {
        let m = match c.to_ascii_lowercase() {
            'k' => Some(1u64 << 10),
            'm' => Some(1 << 20),
            'g' => Some(1 << 30),
            't' => Some(1 << 40),
            'p' => Some(1 << 50),
            _ => None,
        };
        if let Some(m) = m {
            mul = m as f64;
            unit.next();
            peek = unit.clone().next();
        }
    }
    if matches!(peek, Some('i' | 'I')) {
        unit.next();
        peek = unit.clone().next();
    }
    if matches!(peek, Some('b' | 'B')) {
        unit.next();
    }
    if unit.next().is_some() {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let size = value * mul;
    if !size.is_finite() || size > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(size as u64)
}

/// Formats bytes like go-units `BytesSize`: `4GiB`, `100GiB`, `1.5GiB`, `976.6KiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", format_g4(size), UNITS[i])
}

/// Go's `%.4g` for values in [0, 1024]: four significant digits, no trailing zeros.
fn format_g4(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits_before = if v >= 1.0 {
        (v.log10().floor() as i32) + 1
    } else {
        0
    };
    let decimals = (4 - digits_before).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go_units_ram_in_bytes() {
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("4GB").unwrap(), 4 << 30);
        assert_eq!(parse_size("4g").unwrap(), 4 << 30);
        assert_eq!(parse_size("100GiB").unwrap(), 100 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2 GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("10b").unwrap(), 10);
        assert_eq!(parse_size("1Ki").unwrap(), 1024);
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            "", "GiB", "-1GiB", "4XB", "4GiBs", "four", "4  GiB", " 4GiB", "4.GiB", ".5GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_like_go_units_bytes_size() {
        assert_eq!(format_size(4 << 30), "4GiB");
        assert_eq!(format_size(100 << 30), "100GiB");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(3 << 29), "1.5GiB");
        assert_eq!(format_size(1000 * 1000), "976.6KiB");
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_size(1023 * 1024 + 1000), "1024KiB");
    }
}
