//! The yq front end: yq expressions translated into jq for the jaq engine.
//!
//! jq and yq share most of their syntax, so an expression is parsed by jaq's
//! parser, the parts where yq differs are rewritten, and the tree is printed
//! back as jq text: `==`/`!=` compare scalars by their text (and `*` in the
//! right-hand string is a wildcard), `env(NAME)`/`strenv(NAME)` read the
//! environment (or are refused with yq's message), `P | key` and `P | line`
//! become path look-ups, `X as $v ireduce (I; U)` becomes `reduce`, and the
//! operators yq adds (`tag`, `with`, `to_json`, `upcase`, …) are definitions
//! in [`DEFS`].

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::{Opt, Part, Path};

/// What an expression may reach beyond its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// `env(NAME)` / `strenv(NAME)` read the environment (`limactl yq`);
    /// elsewhere they fail with yq's "env operations have been disabled".
    pub env: bool,
}

/// yq's operators that jq lacks, and helpers of the rewrites, in jq.
pub const DEFS: &str = r#"
def _yq_s: if type == "string" then . elif type == "null" then "null" else tojson end;
def _yq_re_esc: [explode[] | [.] | implode | if test("^[!-/:-;=?-@\\[-`{-~]$") then "\\" + . else . end] | join("");
def _yq_glob($p): if ($p | contains("*")) | not then . == $p
  else test("^" + ($p | split("*") | map(_yq_re_esc) | join(".*")) + "$"; "s") end;
def _yq_container: type == "object" or type == "array";
def _yq_eq(l; r): r as $r | l as $l
  | if $l == null then $r == null
    elif ($l | _yq_container) or ($r | _yq_container) then $l == $r
    else $l | _yq_s | _yq_glob($r | _yq_s) end;
def _yq_ne(l; r): _yq_eq(l; r) | not;
def _yq_key(f): path(f) | if length == 0 then null else .[-1] end;
def _yq_line(f): path(f) | tojson as $p | $__yq_lines[$p][0] // 0;
def _yq_column(f): path(f) | tojson as $p | $__yq_lines[$p][1] // 0;
def _yq_sp($n): [range($n) | " "] | join("");
def _yq_pretty($n; $lvl):
  if type == "object" and length > 0 then
    "{\n" + ([to_entries[] | _yq_sp($n * ($lvl + 1)) + (.key | tojson) + ": " + (.value | _yq_pretty($n; $lvl + 1))] | join(",\n")) + "\n" + _yq_sp($n * $lvl) + "}"
  elif type == "array" and length > 0 then
    "[\n" + ([.[] | _yq_sp($n * ($lvl + 1)) + _yq_pretty($n; $lvl + 1)] | join(",\n")) + "\n" + _yq_sp($n * $lvl) + "]"
  else tojson end;
def tag: if type == "string" then "!!str"
  elif type == "number" then (if tostring | test("^-?[0-9]+$") then "!!int" else "!!float" end)
  elif type == "boolean" then "!!bool" elif type == "null" then "!!null"
  elif type == "array" then "!!seq" else "!!map" end;
def with(p; f): p |= f;
def to_json($n): if $n == 0 then tojson else _yq_pretty($n; 0) + "\n" end;
def to_json: to_json(2);
def from_json: fromjson;
def to_string: tostring;
def upcase: ascii_upcase;
def downcase: ascii_downcase;
def explode(f): .;
def sort_keys(f): f |= (if type == "object" then to_entries | sort_by(.key) | from_entries else . end);
def filename: $__yq_file;
def fileIndex: $__yq_fi;
def fi: $__yq_fi;
def documentIndex: $__yq_di;
def di: $__yq_di;
"#;

/// The global variables [`DEFS`] read, in the order their values are given.
pub const GLOBALS: [&str; 5] = [
    "$__yq_lines",
    "$__yq_file",
    "$__yq_fi",
    "$__yq_di",
    "$__yq_docs",
];

/// yq's messages for the operations limactl never or not here performs.
const FILE_OPS: &[&str] = &[
    "load",
    "load_str",
    "load_xml",
    "load_props",
    "load_base64",
    "load_csv",
    "load_tsv",
];

