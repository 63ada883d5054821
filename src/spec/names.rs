//! Instance and disk names (reference §1.1).

use super::yaml::quote_name;

/// Longest identifier Lima accepts.
pub const MAX_NAME_LEN: usize = 76;

/// Checks an identifier: `^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$`, at most 76
/// characters. This alone rules out `/`, `..`, leading dots and spaces, so a
/// valid name is always a single, safe path component.
pub fn validate_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("identifier must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "identifier {} is too long: {} characters, at most {MAX_NAME_LEN}",
            quote_name(name),
            name.len()
        ));
    }
    let mut prev_sep = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            prev_sep = false;
        } else if matches!(c, '.' | '_' | '-') && !prev_sep {
            prev_sep = true;
        } else {
            return Err(format!(
                "identifier {} must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$",
                quote_name(name)
            ));
        }
    }
    if prev_sep {
        return Err(format!(
            "identifier {} must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$",
            quote_name(name)
        ));
    }
    Ok(())
}

/// Instance names are identifiers that do not look like YAML file names.
pub fn validate_instance_name(name: &str) -> Result<(), String> {
    validate_identifier(name)
        .map_err(|e| format!("invalid instance name {}: {e}", quote_name(name)))?;
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return Err(format!(
            "invalid instance name {}: must not end with .yaml or .yml",
            quote_name(name)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lima_names() {
        for n in ["default", "a", "my-vm", "vm_1.test", "A9", &"x".repeat(76)] {
            assert!(validate_instance_name(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_path_tricks_and_oddities() {
        for n in [
            "",
            "..",
            ".",
            "a/b",
            "../x",
            "a..b",
            "-a",
            "a-",
            ".hidden",
            "a b",
            "a\0b",
            "ä",
            "vm.yaml",
            "VM.YML",
            &"x".repeat(77),
        ] {
            assert!(
                validate_instance_name(n).is_err(),
                "{n:?} should be rejected"
            );
        }
    }
}
