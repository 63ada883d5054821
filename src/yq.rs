//! yq expressions over YAML and JSON documents: what `limactl yq`,
//! `list --yq/--filter` and the `--set` edit flags evaluate. [`front`]
//! translates yq into jq, which the jaq engine runs. Environment operations
//! are available only where Lima allows them (`limactl yq`); file, system
//! and input operations never are.

pub mod front;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

use crate::spec::yaml::quote_name;
use crate::sync::MutexExt;

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
    #[error("invalid expression {}: {message}", quoted(expr))]
    Compile { expr: String, message: String },
    #[error("expression {} failed: {message}", quoted(expr))]
    Run { expr: String, message: String },
    #[error(
        "expression {} produced {count} results, expected exactly one",
        quoted(expr)
    )]
    NotOne { expr: String, count: usize },
    /// The evaluation reached one of its [`Limits`].
    #[error("expression {} {bound}", quoted(expr))]
    Bound { expr: String, bound: Bound },
}

/// An expression as shown in messages: quoted, and cut when very long.
fn quoted(expr: &str) -> String {
    const SHOWN: usize = 120;
    if expr.chars().count() <= SHOWN {
        return quote_name(expr);
    }
    let head: String = expr.chars().take(SHOWN).collect();
    format!("{}…", quote_name(&head))
}

/// Which of the [`Limits`] an evaluation reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Bound {
    #[error("did not finish within {}s (an endless loop?)", .0.as_secs_f64())]
    Time(Duration),
    #[error(
        "recursed too deeply: its {} MiB evaluation stack is exhausted (an endless recursion?)",
        STACK_BYTES >> 20
    )]
    Depth,
    #[error("needed more than {} MiB of memory", .0 >> 20)]
    Memory(usize),
    #[error("produced more than {0} results")]
    Outputs(usize),
}

/// What one evaluation may use. jq is a programming language: unbounded,
/// `def f: 1+f; f` overflows the stack (which aborts the whole process),
/// `def f: f; f` never ends and `[repeat(.)]` takes all memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub time: Duration,
    /// Bytes the evaluation may have allocated at once (its copy of the
    /// input included).
    pub memory: usize,
    pub outputs: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        time: Duration::from_secs(5),
        memory: 512 << 20,
        outputs: 100_000,
    };
}

/// The evaluation thread's stack. jaq recurses in Rust for each nested
/// call; 64 MiB takes recursions thousands of levels deep while an endless
/// one still ends quickly. Only the pages touched become resident.
const STACK_BYTES: usize = 64 << 20;

fn to_val(v: &serde_json::Value) -> Val {
    jaq_json::read::parse_single(v.to_string().as_bytes()).expect("serde_json output is valid JSON")
}

fn from_val(v: &Val) -> Result<serde_json::Value, String> {
    serde_json::from_str(&v.to_string())
        .map_err(|e| format!("result is not representable as JSON: {e}"))
}

/// Evaluates `expr` on `input` and returns every output, within [`Limits::DEFAULT`].
pub fn eval(expr: &str, input: &serde_json::Value) -> Result<Vec<serde_json::Value>, YqError> {
    eval_with(expr, input, &Limits::DEFAULT)
}

/// Evaluates `expr` on each of `inputs` (outputs by input, in order),
/// compiled once and run on one evaluation thread: `list --filter`/`--yq`
/// over many instances. The time bound covers the whole batch.
pub fn eval_each(
    expr: &str,
    inputs: &[serde_json::Value],
) -> Result<Vec<Vec<serde_json::Value>>, YqError> {
    eval_batch(expr, inputs.to_vec(), &Options::default())
}

/// Where a document came from, for yq's `filename`, `fileIndex`,
/// `documentIndex`, `line` and `column`, and every document for `eval-all`.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub file: String,
    pub file_index: usize,
    pub doc_index: usize,
    /// Path (as JSON text, e.g. `["a",0]`) → `[line, column]`.
    pub lines: serde_json::Map<String, serde_json::Value>,
    /// `eval-all`: every document, which `. as $x ireduce (…)` folds over.
    pub all_docs: Option<Vec<serde_json::Value>>,
}