/// Rewrites `X as $v ireduce (I; U)` into jq's `reduce X as $v (I; U)`
/// (jaq's parser does not know the form). `X` is the word or path right
/// before `as`; in `eval-all` mode a `.` there stands for every document.
pub fn ireduce(expr: &str, all_docs: bool) -> String {
    let mut out = expr.to_string();
    while let Some(at) = out.find(" ireduce") {
        let before = &out[..at];
        let Some(as_at) = before.rfind(" as ") else {
            break;
        };
        let var = before[as_at + 4..].trim();
        let head = before[..as_at].trim_end();
        let start = head
            .rfind(|c: char| c.is_whitespace() || c == '|' || c == '(')
            .map_or(0, |i| i + 1);
        let source = &head[start..];
        let source = if all_docs && source == "." {
            "$__yq_docs[]"
        } else {
            source
        };
        let rest = out[at + " ireduce".len()..].to_string();
        out = format!(
            "{}reduce {source} as {var} {}",
            &head[..start],
            rest.trim_start()
        );
    }
    out
}

/// The translated expression, or yq's message for what it may not do.
pub fn translate(expr: &str, access: Access) -> Result<Option<String>, String> {
    let Some(term) = jaq_core::load::parse(expr, |p| p.term()) else {
        // Not parseable: the caller reports jaq's error on the original.
        return Ok(None);
    };
    let arena = jaq_core::load::Arena::default();
    let term = rewrite(term, access, &arena)?;
    let mut out = String::new();
    print(&term, &mut out);
    Ok(Some(out))
}

fn call<'a>(name: &'a str, args: Vec<Term<&'a str>>) -> Term<&'a str> {
    Term::Call(name, args)
}

fn string_lit(s: &str) -> Term<&str> {
    Term::Str(None, vec![StrPart::Str(s)])
}

/// The name of `env(NAME)` / `env("NAME")`.
fn env_name<'a>(arg: &Term<&'a str>) -> Option<&'a str> {
    match arg {
        Term::Call(name, args) if args.is_empty() => Some(name),
        Term::Str(None, parts) => match parts.as_slice() {
            [StrPart::Str(s)] => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// `env(NAME)` (the value parsed as YAML) or `strenv(NAME)` (a string).
fn env_value<'a>(name: &'a str, as_yaml: bool, arena: &'a jaq_core::load::Arena) -> Term<&'a str> {
    let raw = std::env::var(name).unwrap_or_default();
    if !as_yaml {
        return string_lit(arena.alloc(raw));
    }
    if raw.is_empty() {
        let msg = arena.alloc(format!(
            "value for env variable '{name}' not provided in env()"
        ));
        return call("error", vec![string_lit(msg)]);
    }
    let value = crate::spec::yaml::parse_single("<env>", &raw)
        .ok()
        .flatten()
        .map(|n| n.to_json())
        .unwrap_or(serde_json::Value::String(raw));
    let json = arena.alloc(value.to_string());
    Term::BinOp(
        Box::new(string_lit(json)),
        BinaryOp::Pipe(None),
        Box::new(call("fromjson", vec![])),
    )
}

/// A pipe chain `a | b | c` (right-nested) as its parts; `as` bindings end it.
fn flatten<'a>(t: Term<&'a str>, out: &mut Vec<Term<&'a str>>) {
    match t {
        Term::BinOp(l, BinaryOp::Pipe(None), r) => {
            flatten(*l, out);
            flatten(*r, out);
        }
        t => out.push(t),
    }
}

fn chain(mut parts: Vec<Term<&str>>) -> Term<&str> {
    let mut t = parts.pop().unwrap_or(Term::Id);
    while let Some(l) = parts.pop() {
        t = Term::BinOp(Box::new(l), BinaryOp::Pipe(None), Box::new(t));
    }
    t
}

/// `key`, `line` and `column` need the path that led to the value.
fn path_op(t: &Term<&str>) -> Option<&'static str> {
    match t {
        Term::Call("key", a) if a.is_empty() => Some("_yq_key"),
        Term::Call("line", a) if a.is_empty() => Some("_yq_line"),
        Term::Call("column", a) if a.is_empty() => Some("_yq_column"),
        _ => None,
    }
}

fn rewrite_all<'a>(
    ts: Vec<Term<&'a str>>,
    access: Access,
    arena: &'a jaq_core::load::Arena,
) -> Result<Vec<Term<&'a str>>, String> {
    ts.into_iter().map(|t| rewrite(t, access, arena)).collect()
}

#[allow(clippy::boxed_local)] // the trees hold their children boxed
fn rewrite_box<'a>(
    t: Box<Term<&'a str>>,
    access: Access,
    arena: &'a jaq_core::load::Arena,
) -> Result<Box<Term<&'a str>>, String> {
    Ok(Box::new(rewrite(*t, access, arena)?))
}

