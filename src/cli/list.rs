//! `limactl list` / `ls` (reference §8.1).

use std::io::Write;

use crate::spec::units::format_size;
use crate::spec::yaml::{emit_json, quote_name};
use crate::store::{self, Home, Instance, paths};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instances to show (default: all).
    names: Vec<String>,
    /// Output format: table, json, yaml, or a Go template such as '{{.Name}}'.
    #[arg(short = 'f', long, conflicts_with = "json")]
    format: Option<String>,
    /// Same as --format=json.
    #[arg(long)]
    json: bool,
    /// Only print instance names.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// List the fields available to --format templates.
    #[arg(long)]
    list_fields: bool,
    /// Show all columns even on a narrow terminal.
    #[arg(long)]
    all_fields: bool,
    /// A jq expression applied to each instance (implies --format=json).
    #[arg(long = "yq", value_name = "EXPR")]
    yq: Vec<String>,
    /// Keep instances for which this jq expression is true (repeatable, ANDed).
    #[arg(short = 'l', long = "filter", value_name = "EXPR")]
    filter: Vec<String>,
}

/// Go field names available to `--format` templates (sorted, as Lima prints them).
const FIELDS: &[&str] = &[
    "AdditionalDisks",
    "Arch",
    "AutoStartedIdentifier",
    "CPUs",
    "Config",
    "Dir",
    "Disk",
    "DriverPID",
    "Errors",
    "HostAgentPID",
    "Hostname",
    "LimaVersion",
    "Memory",
    "Message",
    "Name",
    "Networks",
    "Param",
    "Protected",
    "SSHAddress",
    "SSHConfigFile",
    "SSHLocalPort",
    "Status",
    "VMType",
];

/// The instance as Go templates see it (`{{.Name}}`, `{{.SSHLocalPort}}`, …).
pub fn template_data(i: &Instance, home: &Home) -> serde_json::Value {
    let j = i.to_json();
    let g = |k: &str| j.get(k).cloned().unwrap_or(serde_json::Value::Null);
    // Go's nil slices and maps are empty ones: `{{.Errors}}` prints `[]`,
    // `{{len .Param}}` is 0.
    let list = |k: &str| j.get(k).cloned().unwrap_or(serde_json::json!([]));
    serde_json::json!({
        "Name": g("name"),
        "Hostname": g("hostname"),
        "Status": g("status"),
        "Dir": g("dir"),
        "VMType": g("vmType"),
        "Arch": g("arch"),
        "CPUs": j.get("cpus").cloned().unwrap_or(0.into()),
        "Memory": j.get("memory").cloned().unwrap_or(0.into()),
        "Disk": j.get("disk").cloned().unwrap_or(0.into()),
        "Message": j.get("message").cloned().unwrap_or("".into()),
        "AdditionalDisks": list("additionalDisks"),
        "Networks": list("network"),
        "SSHLocalPort": i.ssh_local_port,
        "SSHConfigFile": g("sshConfigFile"),
        "HostAgentPID": i.host_agent_pid.unwrap_or(0),
        "DriverPID": i.driver_pid.unwrap_or(0),
        "Errors": i.errors,
        "Config": go_fields(&g("config")),
        "SSHAddress": "127.0.0.1",
        "Protected": i.present.protected,
        "LimaVersion": g("limaVersion"),
        "Param": j.get("param").cloned().unwrap_or(serde_json::json!({})),
        "AutoStartedIdentifier": "",
        "HostOS": "linux",
        "HostArch": crate::spec::host::host_arch(),
        "LimaHome": home.root.display().to_string(),
        "IdentityFile": home.config_file(paths::config_files::USER_KEY).display().to_string(),
        // `{{json .}}` is the object `--format json` prints.
        (crate::spec::gotmpl::JSON_KEY): list_json(i, home).to_string(),
    })
}

/// A lima.yaml field name as Lima's Go struct spells it (`cpus` → `CPUs`,
/// `vmType` → `VMType`, `mountPoint` → `MountPoint`).
pub fn go_name(key: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() || words.is_empty() {
            words.push(String::new());
        }
        words.last_mut().expect("pushed").push(c);
    }
    words
        .iter()
        .map(|w| match w.to_ascii_lowercase().as_str() {
            "cpus" => "CPUs".to_string(),
            a @ ("cpu" | "vm" | "ssh" | "os" | "dns" | "ip" | "uid" | "url" | "mac" | "bios"
            | "vz" | "ca" | "id") => a.to_ascii_uppercase(),
            _ => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect()
}

/// The configuration as Go templates see it: Lima's Go field names, each
/// object carrying its JSON text for `json`. Maps keyed by the user
/// (`env`, `param`) keep their keys.
fn go_fields(v: &serde_json::Value) -> serde_json::Value {
    fn walk(v: &serde_json::Value, user_keys: bool) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    let user = matches!(k.as_str(), "env" | "param" | "hosts" | "vmOpts");
                    let name = if user_keys { k.clone() } else { go_name(k) };
                    out.insert(name, walk(v, user && !user_keys));
                }
                out.insert(crate::spec::gotmpl::JSON_KEY.into(), v.to_string().into());
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.iter().map(|x| walk(x, false)).collect())
            }
            other => other.clone(),
        }
    }
    walk(v, false)
}

