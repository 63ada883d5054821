//! `limactl start` with containerd enabled and an archive it cannot have: it fails
//! before QEMU (none is needed to see it), naming the archive, and a fresh
//! instance is not left behind half made.

use crate::common;

use common::Env;

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(data))
}

fn config(image: &std::path::Path, archive: &str) -> String {
    format!(
        "images:\n- location: {}\n  arch: x86_64\ncpus: 1\nmemory: 1GiB\ndisk: 1GiB\nmounts: []\ncontainerd:\n  user: true\n  archives:\n  - {archive}\n",
        image.display()
    )
}

#[test]
fn a_bad_archive_digest_fails_the_start_naming_it() {
    let env = Env::new();
    let image = common::tiny_image(env.dir.path());
    let archive = env.dir.path().join("nerdctl-full.tar.gz");
    std::fs::write(&archive, b"tampered").unwrap();
    let yaml = env.dir.path().join("c.yaml");
    std::fs::write(
        &yaml,
        config(
            &image,
            &format!(
                "{{location: {}, arch: x86_64, digest: 'sha256:{}'}}",
                archive.display(),
                sha256_hex(b"the real archive")
            ),
        ),
    )
    .unwrap();
    let (code, _, err) = env.run(&["start", "--name", "c", yaml.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains(&archive.display().to_string()), "{err}");
    assert!(err.contains("containerd.archives[0]"), "{err}");
    assert!(err.contains("digest"), "{err}");
    assert!(
        !err.contains("Starting the instance"),
        "QEMU was about to run:\n{err}"
    );
    assert!(
        !env.instance_dir("c").exists(),
        "the instance this start created is removed again"
    );
}

#[test]
fn no_archive_for_the_arch_fails_the_start_of_an_existing_instance_and_keeps_it() {
    let env = Env::new();
    let image = common::tiny_image(env.dir.path());
    let yaml = env.dir.path().join("c.yaml");
    std::fs::write(
        &yaml,
        config(
            &image,
            "{location: /nonexistent/nerdctl-arm64.tgz, arch: aarch64}",
        ),
    )
    .unwrap();
    env.ok(&["create", "--name", "c", yaml.to_str().unwrap()]);
    let (code, _, err) = env.run(&["start", "c"]);
    assert_ne!(code, 0);
    assert!(err.contains("no archive for arch x86_64"), "{err}");
    assert!(err.contains("aarch64"), "{err}");
    assert!(!err.contains("Starting the instance"), "{err}");
    // An instance that existed before is kept (its disk is the user's).
    assert!(env.instance_dir("c").join("lima.yaml").is_file());
    assert_eq!(env.status("c"), "Stopped");
}