fn rewrite<'a>(
    t: Term<&'a str>,
    access: Access,
    arena: &'a jaq_core::load::Arena,
) -> Result<Term<&'a str>, String> {
    let r = |t| rewrite(t, access, arena);
    Ok(match t {
        Term::BinOp(l, BinaryOp::Pipe(None), rt) => {
            let mut parts = Vec::new();
            flatten(Term::BinOp(l, BinaryOp::Pipe(None), rt), &mut parts);
            let mut done: Vec<Term<&'a str>> = Vec::new();
            for p in parts {
                match path_op(&p) {
                    Some(f) if !done.is_empty() => {
                        let led = chain(std::mem::take(&mut done));
                        done.push(call(f, vec![led]));
                    }
                    _ => done.push(r(p)?),
                }
            }
            chain(done)
        }
        Term::BinOp(l, BinaryOp::Cmp(c), rt) => {
            let (l, rt) = (r(*l)?, r(*rt)?);
            match c.as_str() {
                "==" => call("_yq_eq", vec![l, rt]),
                "!=" => call("_yq_ne", vec![l, rt]),
                _ => Term::BinOp(Box::new(l), BinaryOp::Cmp(c), Box::new(rt)),
            }
        }
        Term::BinOp(l, op, rt) => Term::BinOp(
            rewrite_box(l, access, arena)?,
            op,
            rewrite_box(rt, access, arena)?,
        ),
        Term::Call(name @ ("env" | "strenv"), args) if args.len() == 1 => {
            if !access.env {
                return Err("env operations have been disabled".into());
            }
            let Some(var) = env_name(&args[0]) else {
                return Err(format!(
                    "{name}() takes the name of a variable, as in {name}(HOME)"
                ));
            };
            env_value(var, name == "env", arena)
        }
        Term::Call("envsubst", _) => {
            return Err(if access.env {
                "envsubst is not supported by limactl's yq".into()
            } else {
                "env operations have been disabled".into()
            });
        }
        Term::Call(name, _) if FILE_OPS.contains(&name) => {
            return Err("file operations have been disabled".into());
        }
        Term::Call("system", _) => {
            return Err(
                "system operations are disabled, use --security-enable-system-operator to enable"
                    .into(),
            );
        }
        Term::Call(name, args)
            if path_op(&Term::Call(name, vec![])).is_some() && args.is_empty() =>
        {
            // Alone, the value's path is that of `.`.
            call(path_op(&Term::Call(name, vec![])).unwrap(), vec![Term::Id])
        }
        Term::Call(name, args) => Term::Call(name, rewrite_all(args, access, arena)?),
        Term::Str(f, parts) => Term::Str(
            f,
            parts
                .into_iter()
                .map(|p| match p {
                    StrPart::Term(t) => r(t).map(StrPart::Term),
                    StrPart::Str(s) => Ok(StrPart::Str(s)),
                    StrPart::Char(c) => Ok(StrPart::Char(c)),
                })
                .collect::<Result<_, String>>()?,
        ),
        Term::Arr(Some(t)) => Term::Arr(Some(rewrite_box(t, access, arena)?)),
        Term::Obj(kvs) => Term::Obj(
            kvs.into_iter()
                .map(|(k, v)| Ok((r(k)?, v.map(r).transpose()?)))
                .collect::<Result<_, String>>()?,
        ),
        Term::Neg(t) => Term::Neg(rewrite_box(t, access, arena)?),
        Term::Label(x, t) => Term::Label(x, rewrite_box(t, access, arena)?),
        Term::Fold(f, xs, p, args) => Term::Fold(
            f,
            rewrite_box(xs, access, arena)?,
            p,
            rewrite_all(args, access, arena)?,
        ),
        Term::TryCatch(t, c) => Term::TryCatch(
            rewrite_box(t, access, arena)?,
            c.map(|c| rewrite_box(c, access, arena)).transpose()?,
        ),
        Term::IfThenElse(branches, e) => Term::IfThenElse(
            branches
                .into_iter()
                .map(|(c, t)| Ok((r(c)?, r(t)?)))
                .collect::<Result<_, String>>()?,
            e.map(|e| rewrite_box(e, access, arena)).transpose()?,
        ),
        Term::Def(defs, t) => Term::Def(
            defs.into_iter()
                .map(|d| {
                    Ok(Def {
                        name: d.name,
                        args: d.args,
                        body: r(d.body)?,
                    })
                })
                .collect::<Result<_, String>>()?,
            rewrite_box(t, access, arena)?,
        ),
        Term::Path(t, path) => Term::Path(
            rewrite_box(t, access, arena)?,
            Path(
                path.0
                    .into_iter()
                    .map(|(part, opt)| {
                        let part = match part {
                            Part::Index(i) => Part::Index(r(i)?),
                            Part::Range(a, b) => {
                                Part::Range(a.map(r).transpose()?, b.map(r).transpose()?)
                            }
                        };
                        Ok((part, opt))
                    })
                    .collect::<Result<_, String>>()?,
            ),
        ),
        t @ (Term::Id
        | Term::Recurse
        | Term::Num(_)
        | Term::Arr(None)
        | Term::Break(_)
        | Term::Var(_)) => t,
    })
}

