//! Go `text/template` rendering (Lima's `{{.Home}}`, `{{.Param.KEY}}`,
//! `limactl list --format '{{.Name}}'`), on top of the `gtmpl` crate.

use gtmpl::{Context, FuncError, Template, Value};
use std::collections::HashMap;

/// Converts JSON into a template value; objects become field-addressable.
pub fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            if let Some(Value::String(text)) = o.get(JSON_KEY)
                && let Ok(v) = serde_json::from_str(text)
            {
                return v;
            }
            let mut keys: Vec<_> = o.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), to_json(&o[k])))
                    .collect(),
            )
        }
    }
}

/// The key under which data may carry its own JSON text, for `json` to
/// print exactly (`list` data has Go field names but Lima's JSON is camelCase).
pub const JSON_KEY: &str = "\u{0}json";

fn json_func(args: &[Value]) -> Result<Value, FuncError> {
    let [v] = args else {
        return Err(FuncError::ExactlyXArgs("json".into(), 1));
    };
    Ok(Value::String(to_json(v).to_string()))
}

/// Go's printf, with `%q` quoting strings as Go does (gtmpl's does not).
fn printf_func(args: &[Value]) -> Result<Value, FuncError> {
    let Some(Value::String(fmt)) = args.first() else {
        return gtmpl::funcs::printf(args);
    };
    let mut out_fmt = String::with_capacity(fmt.len());
    let mut out_args = vec![Value::Nil];
    let mut next = 1;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        out_fmt.push(c);
        if c != '%' {
            continue;
        }
        // Flags, width and precision, then the verb.
        while let Some(&f) = chars.peek() {
            if "+-# 0123456789.".contains(f) {
                out_fmt.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else { break };
        if verb == '%' {
            out_fmt.push('%');
            continue;
        }
        match (verb, args.get(next)) {
            ('q', Some(Value::String(s))) => {
                out_fmt.push('s');
                out_args.push(Value::String(crate::spec::yaml::go_quote(s)));
            }
            (v, a) => {
                out_fmt.push(v);
                if let Some(a) = a {
                    out_args.push(a.clone());
                }
            }
        }
        next += 1;
    }
    out_args.extend(args.iter().skip(next).cloned());
    out_args[0] = Value::String(out_fmt);
    gtmpl::funcs::printf(&out_args)
}

fn yaml_func(args: &[Value]) -> Result<Value, FuncError> {
    let [v] = args else {
        return Err(FuncError::ExactlyXArgs("yaml".into(), 1));
    };
    Ok(Value::String(format!(
        "---\n{}",
        crate::spec::yaml::emit_json(&to_json(v))
    )))
}

fn indent_func(args: &[Value]) -> Result<Value, FuncError> {
    let (n, s) = match args {
        [s] => (2, s),
        [Value::Number(n), s] => (n.as_u64().unwrap_or(2) as usize, s),
        _ => return Err(FuncError::AtLeastXArgs("indent".into(), 1)),
    };
    let s = match s {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let pad = " ".repeat(n);
    Ok(Value::String(
        s.lines()
            .map(|l| format!("{pad}{l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

fn missing_func(args: &[Value]) -> Result<Value, FuncError> {
    let msg = match args {
        [Value::String(s), ..] => s.clone(),
        _ => "<missing>".to_string(),
    };
    Ok(Value::String(msg))
}

/// Fast path for the common case: only `{{.Field}}` / `{{.A.B}}` actions
/// with string or number values. `None` when the template needs the engine.
fn substitute_simple(text: &str, data: &serde_json::Value) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let action = after[..end].trim();
        let path = action.strip_prefix('.')?;
        if path.is_empty()
            || !path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return None;
        }
        let mut v = data;
        for seg in path.split('.') {
            v = v.get(seg)?;
        }
        match v {
            serde_json::Value::String(s) => out.push_str(s),
            serde_json::Value::Number(n) => out.push_str(&n.to_string()),
            _ => return None,
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// Renders `text` with `data` as the dot. Texts without `{{` are returned as is.
pub fn render(text: &str, data: &serde_json::Value) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    if let Some(s) = substitute_simple(text, data) {
        return Ok(s);
    }
    let mut t = Template::default();
    t.add_func("json", json_func);
    t.add_func("printf", printf_func);
    t.add_func("yaml", yaml_func);
    t.add_func("indent", indent_func);
    t.add_func("missing", missing_func);
    t.parse(text).map_err(|e| e.to_string())?;
    t.render(&Context::from(to_value(data)))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_and_params() {
        let d = json!({"Home": "/home/u", "User": "u", "Param": {"PORT": "8080"}});
        assert_eq!(render("{{.Home}}/x", &d).unwrap(), "/home/u/x");
        assert_eq!(render("p={{.Param.PORT}}", &d).unwrap(), "p=8080");
        assert_eq!(render("plain", &d).unwrap(), "plain");
    }

    #[test]
    fn json_and_printf() {
        let d = json!({"Name": "a", "CPUs": 2});
        assert_eq!(render("{{json .Name}}", &d).unwrap(), "\"a\"");
        assert_eq!(
            render("{{printf \"%s-%d\" .Name .CPUs}}", &d).unwrap(),
            "a-2"
        );
    }

    /// Lists and maps print as Go's fmt does (vendor/gtmpl_value/PATCHES.md).
    #[test]
    fn lists_and_maps_print_in_go_form() {
        let d = json!({"L": ["x", "y", 3], "M": {"b": 1, "a": "s"}, "E": {}, "N": null,
                       "Nested": [{"k": ["v"]}], "Empty": []});
        assert_eq!(
            render("{{.L}} {{.M}} {{.E}} {{.N}} {{.Nested}} {{.Empty}}", &d).unwrap(),
            "[x y 3] map[a:s b:1] map[] <nil> [map[k:[v]]] []"
        );
        assert_eq!(render("{{printf \"%v\" .L}}", &d).unwrap(), "[x y 3]");
    }
}