/// Lima's "can't evaluate field X in type T" for `.A.B` chains of a
/// template that name no field of the data (gtmpl would print nothing).
fn check_fields(tmpl: &str, data: &serde_json::Value) -> Result<(), String> {
    // Inside range/with the dot moves; only plain templates are checked.
    if ["range", "with", "define", "template", "$"]
        .iter()
        .any(|w| tmpl.contains(w))
    {
        return Ok(());
    }
    let mut rest = tmpl;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let action = &rest[start + 2..start + end];
        rest = &rest[start + end + 2..];
        let mut in_str = false;
        let bytes: Vec<char> = action.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c == '"' {
                in_str = !in_str;
            }
            let starts = c == '.'
                && !in_str
                && (i == 0 || " (|\t".contains(bytes[i - 1]))
                && bytes.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic());
            if !starts {
                i += 1;
                continue;
            }
            let chain: String = bytes[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_' || **c == '.')
                .collect();
            i += chain.len();
            let mut v = data;
            let mut ty = "store.FormatData".to_string();
            for f in chain
                .trim_start_matches('.')
                .split('.')
                .filter(|f| !f.is_empty())
            {
                match v {
                    serde_json::Value::Object(m) => match m.get(f) {
                        Some(next) => {
                            if matches!(f, "Param" | "Env" | "Hosts" | "VMOpts") {
                                break;
                            }
                            ty = if f == "Config" {
                                "limatype.LimaYAML".into()
                            } else {
                                format!("limatype.{f}")
                            };
                            v = next;
                        }
                        None => {
                            return Err(format!(
                                "template: executing at <{chain}>: can't evaluate field {f} in type {ty}"
                            ));
                        }
                    },
                    serde_json::Value::Array(_) => break,
                    serde_json::Value::Null => break,
                    other => {
                        let t = match other {
                            serde_json::Value::String(_) => "string",
                            serde_json::Value::Bool(_) => "bool",
                            _ => "int",
                        };
                        return Err(format!(
                            "template: executing at <{chain}>: can't evaluate field {f} in type {t}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Lima's `--format json`/`yaml` objects go through yq, which deletes
/// empty maps (`env: {}`, `param: {}`, …).
fn drop_empty_maps(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !matches!(x, serde_json::Value::Object(o) if o.is_empty()));
            for x in m.values_mut() {
                drop_empty_maps(x);
            }
            m.retain(|_, x| !matches!(x, serde_json::Value::Object(o) if o.is_empty()));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_empty_maps),
        _ => {}
    }
}

/// Columns Lima hides on a narrow terminal (`--all-fields` shows them):
/// VMTYPE and ARCH below 96 columns when every instance shares them (ARCH:
/// the host's), DIR below 80.
pub fn hidden_columns(
    width: Option<usize>,
    vm_types: &[String],
    arches: &[String],
) -> Vec<&'static str> {
    let Some(w) = width else {
        return Vec::new();
    };
    let same = |v: &[String], want: Option<&str>| {
        v.windows(2).all(|p| p[0] == p[1]) && want.is_none_or(|w| v.first().is_none_or(|f| f == w))
    };
    let mut hide = Vec::new();
    if w < (5 + 7) * 8 && same(vm_types, None) {
        hide.push("VMTYPE");
    }
    if w < (6 + 6) * 8 && same(arches, Some(crate::spec::host::host_arch())) {
        hide.push("ARCH");
    }
    if w < (8 + 2) * 8 {
        hide.push("DIR");
    }
    hide
}

/// The width of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    let mut ws: nix::libc::winsize = unsafe { std::mem::zeroed() };
    // TIOCGWINSZ fills `ws`; it fails when stdout is not a terminal.
    let r = unsafe { nix::libc::ioctl(nix::libc::STDOUT_FILENO, nix::libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Lima colours and pretty-prints for a terminal, or when `_LIMA_OUTPUT_IS_TTY` is set.
fn output_is_tty(g: &super::Globals) -> bool {
    g.tty || std::env::var_os("_LIMA_OUTPUT_IS_TTY").is_some_and(|v| !v.is_empty())
}

/// Lima's JSON object for `list --json`: the instance plus deprecated host keys.
pub fn list_json(i: &Instance, home: &Home) -> serde_json::Value {
    let mut j = i.to_json();
    if let Some(m) = j.as_object_mut() {
        m.insert("HostOS".into(), "linux".into());
        m.insert("HostArch".into(), crate::spec::host::host_arch().into());
        m.insert("LimaHome".into(), home.root.display().to_string().into());
        m.insert(
            "IdentityFile".into(),
            home.config_file(paths::config_files::USER_KEY)
                .display()
                .to_string()
                .into(),
        );
    }
    j
}

/// Go `text/tabwriter` with minwidth 4, padding 4 (Lima's table).
pub fn tabwrite(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max((c.chars().count() + 4).max(4));
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                for _ in c.chars().count()..widths[i] {
                    out.push(' ');
                }
            }
        }
        out.push('\n');
    }
    out
}

fn table_row(i: &Instance) -> Vec<String> {
    let c = i.config.as_ref();
    vec![
        i.name.clone(),
        i.status.as_str().to_string(),
        format!("127.0.0.1:{}", i.ssh_local_port),
        c.and_then(|c| c.vm_type.clone()).unwrap_or_default(),
        c.and_then(|c| c.arch.clone()).unwrap_or_default(),
        c.and_then(|c| c.cpus).unwrap_or(0).to_string(),
        format_size(i.memory_bytes()),
        format_size(i.disk_bytes()),
        paths::tilde(&i.dir),
    ]
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let mut out = super::out::stdout();
    if a.list_fields {
        for f in FIELDS {
            writeln!(out, "{f}")?;
        }
        return Ok(0);
    }
    let mut format = if a.json {
        Some("json".to_string())
    } else {
        a.format.clone()
    };
    let mut yq: Vec<String> = a.filter.iter().map(|f| format!("select({f})")).collect();
    yq.extend(a.yq.iter().cloned());
    if a.quiet && !matches!(format.as_deref(), None | Some("table")) {
        anyhow::bail!("option --quiet can only be used with '--format table'");
    }
    // Lima: `--quiet --yq EXPR` prints `EXPR | .name` of each instance.
    let mut yq_expr = a.yq.join(" | ");
    if a.quiet && !a.yq.is_empty() {
        yq_expr.push_str(" | .name");
        format = Some("json".into());
    }
    if !a.yq.is_empty() {
        match format.as_deref() {
            None => format = Some("json".into()),
            Some("json" | "yaml") => {}
            Some(_) => anyhow::bail!("option --yq only works with --format json or yaml"),
        }
    }
    let all = store::instance_names(&home)?;
    for left in store::leftover_deletions(&home) {
        let shown = left.display().to_string();
        crate::warn!(
            "{} holds what an interrupted delete left (hidden from this list); if you do not need it, remove it by hand: rm -rf {}",
            quote_name(&shown),
            crate::ssh::shell_quote(&shown)
        );
    }
    if all.is_empty() && a.names.is_empty() {
        crate::warn!("No instance found. Run `limactl create` to create an instance.");
        return Ok(0);
    }
    let mut selected: Vec<String> = Vec::new();
    let mut unmatched = false;
    if a.names.is_empty() {
        selected = all.clone();
    } else {
        for n in &a.names {
            if all.contains(n) {
                selected.push(n.clone());
            } else {
                crate::warn!("No instance matching {n} found.");
                unmatched = true;
            }
        }
    }
    if a.quiet && yq.is_empty() {
        for n in &selected {
            writeln!(out, "{n}")?;
        }
        return finish(unmatched);
    }
    let env = crate::spec::LoadEnv::new(&home.root);
    let mut instances: Vec<Instance> = selected
        .iter()
        .filter_map(|n| store::inspect_listed(&home, &env, n))
        .collect();
    for i in &instances {
        if !i.errors.is_empty() && i.status != store::Status::Running {
            crate::warn!(
                "instance {} has errors: {}",
                quote_name(&i.name),
                i.errors.join("; ")
            );
        }
    }
    if !a.filter.is_empty() {
        // An expression that fails (say, env() here) fails the listing, as in Lima.
        // Each expression is compiled once for every instance.
        let docs: Vec<serde_json::Value> = instances.iter().map(|i| list_json(i, &home)).collect();
        let mut keep = vec![true; instances.len()];
        for f in &a.filter {
            let outs = crate::yq::eval_each(&format!("select({f})"), &docs)?;
            for (k, o) in keep.iter_mut().zip(outs) {
                *k &= !o.is_empty();
            }
        }
        let mut keep = keep.into_iter();
        instances.retain(|_| keep.next().unwrap_or(false));
    }
    match format.as_deref().unwrap_or("table") {
        "table" if a.quiet => {
            for i in &instances {
                writeln!(out, "{}", i.name)?;
            }
        }
        "table" => {
            let mut rows = vec![
                [
                    "NAME", "STATUS", "SSH", "VMTYPE", "ARCH", "CPUS", "MEMORY", "DISK", "DIR",
                ]
                .map(String::from)
                .to_vec(),
            ];
            rows.extend(instances.iter().map(table_row));
            let width = if a.all_fields || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                None
            } else {
                terminal_width()
            };
            let column = |i: usize| {
                rows.iter()
                    .skip(1)
                    .map(|r| r[i].clone())
                    .collect::<Vec<_>>()
            };
            let hide = hidden_columns(width, &column(3), &column(4));
            let keep: Vec<usize> = (0..rows[0].len())
                .filter(|&c| !hide.contains(&rows[0][c].as_str()))
                .collect();
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| keep.iter().map(|&c| r[c].clone()).collect())
                .collect();
            write!(out, "{}", tabwrite(&rows))?;
        }
        "json" | "yaml" => {
            let is_json = format.as_deref() == Some("json");
            let expr = yq_expr;
            let tty = output_is_tty(g);
            let docs: Vec<serde_json::Value> = instances
                .iter()
                .map(|i| {
                    let mut j = list_json(i, &home);
                    drop_empty_maps(&mut j);
                    j
                })
                .collect();
            let results: Vec<Vec<serde_json::Value>> = if expr.is_empty() {
                docs.into_iter().map(|j| vec![j]).collect()
            } else {
                // Compiled once for every instance.
                crate::yq::eval_each(&expr, &docs)?
            };
            for results in results {
                for r in results {
                    if let (false, serde_json::Value::String(s)) = (expr.is_empty(), &r) {
                        // yq prints a scalar result as it is, unquoted.
                        writeln!(out, "{s}")?;
                    } else if is_json {
                        if tty {
                            writeln!(out, "{}", super::colour::json(&pretty4(&r)))?;
                        } else {
                            writeln!(out, "{r}")?;
                        }
                    } else if tty {
                        write!(out, "---\n{}", super::colour::yaml(&emit_json(&r)))?;
                    } else {
                        write!(out, "---\n{}", emit_json(&r))?;
                    }
                }
            }
        }
        tmpl => {
            for i in &instances {
                let data = template_data(i, &home);
                check_fields(tmpl, &data)
                    .map_err(|e| anyhow::anyhow!("invalid --format template: {e}"))?;
                let s = crate::spec::gotmpl::render(tmpl, &data)
                    .map_err(|e| anyhow::anyhow!("invalid --format template: {e}"))?;
                writeln!(out, "{s}")?;
            }
        }
    }
    finish(unmatched)
}

