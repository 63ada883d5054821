use super::*;

fn p(s: &str) -> Node {
    parse_single("t.yaml", s).unwrap().unwrap()
}

#[test]
fn scalars_resolve_like_yaml_1_2_core() {
    let n = p("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: yes\ng: 0x10\nh: 0777\ni: -3\n");
    assert_eq!(n.get("a").unwrap().value, Value::Int(1));
    assert_eq!(n.get("b").unwrap().value, Value::Float(1.5));
    assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
    assert_eq!(n.get("d").unwrap().value, Value::Null);
    assert_eq!(n.get("e").unwrap().value, Value::Str("1".into()));
    assert_eq!(n.get("f").unwrap().value, Value::Str("yes".into()));
    assert_eq!(n.get("g").unwrap().value, Value::Int(16));
    assert_eq!(n.get("h").unwrap().value, Value::Int(777));
    assert_eq!(n.get("i").unwrap().value, Value::Int(-3));
}

#[test]
fn locations_are_one_based() {
    let n = p("cpus: 2\nmounts:\n- location: /a\n  mountPoint: rel\n");
    let loc = n.locate(&parse_path("mounts[0].mountPoint")).unwrap();
    assert_eq!((loc.line, loc.col), (4, 3));
    let loc = n.locate(&parse_path("cpus")).unwrap();
    assert_eq!((loc.line, loc.col), (1, 1));
}

#[test]
fn alias_bomb_is_refused() {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        s.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    let err = parse_single("bomb.yaml", &s).unwrap_err();
    assert!(matches!(err, YamlError::AliasBomb { .. }), "{err}");
}

#[test]
fn aliases_of_a_large_string_are_refused_by_expanded_bytes() {
    // One 3 MB string referenced 2000 times: few nodes, but 6 GB expanded.
    let mut s = format!("big: &b \"{}\"\nrefs:\n", "x".repeat(3 << 20));
    for _ in 0..2000 {
        s.push_str("- *b\n");
    }
    let err = parse_single("big.yaml", &s).unwrap_err();
    let limit = alias_byte_limit(s.len());
    assert!(
        matches!(err, YamlError::AliasBytes { limit: l, .. } if l == limit),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "big.yaml: YAML aliases expand to more than {limit} bytes"
        )),
        "{err}"
    );

    // Nested anchors copy their strings too (each anchor keeps a copy).
    let mut s = String::from("a: ");
    for i in 0..200 {
        s.push_str(&format!("&a{i} ["));
    }
    s.push_str(&format!("\"{}\"", "y".repeat(1 << 20)));
    s.push_str(&"]".repeat(200));
    let err = parse_single("nested.yaml", &s).unwrap_err();
    assert!(matches!(err, YamlError::AliasBytes { .. }), "{err}");
}

#[test]
fn modest_reuse_of_anchors_loads() {
    // A 110 KB script anchored and used ten times (1.2 MB expanded).
    let script = "echo hello\n".repeat(10_000);
    let mut s = String::from("scripts:\n  a: &s |\n");
    for l in script.lines() {
        s.push_str(&format!("    {l}\n"));
    }
    s.push_str("uses:\n");
    for _ in 0..10 {
        s.push_str("- *s\n");
    }
    let n = p(&s);
    let Value::Seq(uses) = &n.get("uses").unwrap().value else {
        panic!("uses is a list");
    };
    assert_eq!(uses.len(), 10);
    assert_eq!(uses[9].as_str(), Some(script.as_str()));
}

#[test]
fn aliases_and_merge_keys_expand() {
    let n = p("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n");
    let o = n.get("other").unwrap();
    assert_eq!(o.get("x").unwrap().value, Value::Int(1));
    assert_eq!(o.get("y").unwrap().value, Value::Int(3));
}

#[test]
fn duplicate_keys_are_errors_with_location() {
    let err = parse_single("d.yaml", "cpus: 1\ncpus: 2\n").unwrap_err();
    assert!(err.to_string().starts_with("d.yaml:2:1:"), "{err}");
}

#[test]
fn syntax_error_names_file_line_column() {
    let err = parse_single("s.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
    assert!(err.to_string().starts_with("s.yaml:"), "{err}");
}

#[test]
fn binary_tag_decodes() {
    let n = p("script: !!binary IyEvYmluL3NoCmVjaG8gaGk=\n");
    assert_eq!(
        n.get("script").unwrap().as_str(),
        Some("#!/bin/sh\necho hi")
    );
}

#[test]
fn emit_round_trips() {
    let src = "a: 1\nb: hello world\nc:\n- x: 1\n  y: [1]\n- 2\nd: {}\ne: []\nf: \"yes\"\ng: \"\"\nh: |\n  line1\n  line2\ni: \"123\"\nj: \"a: b\"\nk: null\nl: -x\nm: 2.5\n";
    let n = p(src);
    let out = emit(&n);
    let back = parse_single("t", &out).unwrap().unwrap();
    assert_eq!(n.to_json(), back.to_json(), "{out}");
}

#[test]
fn emit_literal_preserves_trailing_newlines() {
    for s in ["a\nb", "a\nb\n", "a\nb\n\n", "#!/bin/sh\n  indented\n"] {
        let n = Node::map(vec![("s".into(), Node::str(s))]);
        let out = emit(&n);
        let back = parse_single("t", &out).unwrap().unwrap();
        assert_eq!(back.get("s").unwrap().as_str(), Some(s), "{out}");
    }
}

#[test]
fn go_quote_matches_strconv() {
    assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    assert_eq!(quote_name("foo"), "`foo`");
    assert_eq!(quote_name("a`b"), "\"a`b\"");
}

#[test]
fn path_round_trip() {
    let p = parse_path("mounts[2].mountPoint");
    assert_eq!(path_string(&p), "mounts[2].mountPoint");
    assert_eq!(path_string(&parse_path("a[0][1].b")), "a[0][1].b");
}
