//! jq expressions (the jaq engine) over YAML and JSON documents: what
//! `limactl yq`, `list --yq/--filter` and the `--set` edit flags evaluate.
//! Environment and input operations are not available to expressions.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

/// Natives and definitions that read the environment, other inputs, or end the process.
const BLOCKED: &[&str] = &[
    "env",
    "input",
    "inputs",
    "halt",
    "halt_error",
    "stderr",
    "stderr_empty",
    "debug",
    "debug_empty",
    "input_filename",
    "get_search_list",
    "get_prog_origin",
    "$__loc__",
];

#[derive(Debug, thiserror::Error)]
pub enum YqError {
    #[error(
        "invalid expression {}: {message}",
        crate::spec::yaml::quote_name(expr)
    )]
    Compile { expr: String, message: String },
    #[error("expression {} failed: {message}", crate::spec::yaml::quote_name(expr))]
    Run { expr: String, message: String },
    #[error(
        "expression {} produced {count} results, expected exactly one",
        crate::spec::yaml::quote_name(expr)
    )]
    NotOne { expr: String, count: usize },
}

fn to_val(v: &serde_json::Value) -> Val {
    jaq_json::read::parse_single(v.to_string().as_bytes()).expect("serde_json output is valid JSON")
}

fn from_val(v: &Val) -> Result<serde_json::Value, String> {
    serde_json::from_str(&v.to_string())
        .map_err(|e| format!("result is not representable as JSON: {e}"))
}

/// Evaluates `expr` on `input` and returns every output.
pub fn eval(expr: &str, input: &serde_json::Value) -> Result<Vec<serde_json::Value>, YqError> {
    let compile_err = |message: String| YqError::Compile {
        expr: expr.to_string(),
        message,
    };
    if expr.contains("$ENV") {
        return Err(compile_err("env operations have been disabled".into()));
    }
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|d| !BLOCKED.contains(&d.name));
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !BLOCKED.contains(name));
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: expr,
                path: (),
            },
        )
        .map_err(|errs| compile_err(describe(&errs, expr)))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| compile_err(describe(&errs, expr)))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut out = Vec::new();
    for r in filter.id.run((ctx, to_val(input))).map(unwrap_valr) {
        match r {
            Ok(v) => out.push(from_val(&v).map_err(|message| YqError::Run {
                expr: expr.to_string(),
                message,
            })?),
            Err(e) => {
                return Err(YqError::Run {
                    expr: expr.to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

fn describe<T: std::fmt::Debug>(errs: &T, expr: &str) -> String {
    let s = format!("{errs:?}");
    for b in BLOCKED {
        if s.contains(&format!("\"{b}\"")) && expr.contains(b) {
            return if *b == "env" {
                "env operations have been disabled".into()
            } else {
                format!("{b} is not available in limactl expressions")
            };
        }
    }
    // jaq's errors are structured; keep the readable part.
    let s = s.replace("[(File { code: ", "").replace(", path: () }", "");
    if s.len() > 300 {
        format!("{}…", &s[..300])
    } else {
        s
    }
}

/// Evaluates an expression that must produce exactly one value (an edit).
pub fn eval_one(expr: &str, input: &serde_json::Value) -> Result<serde_json::Value, YqError> {
    let mut out = eval(expr, input)?;
    if out.len() != 1 {
        return Err(YqError::NotOne {
            expr: expr.to_string(),
            count: out.len(),
        });
    }
    Ok(out.pop().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edits_like_lima_set() {
        let v = json!({"cpus": 2, "mounts": [{"location": "/a"}]});
        assert_eq!(
            eval_one(".cpus = 4 | .memory = \"8GiB\"", &v).unwrap()["memory"],
            "8GiB"
        );
        assert_eq!(
            eval_one(".mounts[0].writable = true", &v).unwrap()["mounts"][0]["writable"],
            true
        );
        assert_eq!(
            eval_one("del(.cpus)", &v).unwrap(),
            json!({"mounts": [{"location": "/a"}]})
        );
        assert_eq!(eval_one(".cpus |= . * 2", &v).unwrap()["cpus"], 4);
        assert_eq!(
            eval("select(.cpus > 1) | .cpus", &v).unwrap(),
            vec![json!(2)]
        );
    }

    #[test]
    fn assignments_create_missing_structure_like_jq() {
        assert_eq!(
            eval_one(".ssh.localPort = 2222", &json!({})).unwrap(),
            json!({"ssh": {"localPort": 2222}})
        );
        assert_eq!(
            eval_one(".a[1] = 1", &json!(null)).unwrap(),
            json!({"a": [null, 1]})
        );
        assert_eq!(
            eval_one(".param[\"K\"] = \"v\"", &json!({})).unwrap(),
            json!({"param": {"K": "v"}})
        );
    }

    #[test]
    fn environment_and_inputs_are_refused() {
        for e in ["env", "$ENV", "env.HOME", "input", "[inputs]", "halt"] {
            assert!(eval(e, &json!({})).is_err(), "{e} should be refused");
        }
        let err = eval("env.HOME", &json!({})).unwrap_err().to_string();
        assert!(err.contains("env operations have been disabled"), "{err}");
    }

    #[test]
    fn errors_are_reported() {
        assert!(matches!(
            eval(".[", &json!({})),
            Err(YqError::Compile { .. })
        ));
        assert!(matches!(
            eval(".a.b", &json!({"a": 1})),
            Err(YqError::Run { .. })
        ));
        assert!(matches!(
            eval_one(".[]", &json!([1, 2])),
            Err(YqError::NotOne { .. })
        ));
    }
}