impl Origin {
    /// The origin of `node`, document `doc_index` of file number `file_index`.
    pub fn of(
        file: &str,
        file_index: usize,
        doc_index: usize,
        node: &crate::spec::yaml::Node,
    ) -> Self {
        let mut lines = serde_json::Map::new();
        record_lines(node, &mut Vec::new(), &mut lines);
        Origin {
            file: file.to_string(),
            file_index,
            doc_index,
            lines,
            all_docs: None,
        }
    }
}

fn record_lines(
    node: &crate::spec::yaml::Node,
    path: &mut Vec<serde_json::Value>,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    use crate::spec::yaml::Value as Y;
    if let Some(loc) = &node.loc {
        out.insert(
            serde_json::Value::Array(path.clone()).to_string(),
            serde_json::json!([loc.line, loc.col]),
        );
    }
    match &node.value {
        Y::Map(entries) => {
            for e in entries {
                path.push(e.key.clone().into());
                record_lines(&e.value, path, out);
                path.pop();
            }
        }
        Y::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                path.push(i.into());
                record_lines(n, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// How an evaluation runs: what it may reach, where its input came from,
/// and its bounds.
#[derive(Clone, Debug)]
pub struct Options {
    pub access: front::Access,
    pub origin: Origin,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            access: front::Access::default(),
            origin: Origin::default(),
            limits: Limits::DEFAULT,
        }
    }
}

/// Evaluates `expr` on `input` within `limits`.
///
/// Compilation (jaq's lexer and parser recurse too) and evaluation run on a
/// thread of their own, watched from here. A thread cannot be killed: one
/// that reaches a bound is stopped where it stands and stays parked until
/// the process exits (limactl is a CLI: it exits after reporting the error):
/// - depth: a stack overflow hits the thread's guard page; [`guard`]'s
///   SIGSEGV handler parks the thread instead of letting the process abort;
/// - memory: [`guard`]'s allocator parks the thread at the allocation that
///   would exceed the budget, so memory stays bounded;
/// - time: the thread is told to stop (it parks at its next allocation)
///   and gets the lowest CPU priority, for a loop that allocates nothing
///   cannot be stopped from outside.
///
/// An expression left behind is not run again in this process: it fails at
/// once with the same error, so that filtering many instances with a
/// runaway expression leaves one thread behind, not one per instance.
pub fn eval_with(
    expr: &str,
    input: &serde_json::Value,
    limits: &Limits,
) -> Result<Vec<serde_json::Value>, YqError> {
    eval_opts(
        expr,
        input,
        &Options {
            limits: *limits,
            ..Options::default()
        },
    )
}

/// Evaluates `expr` on `input` with `opts` (see [`eval_with`]).
pub fn eval_opts(
    expr: &str,
    input: &serde_json::Value,
    opts: &Options,
) -> Result<Vec<serde_json::Value>, YqError> {
    let mut outs = eval_batch(expr, vec![input.clone()], opts)?;
    Ok(outs.pop().unwrap_or_default())
}

/// [`eval_opts`] over several inputs, compiled once (see [`eval_each`]).
fn eval_batch(
    expr: &str,
    inputs: Vec<serde_json::Value>,
    opts: &Options,
) -> Result<Vec<Vec<serde_json::Value>>, YqError> {
    let limits = &opts.limits;
    let reached = |bound: Bound| YqError::Bound {
        expr: expr.to_string(),
        bound,
    };
    if let Some(b) = abandoned(expr) {
        return Err(reached(b));
    }
    guard::install();
    let shared = Arc::new(guard::Shared::new(limits.memory));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let worker = {
        let (expr, shared) = (expr.to_string(), shared.clone());
        let opts = opts.clone();
        move || {
            let watched = guard::Watched::enter(shared);
            let result = run(&expr, &inputs, &opts);
            drop(watched);
            let _ = tx.send(result);
        }
    };
    std::thread::Builder::new()
        .name("yq".into())
        .stack_size(STACK_BYTES)
        .spawn(worker)
        .map_err(|e| YqError::Run {
            expr: expr.to_string(),
            message: format!("cannot start its evaluation thread: {e}"),
        })?;
    let deadline = Instant::now() + limits.time;
    loop {
        // Polled: a parked thread cannot send (its handler may not allocate).
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(result) => return result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Ended without a result: jaq panicked (the panic hook has
                // reported where).
                return Err(YqError::Run {
                    expr: expr.to_string(),
                    message: "the evaluator failed unexpectedly".into(),
                });
            }
        }
        let bound = match shared.parked() {
            Some(guard::Parked::Stack) => Bound::Depth,
            Some(guard::Parked::Memory) => Bound::Memory(limits.memory),
            Some(guard::Parked::Stopped) => Bound::Time(limits.time),
            None if Instant::now() >= deadline => {
                shared.stop();
                Bound::Time(limits.time)
            }
            None => continue,
        };
        abandon(expr, bound.clone());
        return Err(reached(bound));
    }
}

