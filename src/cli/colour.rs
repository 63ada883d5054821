//! Colours for JSON and YAML on a terminal, in yq's palette (which Lima's
//! `list` and `info` use too): keys cyan, strings green, numbers and
//! booleans bright magenta.

const KEY: &str = "\x1b[36m";
const STRING: &str = "\x1b[32m";
const NUMBER: &str = "\x1b[95m";
const RESET: &str = "\x1b[0m";

fn paint(out: &mut String, colour: &str, text: &str) {
    out.push_str(colour);
    out.push_str(text);
    out.push_str(RESET);
}

/// Colours serde_json's output (compact or pretty).
pub fn json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                let s = &text[start..i];
                let rest = text[i..].trim_start();
                paint(
                    &mut out,
                    if rest.starts_with(':') { KEY } else { STRING },
                    s,
                );
            }
            b'-' | b'0'..=b'9' | b't' | b'f' => {
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b']' | b'}' | b' ' | b'\n') {
                    i += 1;
                }
                paint(&mut out, NUMBER, &text[start..i]);
            }
            b'n' if text[i..].starts_with("null") => {
                out.push_str("null");
                i += 4;
            }
            _ => {
                let c = text[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn scalar_colour(v: &str) -> Option<&'static str> {
    match v {
        "" | "null" | "~" | "{}" | "[]" | "|" | "|-" | ">" | ">-" => None,
        "true" | "false" => Some(NUMBER),
        v if v.parse::<f64>().is_ok() => Some(NUMBER),
        _ => Some(STRING),
    }
}

/// Colours block-style YAML as [`crate::spec::yaml::emit`] writes it.
pub fn yaml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let content = body.trim_start_matches([' ', '-']);
        out.push_str(&body[..body.len() - content.len()]);
        let key_end = if content.starts_with('"') || content.starts_with('\'') {
            None
        } else {
            content
                .find(": ")
                .or_else(|| content.ends_with(':').then(|| content.len() - 1))
        };
        let value = match key_end {
            Some(k) => {
                paint(&mut out, KEY, &content[..k]);
                out.push(':');
                let v = &content[k + 1..];
                let trimmed = v.trim_start();
                out.push_str(&v[..v.len() - trimmed.len()]);
                trimmed
            }
            None => content,
        };
        match scalar_colour(value) {
            Some(c) if content != "---" => paint(&mut out, c, value),
            _ => out.push_str(value),
        }
        out.push_str(nl);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> String {
        s.replace(KEY, "")
            .replace(STRING, "")
            .replace(NUMBER, "")
            .replace(RESET, "")
    }

    #[test]
    fn colours_keep_the_text_and_mark_keys_strings_and_numbers() {
        let j = "{\n    \"a\": \"x\\\"y\",\n    \"b\": [1, true, null]\n}";
        let c = json(j);
        assert_eq!(plain(&c), j);
        assert!(c.contains(&format!("{KEY}\"a\"{RESET}")), "{c}");
        assert!(c.contains(&format!("{STRING}\"x\\\"y\"{RESET}")), "{c}");
        assert!(c.contains(&format!("{NUMBER}1{RESET}")), "{c}");
        let y = "a: x\nb:\n- 1\n- c: true\n";
        let c = yaml(y);
        assert_eq!(plain(&c), y);
        assert!(
            c.contains(&format!("{KEY}a{RESET}: {STRING}x{RESET}")),
            "{c}"
        );
        assert!(c.contains(&format!("- {NUMBER}1{RESET}")), "{c}");
    }
}