fn finish(unmatched: bool) -> anyhow::Result<i32> {
    if unmatched {
        anyhow::bail!("unmatched instances");
    }
    Ok(0)
}

/// JSON pretty-printed with 4 spaces, as Lima does on a terminal.
pub fn pretty4(v: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("JSON values serialize");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_terminals_hide_columns_like_lima() {
        let host = crate::spec::host::host_arch().to_string();
        let q = vec!["qemu".to_string(); 2];
        let a = vec![host.clone(); 2];
        assert!(hidden_columns(None, &q, &a).is_empty(), "not a terminal");
        assert!(hidden_columns(Some(200), &q, &a).is_empty());
        assert_eq!(hidden_columns(Some(90), &q, &a), ["VMTYPE", "ARCH"]);
        assert_eq!(hidden_columns(Some(79), &q, &a), ["VMTYPE", "ARCH", "DIR"]);
        let mixed = vec!["qemu".to_string(), "vz".to_string()];
        let other = vec![host, "riscv64".to_string()];
        assert_eq!(hidden_columns(Some(79), &mixed, &other), ["DIR"]);
    }

    #[test]
    fn go_names_of_lima_yaml_fields() {
        for (json, go) in [
            ("cpus", "CPUs"),
            ("vmType", "VMType"),
            ("mountPoint", "MountPoint"),
            ("ssh", "SSH"),
            ("localPort", "LocalPort"),
            ("cpuType", "CPUType"),
            ("os", "OS"),
            ("dns", "DNS"),
            ("legacyBIOS", "LegacyBIOS"),
            ("images", "Images"),
        ] {
            assert_eq!(go_name(json), go, "{json}");
        }
    }

    #[test]
    fn tabwriter_matches_go() {
        let rows = vec![
            vec!["NAME".to_string(), "STATUS".into(), "DIR".into()],
            vec![
                "default".to_string(),
                "Running".into(),
                "~/.lima/default".into(),
            ],
        ];
        assert_eq!(
            tabwrite(&rows),
            "NAME       STATUS     DIR\ndefault    Running    ~/.lima/default\n"
        );
    }
}