/// Expressions whose evaluation was left behind, with the bound they reached.
static ABANDONED: Mutex<Vec<(String, Bound)>> = Mutex::new(Vec::new());

fn abandoned(expr: &str) -> Option<Bound> {
    ABANDONED
        .locked()
        .iter()
        .find(|(e, _)| e == expr)
        .map(|(_, b)| b.clone())
}

fn abandon(expr: &str, bound: Bound) {
    ABANDONED.locked().push((expr.to_string(), bound));
}

/// Compiles `expr` once and runs it on each input (on the evaluation thread).
fn run(
    expr: &str,
    inputs: &[serde_json::Value],
    opts: &Options,
) -> Result<Vec<Vec<serde_json::Value>>, YqError> {
    let max_outputs = opts.limits.outputs;
    let compile_err = |message: String| YqError::Compile {
        expr: expr.to_string(),
        message,
    };
    if expr.contains("$ENV") {
        return Err(compile_err("env operations have been disabled".into()));
    }
    let origin = &opts.origin;
    let source = front::ireduce(expr, origin.all_docs.is_some());
    let code = match front::translate(&source, opts.access) {
        Err(message) => return Err(compile_err(message)),
        Ok(Some(code)) => code,
        // Not parseable: jaq's errors on the text as written.
        Ok(None) => source,
    };
    let code = code.as_str();
    let yq_defs =
        jaq_core::load::parse(front::DEFS, |p| p.defs()).expect("the yq definitions parse");
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|d| !BLOCKED.contains(&d.name))
        .chain(yq_defs);
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !BLOCKED.contains(name));
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|errs| compile_err(describe_load(&errs, expr)))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .with_global_vars(front::GLOBALS)
        .compile(modules)
        .map_err(|errs| compile_err(describe_compile(&errs, expr)))?;
    let globals = [
        serde_json::Value::Object(origin.lines.clone()),
        origin.file.clone().into(),
        origin.file_index.into(),
        origin.doc_index.into(),
        serde_json::Value::Array(origin.all_docs.clone().unwrap_or_default()),
    ];
    let globals: Vec<Val> = globals.iter().map(to_val).collect();
    let mut outs = Vec::with_capacity(inputs.len());
    for input in inputs {
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new(globals.iter().cloned()));
        outs.push(run_one(expr, &filter, ctx, input, max_outputs)?);
    }
    Ok(outs)
}