/// A string's characters as a jq string literal's body.
fn escaped(s: &str) -> String {
    let q = serde_json::Value::String(s.to_string()).to_string();
    q[1..q.len() - 1].to_string()
}

fn paren(t: &Term<&str>, out: &mut String) {
    out.push('(');
    print(t, out);
    out.push(')');
}

fn print_pattern(p: &Pattern<&str>, out: &mut String) {
    match p {
        Pattern::Var(x) => out.push_str(x),
        Pattern::Arr(ps) => {
            out.push('[');
            for (i, p) in ps.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print_pattern(p, out);
            }
            out.push(']');
        }
        Pattern::Obj(kps) => {
            out.push('{');
            for (i, (k, p)) in kps.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                paren(k, out);
                out.push_str(": ");
                print_pattern(p, out);
            }
            out.push('}');
        }
    }
}

/// Prints a term as jq text; every operand is parenthesised, so the text
/// parses back to the same tree whatever the precedences.
pub fn print(t: &Term<&str>, out: &mut String) {
    match t {
        Term::Id => out.push('.'),
        Term::Recurse => out.push_str(".."),
        Term::Num(n) => out.push_str(n),
        Term::Str(fmt, parts) => {
            if let Some(f) = fmt {
                out.push_str(f);
                out.push(' ');
            }
            out.push('"');
            for p in parts {
                match p {
                    StrPart::Str(s) => out.push_str(&escaped(s)),
                    StrPart::Char(c) => out.push_str(&escaped(&c.to_string())),
                    StrPart::Term(t) => {
                        out.push_str("\\(");
                        print(t, out);
                        out.push(')');
                    }
                }
            }
            out.push('"');
        }
        Term::Arr(None) => out.push_str("[]"),
        Term::Arr(Some(t)) => {
            out.push('[');
            print(t, out);
            out.push(']');
        }
        Term::Obj(kvs) => {
            out.push('{');
            for (i, (k, v)) in kvs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match k {
                    Term::Str(..) | Term::Var(_) => print(k, out),
                    k => paren(k, out),
                }
                if let Some(v) = v {
                    out.push_str(": ");
                    paren(v, out);
                }
            }
            out.push('}');
        }
        Term::Neg(t) => {
            out.push('-');
            paren(t, out);
        }
        Term::BinOp(l, op, r) => {
            out.push('(');
            paren(l, out);
            let op = match op {
                BinaryOp::Pipe(None) => " | ".to_string(),
                BinaryOp::Pipe(Some(p)) => {
                    let mut s = " as ".to_string();
                    print_pattern(p, &mut s);
                    s.push_str(" | ");
                    s
                }
                BinaryOp::Comma => ", ".into(),
                BinaryOp::Alt => " // ".into(),
                BinaryOp::Or => " or ".into(),
                BinaryOp::And => " and ".into(),
                BinaryOp::Math(m) => format!(" {} ", m.as_str()),
                BinaryOp::Cmp(c) => format!(" {} ", c.as_str()),
                BinaryOp::Assign => " = ".into(),
                BinaryOp::Update => " |= ".into(),
                BinaryOp::UpdateMath(m) => format!(" {}= ", m.as_str()),
                BinaryOp::UpdateAlt => " //= ".into(),
            };
            out.push_str(&op);
            paren(r, out);
            out.push(')');
        }
        Term::Label(x, t) => {
            out.push_str("(label ");
            out.push_str(x);
            out.push_str(" | ");
            print(t, out);
            out.push(')');
        }
        Term::Break(x) => {
            out.push_str("break ");
            out.push_str(x);
        }
        Term::Fold(f, xs, p, args) => {
            out.push_str(f);
            out.push(' ');
            paren(xs, out);
            out.push_str(" as ");
            print_pattern(p, out);
            out.push_str(" (");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str("; ");
                }
                print(a, out);
            }
            out.push(')');
        }
        Term::TryCatch(t, c) => {
            out.push_str("(try ");
            paren(t, out);
            if let Some(c) = c {
                out.push_str(" catch ");
                paren(c, out);
            }
            out.push(')');
        }
        Term::IfThenElse(branches, e) => {
            for (i, (c, t)) in branches.iter().enumerate() {
                out.push_str(if i == 0 { "if " } else { " elif " });
                print(c, out);
                out.push_str(" then ");
                print(t, out);
            }
            if let Some(e) = e {
                out.push_str(" else ");
                print(e, out);
            }
            out.push_str(" end");
        }
        Term::Def(defs, t) => {
            out.push('(');
            for d in defs {
                out.push_str("def ");
                out.push_str(d.name);
                if !d.args.is_empty() {
                    out.push('(');
                    out.push_str(&d.args.join("; "));
                    out.push(')');
                }
                out.push_str(": ");
                print(&d.body, out);
                out.push_str("; ");
            }
            print(t, out);
            out.push(')');
        }
        Term::Call(name, args) => {
            out.push_str(name);
            if !args.is_empty() {
                out.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str("; ");
                    }
                    print(a, out);
                }
                out.push(')');
            }
        }
        Term::Var(x) => out.push_str(x),
        Term::Path(t, path) => {
            match t.as_ref() {
                Term::Id => out.push('.'),
                t => paren(t, out),
            }
            for (part, opt) in &path.0 {
                out.push('[');
                match part {
                    Part::Index(i) => print(i, out),
                    Part::Range(None, None) => {}
                    Part::Range(a, b) => {
                        if let Some(a) = a {
                            print(a, out);
                        }
                        out.push(':');
                        if let Some(b) = b {
                            print(b, out);
                        }
                    }
                }
                out.push(']');
                if matches!(opt, Opt::Optional) {
                    out.push('?');
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(e: &str) -> String {
        translate(e, Access { env: true })
            .unwrap()
            .unwrap_or_else(|| panic!("does not parse: {e}"))
    }

    #[test]
    fn printed_text_parses_back_to_the_same_text() {
        for e in [
            ".a.b[0] = 1 | .c |= . + 1",
            "[.[] | select(.x == \"y\")] | length",
            "{a: 1, \"b\": .c, $__loc__, (.k): [1, 2]}",
            "reduce .[] as [$a, $b] (0; . + $a)",
            "if . then 1 elif 2 then 3 else 4 end",
            "def f(g; $x): g + $x; f(.; 1)",
            "try error(\"x\") catch .",
            "label $out | .[] | if . > 1 then ., break $out else . end",
            "\"a\\(.b)c\\n\" | @base64 \"x\\(.)\"",
            ".a[1:2], .b[:3], .c[1:], .d[]?, -(.e)",
            ".a //= 1 | .b += 2 | .c // .d",
        ] {
            let once = tr(e);
            assert_eq!(tr(&once), once, "{e}");
        }
    }

    #[test]
    fn ireduce_becomes_reduce() {
        assert_eq!(
            ireduce(". as $item ireduce ({}; . * $item)", true),
            "reduce $__yq_docs[] as $item ({}; . * $item)"
        );
        assert_eq!(
            ireduce(".[] as $x ireduce (0; . + $x)", false),
            "reduce .[] as $x (0; . + $x)"
        );
    }

    #[test]
    fn restricted_operations_get_yqs_messages() {
        let no = Access { env: false };
        assert_eq!(
            translate("env(HOME)", no).unwrap_err(),
            "env operations have been disabled"
        );
        assert_eq!(
            translate(".a = strenv(HOME)", no).unwrap_err(),
            "env operations have been disabled"
        );
        assert_eq!(
            translate("load(\"/etc/passwd\")", Access { env: true }).unwrap_err(),
            "file operations have been disabled"
        );
        assert_eq!(
            translate("system(\"id\")", Access { env: true }).unwrap_err(),
            "system operations are disabled, use --security-enable-system-operator to enable"
        );
    }
}
