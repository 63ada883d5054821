//! The cidata ISO, read back with real ISO readers: `isoinfo` (genisoimage)
//! and `xorriso`. Both are installed by hack/install-deps.sh; these tests fail
//! (they do not skip) when a tool is missing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lima::cidata::{CidataFile, CidataInput, generate, write_iso};

fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}): install it with hack/install-deps.sh (packages genisoimage, xorriso)")
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn file(path: &str, data: impl Into<Vec<u8>>, mode: u32) -> CidataFile {
    CidataFile {
        path: path.into(),
        data: data.into(),
        mode,
    }
}

fn sample_files() -> Vec<CidataFile> {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    vec![
        file("user-data", "#cloud-config\nusers: []\n", 0o644),
        file("meta-data", "instance-id: iid-1\n", 0o644),
        file("param.env", "", 0o644),
        file("boot.sh", "#!/bin/bash\necho boot\n", 0o755),
        file(
            "boot.essential.Linux/05-guest-home.sh",
            "#!/bin/bash\n",
            0o755,
        ),
        file(
            "boot.Linux/05-lima-disks.sh",
            "#!/bin/bash\necho disks\n",
            0o755,
        ),
        file(
            "boot.Linux/01-etc-environment.sh",
            "#!/bin/bash\necho env\n",
            0o755,
        ),
        file("provision.system/00000000", "#!/bin/sh\necho 0\n", 0o755),
        file("provision.system/00000001", "#!/bin/sh\necho 1\n", 0o755),
        file("provision.user/00000002", "#!/bin/sh\necho 2\n", 0o755),
        file("provision.data/00000003", "data\n", 0o644),
        // Exactly 30 characters: the longest name allowed.
        file("util/abcdefghijklmnopqrstuvwx.sh", "#!/bin/sh\n", 0o755),
        file("lima-guestagent", big, 0o755),
    ]
}

fn write(dir: &Path, files: &[CidataFile]) -> PathBuf {
    let iso = dir.join("cidata.iso");
    write_iso(&iso, files).unwrap();
    iso
}

/// `isoinfo -R -l`: path → (mode string, size).
fn isoinfo_listing(iso: &str) -> BTreeMap<String, (String, u64)> {
    let text = String::from_utf8(run("isoinfo", &["-R", "-l", "-i", iso])).unwrap();
    let mut out = BTreeMap::new();
    let mut dir = String::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("Directory listing of ") {
            dir = d.trim().to_string();
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || !(line.starts_with('-') || line.starts_with('d')) {
            continue;
        }
        let Some((_, name)) = line.rsplit_once("]  ") else {
            continue;
        };
        let name = name.trim_end();
        if name.is_empty() || name == "." || name == ".." {
            continue;
        }
        let size: u64 = fields[4].parse().unwrap();
        out.insert(format!("{dir}{name}"), (fields[0].to_string(), size));
    }
    out
}

#[test]
fn isoinfo_sees_label_rock_ridge_joliet_names_modes_and_bytes() {
    let d = tempfile::tempdir().unwrap();
    let files = sample_files();
    let iso = write(d.path(), &files);
    let iso_s = iso.to_str().unwrap();
    // Private to its owner, like every file limactl writes.
    assert_eq!(
        std::fs::metadata(&iso).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no temp file left"
    );

    let info = String::from_utf8(run("isoinfo", &["-d", "-i", iso_s])).unwrap();
    assert!(info.contains("Volume id: cidata"), "{info}");
    assert!(info.contains("Rock Ridge signatures"), "{info}");
    assert!(info.contains("Joliet"), "{info}");

    let listing = isoinfo_listing(iso_s);
    for f in &files {
        let (mode, size) = listing
            .get(&format!("/{}", f.path))
            .unwrap_or_else(|| panic!("{} not listed: {listing:#?}", f.path));
        let want = if f.mode == 0o755 {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, want, "{}", f.path);
        assert_eq!(*size, f.data.len() as u64, "{}", f.path);
        let bytes = run(
            "isoinfo",
            &["-R", "-i", iso_s, "-x", &format!("/{}", f.path)],
        );
        assert!(bytes == f.data, "{}: content differs", f.path);
    }
    assert_eq!(
        listing.keys().filter(|k| !k.ends_with('/')).count(),
        files.len() + 6,
        "files plus the 6 directories: {listing:#?}"
    );

    // Joliet names are the same (guests that read only Joliet).
    let joliet = String::from_utf8(run("isoinfo", &["-J", "-f", "-i", iso_s])).unwrap();
    assert!(
        joliet
            .lines()
            .any(|l| l == "/boot.Linux/01-etc-environment.sh"),
        "{joliet}"
    );
}

