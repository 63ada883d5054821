//! lima.yaml bytes (and a `base:` file beside them) through loading, `base:`
//! resolution, defaults and validation: any input gives a result or an
//! error, never a panic or a hang; what resolves converts to a `Spec`, and a
//! configuration compared with itself has no changes.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lima::spec::{LoadEnv, mutability, resolve};

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("limactl-fuzz-spec-{}", std::process::id()));
        std::fs::create_dir_all(d.join("home")).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    // The input is "<instance file>\0<_base.yaml>" (the second part optional).
    let mut parts = data.splitn(2, |b| *b == 0);
    let main = parts.next().unwrap_or_default();
    let base = parts.next().unwrap_or_default();
    let d = dir();
    let file = d.join("fuzz.yaml");
    std::fs::write(&file, main).unwrap();
    std::fs::write(d.join("_base.yaml"), base).unwrap();
    let env = LoadEnv::new(&d.join("home"));
    let mut warnings = Vec::new();
    let loaded = resolve::load_locator(
        &file.display().to_string(),
        Some("fuzz"),
        &env,
        true,
        &mut || Ok(String::new()),
        &mut warnings,
    );
    if let Ok(l) = loaded {
        let c = &l.resolved.config;
        assert!(mutability::diff(c, c).is_empty());
        assert_eq!(l.resolved.spec.disk.bytes(), lima::spec::defaults::size_bytes(&c.disk));
    }
});
