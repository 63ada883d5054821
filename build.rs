//! Embeds `templates/**/*.yaml` into the binary so that `template:NAME`
//! locators work wherever `limactl` is installed.

use std::path::Path;

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("templates/ is readable")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, root, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            out.push((
                rel.to_string_lossy().into_owned(),
                p.canonicalize().unwrap().to_string_lossy().into_owned(),
            ));
        }
    }
}

fn main() {
    let root = Path::new("templates");
    println!("cargo:rerun-if-changed=templates");
    let mut list = Vec::new();
    collect(root, root, &mut list);
    let mut code = String::from(
        "/// Bundled templates: (name, content).\npub static BUNDLED: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &list {
        code.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
    }
    code.push_str("];\n");
    let out =
        std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bundled_templates.rs");
    std::fs::write(out, code).unwrap();
}