#[test]
fn xorriso_finds_and_extracts_identical_files() {
    let d = tempfile::tempdir().unwrap();
    let files = sample_files();
    let iso = write(d.path(), &files);
    let iso_s = iso.to_str().unwrap();

    let found = String::from_utf8(run(
        "xorriso",
        &["-indev", iso_s, "-find", "/", "-type", "f"],
    ))
    .unwrap();
    for f in &files {
        assert!(
            found
                .lines()
                .any(|l| l.trim_matches('\'') == format!("/{}", f.path)),
            "{} not found by xorriso: {found}",
            f.path
        );
    }

    let out = d.path().join("x");
    run(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            iso_s,
            "-extract",
            "/",
            out.to_str().unwrap(),
        ],
    );
    for f in &files {
        let p = out.join(&f.path);
        assert!(std::fs::read(&p).unwrap() == f.data, "{}", f.path);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, f.mode, "{}", f.path);
    }
}

#[test]
fn a_generated_volume_reads_back() {
    let host = lima::spec::host::HostInfo::for_tests();
    let node = lima::spec::yaml::parse_single(
        "t.yaml",
        "images: [{location: /x}]\nprovision:\n- script: \"#!/bin/sh\\necho hi\\n\"\n",
    )
    .unwrap()
    .unwrap();
    let mut config = lima::spec::resolve::typed(&node, "t.yaml").unwrap();
    let ctx = lima::spec::defaults::FillContext {
        host: &host,
        instance_name: "smoke".into(),
        instance_dir: "/lima/smoke".into(),
        lima_home: "/lima".into(),
    };
    lima::spec::defaults::fill(&mut config, &ctx);
    let spec = lima::spec::Spec::from_filled(&config).unwrap();
    let keys = vec!["ssh-ed25519 AAAA test".to_string()];
    let env = BTreeMap::new();
    // containerd is on by default: the archive is shipped as nerdctl-full.tgz.
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), b"not really a tarball").unwrap();
    let c = generate(&CidataInput {
        spec: &spec,
        name: "smoke",
        instance_dir: Path::new("/lima/smoke"),
        iid: "iid-1",
        authorized_keys: &keys,
        debug: false,
        host_home: Path::new("/home/alice"),
        host_env: &env,
        guest_agent: None,
        containerd_archive: Some(archive.path()),
        udp_dns_port: 0,
        tcp_dns_port: 0,
    })
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let iso = write(d.path(), &c.files);
    let iso_s = iso.to_str().unwrap();
    let listing = isoinfo_listing(iso_s);
    for f in &c.files {
        let (mode, _) = &listing[&format!("/{}", f.path)];
        assert_eq!(mode.starts_with("-rwx"), f.mode & 0o100 != 0, "{}", f.path);
    }
    for p in [
        "user-data",
        "lima.env",
        "boot.sh",
        "provision.system/00000000",
    ] {
        let bytes = run("isoinfo", &["-R", "-i", iso_s, "-x", &format!("/{p}")]);
        assert!(bytes == c.file(p).unwrap().data, "{p}");
    }
}

#[test]
fn bad_names_are_refused_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let iso = d.path().join("cidata.iso");
    let long = [file(&format!("util/{}", "y".repeat(31)), "x", 0o644)];
    let err = write_iso(&iso, &long).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("at most 30"), "{err}");
    let twice = [file("a", "1", 0o644), file("a", "2", 0o644)];
    assert!(write_iso(&iso, &twice).is_err());
    let under_file = [file("a", "1", 0o644), file("a/b", "2", 0o644)];
    assert!(write_iso(&iso, &under_file).is_err());
    // Found by fuzz/cidata_iso: a NUL cut the name short on the ISO.
    for name in ["\u{18}\0\u{4}", "a\nb", "tab\there"] {
        let err = write_iso(&iso, &[file(name, "x", 0o644)]).unwrap_err();
        assert!(
            err.to_string().contains("control character"),
            "{name:?}: {err}"
        );
    }
    // Found by fuzz/cidata_iso: 11 levels were relocated under /rr_moved.
    let deep = ["d"; 9].join("/");
    let err = write_iso(&iso, &[file(&deep, "x", 0o644)]).unwrap_err();
    assert!(err.to_string().contains("more than 8 levels"), "{err}");
    write_iso(&iso, &[file(&["d"; 8].join("/"), "x", 0o644)]).unwrap();
    std::fs::remove_file(&iso).unwrap();
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}
