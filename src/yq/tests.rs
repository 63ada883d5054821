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

/// Limits whose deadline is never what a test waits for: whatever the
/// machine's speed, the bound under test is reached first.
fn patient(memory: usize, outputs: usize) -> Limits {
    Limits {
        time: Duration::from_secs(600),
        memory,
        outputs,
    }
}

fn bound_of(r: Result<Vec<serde_json::Value>, YqError>) -> Bound {
    match r {
        Err(YqError::Bound { bound, .. }) => bound,
        other => panic!("expected a bound to be reached, got {other:?}"),
    }
}

#[test]
fn endless_recursion_is_an_error_not_an_abort() {
    let limits = patient(Limits::DEFAULT.memory, Limits::DEFAULT.outputs);
    let expr = "def f: 1+f; .cpus=f";
    let err = eval_with(expr, &json!({"cpus": 1}), &limits).unwrap_err();
    assert!(
        matches!(
            &err,
            YqError::Bound {
                bound: Bound::Depth,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("expression `def f: 1+f; .cpus=f` recursed too deeply"),
        "{err}"
    );
    // The process goes on: the next evaluation works.
    assert_eq!(
        eval_one(".cpus = 2", &json!({})).unwrap(),
        json!({"cpus": 2})
    );
    // Its thread is left behind, and the expression is not run again.
    assert_eq!(abandoned(expr), Some(Bound::Depth));
    assert_eq!(
        eval_one(expr, &json!({})).unwrap_err().to_string(),
        err.to_string()
    );
    // The lexer and parser recurse too.
    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        bound_of(eval_with(&nested, &json!(null), &limits)),
        Bound::Depth
    );
}

#[test]
fn endless_loops_end_at_the_deadline() {
    let limits = Limits {
        time: Duration::from_secs(1),
        ..Limits::DEFAULT
    };
    // A tail call loops without growing the stack or allocating.
    let err = eval_with("def f: f; f", &json!({}), &limits).unwrap_err();
    assert!(
        matches!(
            &err,
            YqError::Bound {
                bound: Bound::Time(_),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "expression `def f: f; f` did not finish within 1s (an endless loop?)"
    );
}

#[test]
fn memory_and_outputs_are_bounded() {
    let limits = patient(8 << 20, 1000);
    assert_eq!(
        bound_of(eval_with("[repeat(.)]", &json!({}), &limits)),
        Bound::Memory(8 << 20)
    );
    assert_eq!(
        bound_of(eval_with(
            "reduce range(64) as $i (\"x\"; . + .)",
            &json!({}),
            &limits
        )),
        Bound::Memory(8 << 20)
    );
    let err = eval_with("repeat(.)", &json!({}), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expression `repeat(.)` produced more than 1000 results"
    );
    // Within the bounds, the same kinds of expressions work.
    assert_eq!(
        eval_with("[limit(3; repeat(1))]", &json!({}), &limits).unwrap(),
        vec![json!([1, 1, 1])]
    );
    assert_eq!(
        eval_with("[range(100000)] | length", &json!({}), &limits).unwrap(),
        vec![json!(100000)]
    );
}

#[test]
fn syntax_errors_say_what_and_where_in_words() {
    let msg = |e: &str| eval(e, &json!({})).unwrap_err().to_string();
    for (expr, want) in [
        (
            ".[",
            "invalid expression `.[`: `[` at column 2 is not closed: expected a closing bracket at the end of the expression",
        ),
        (
            "{a:}",
            "invalid expression `{a:}`: expected a term, found `}` at column 4",
        ),
        (
            "if . then 1",
            "invalid expression `if . then 1`: expected `else` or `end`, found the end of the expression",
        ),
        (
            ".a &",
            "invalid expression `.a &`: unexpected `&` at column 4",
        ),
        (
            ".a | foo",
            "invalid expression `.a | foo`: invalid input text: no operator `foo` at column 6",
        ),
        (
            ".a |\n  f(1)",
            "invalid expression \".a |\\n  f(1)\": invalid input text: no operator `f/1` at line 2, column 3",
        ),
        (
            "$x",
            "invalid expression `$x`: undefined variable `$x` at column 1",
        ),
    ] {
        assert_eq!(msg(expr), want);
    }
    let many = msg("((((((");
    assert!(many.ends_with("(and 3 more)"), "{many}");
    for e in [".[", "{a:}", "(((", "1 +", "\"\\x\""] {
        let m = msg(e);
        for internal in ["Lex(", "Parse(", "Delim", "Filter(", "File {"] {
            assert!(!m.contains(internal), "{e}: {m}");
        }
    }
}

#[test]
fn eval_each_compiles_once_and_answers_by_input() {
    let docs = [json!({"cpus": 1}), json!({"cpus": 2}), json!({"cpus": "2"})];
    let outs = eval_each("select(.cpus == 2) | .cpus", &docs).unwrap();
    assert_eq!(outs, vec![vec![], vec![json!(2)], vec![json!("2")]]);
    // An error on any input is the batch's error, naming the expression.
    let err = eval_each(".cpus | error", &docs).unwrap_err().to_string();
    assert!(err.contains(".cpus | error"), "{err}");
}