/// One input through a compiled filter, within the output bound.
fn run_one(
    expr: &str,
    filter: &jaq_core::Filter<data::JustLut<Val>>,
    ctx: Ctx<data::JustLut<Val>>,
    input: &serde_json::Value,
    max_outputs: usize,
) -> Result<Vec<serde_json::Value>, YqError> {
    let mut out = Vec::new();
    for r in filter.id.run((ctx, to_val(input))).map(unwrap_valr) {
        if out.len() == max_outputs {
            return Err(YqError::Bound {
                expr: expr.to_string(),
                bound: Bound::Outputs(max_outputs),
            });
        }
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

/// Where `part` (a slice of `code`, as jaq's errors hold them) starts, in words.
fn position(code: &str, part: &str) -> String {
    let at = (part.as_ptr() as usize).wrapping_sub(code.as_ptr() as usize);
    if at >= code.len() {
        // The end of the text (jaq's "no token found" is the empty slice there).
        return "at the end of the expression".into();
    }
    let before = &code[..at];
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    match before.matches('\n').count() {
        0 => format!("at column {col}"),
        n => format!("at line {}, column {col}", n + 1),
    }
}

/// What was found at `part`: its beginning, quoted, and where.
fn found(code: &str, part: &str) -> String {
    let at = (part.as_ptr() as usize).wrapping_sub(code.as_ptr() as usize);
    if part.is_empty() || at >= code.len() {
        return "the end of the expression".into();
    }
    let shown: String = part.chars().take(20).take_while(|c| *c != '\n').collect();
    format!("{} {}", quote_name(&shown), position(code, part))
}

/// `term` → "a term", `identifier` → "an identifier".
fn with_article(what: &str) -> String {
    match what.chars().next() {
        Some(c) if "aeiou".contains(c) => format!("an {what}"),
        _ => format!("a {what}"),
    }
}

/// Lexer and parser errors in words: what was expected, what was found, where.
fn describe_load(errs: &jaq_core::load::Errors<&str, ()>, expr: &str) -> String {
    use jaq_core::load::Error;
    use jaq_core::load::lex::Expect;
    let mut out = Vec::new();
    for (file, e) in errs {
        let code = file.code;
        match e {
            Error::Io(es) => out.extend(
                es.iter()
                    .map(|(path, msg)| format!("cannot load module {}: {msg}", quote_name(path))),
            ),
            Error::Lex(es) => out.extend(es.iter().map(|(want, rest)| match want {
                Expect::Delim(open) => format!(
                    "{} {} is not closed: expected a {} {}",
                    quote_name(open),
                    position(code, open),
                    match *open {
                        "(" => "closing parenthesis",
                        "[" => "closing bracket",
                        "{" => "closing brace",
                        _ => "closing quote",
                    },
                    position(code, rest)
                ),
                Expect::Token => format!("unexpected {}", found(code, rest)),
                other => format!(
                    "expected {} {}",
                    with_article(other.as_str()),
                    position(code, rest)
                ),
            })),
            Error::Parse(es) => out.extend(es.iter().map(|(want, got)| {
                use jaq_core::load::parse::Expect as P;
                let want = match want {
                    P::Just(tok) => quote_name(tok),
                    P::ElseOrEnd => "`else` or `end`".into(),
                    P::CommaOrRBrack => "`,` or `]`".into(),
                    P::CommaOrRBrace => "`,` or `}`".into(),
                    P::SemicolonOrRParen => "`;` or `)`".into(),
                    P::Nothing => "the end of the expression".into(),
                    other => with_article(other.as_str()),
                };
                format!("expected {want}, found {}", found(code, got))
            })),
        }
    }
    if out.is_empty() {
        out.push(format!("cannot parse {}", quoted(expr)));
    }
    first_few(out)
}

/// The first errors (one unclosed bracket is often reported for each level).
fn first_few(mut errors: Vec<String>) -> String {
    const SHOWN: usize = 3;
    let more = errors.len().saturating_sub(SHOWN);
    errors.truncate(SHOWN);
    let mut s = errors.join("; ");
    if more > 0 {
        s.push_str(&format!(" (and {more} more)"));
    }
    s
}

/// Undefined names in words; blocked ones are said to be unavailable.
fn describe_compile(errs: &jaq_core::compile::Errors<&str, ()>, expr: &str) -> String {
    use jaq_core::compile::Undefined;
    let mut out = Vec::new();
    for (file, es) in errs {
        for (name, what) in es {
            if let Some(m) = blocked(name, expr) {
                return m;
            }
            let shown = match what {
                Undefined::Filter(n) if *n > 0 => format!("{name}/{n}"),
                _ => name.to_string(),
            };
            // The compiled text is the translation; positions are the user's.
            let at = if file.code == expr {
                position(file.code, name)
            } else {
                match expr.find(*name) {
                    Some(i) => position(expr, &expr[i..]),
                    None => String::new(),
                }
            };
            let what = match what {
                // yq's lexer says "invalid input text" for an unknown word.
                Undefined::Filter(_) => "invalid input text: no operator".to_string(),
                other => format!("undefined {}", other.as_str()),
            };
            out.push(
                format!("{what} {} {at}", quote_name(&shown))
                    .trim_end()
                    .to_string(),
            );
        }
    }
    first_few(out)
}

/// The message for a blocked name, if `name` is one used in `expr`.
fn blocked(name: &str, expr: &str) -> Option<String> {
    let bare = name.trim_start_matches('$');
    BLOCKED
        .iter()
        .find(|b| b.trim_start_matches('$') == bare && expr.contains(*b))
        .map(|b| {
            if *b == "env" {
                "env operations have been disabled".into()
            } else {
                format!("{b} is not available in limactl expressions")
            }
        })
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

/// Stopping an evaluation thread that reaches a bound (see the module).
mod guard;

#[cfg(test)]
mod tests;
