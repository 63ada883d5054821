//! `nerdctl-full.tgz` on the volume: there when and only when containerd is enabled.

use super::*;

fn archive_file(c: &Cidata) -> Option<&CidataFile> {
    c.file(names::NERDCTL_ARCHIVE)
}

#[test]
fn user_containerd_ships_the_archive() {
    let f = Fixture::new("images: [{location: /x}]\ncontainerd: {user: true, system: false}\n");
    let c = f.generate();
    let a = archive_file(&c).expect("nerdctl-full.tgz on the volume");
    assert_eq!(a.data, ARCHIVE_BYTES);
    assert_eq!(a.mode, 0o644);
    let env = text(&c, "lima.env");
    assert!(
        env.contains("\nLIMA_CIDATA_CONTAINERD_USER=1\nLIMA_CIDATA_CONTAINERD_SYSTEM=\nLIMA_CIDATA_CONTAINERD_ARCHIVE=nerdctl-full.tgz\n"),
        "{env}"
    );
    // The digest of the bytes on the volume, which the boot script compares with
    // its install stamp instead of hashing the archive in the guest.
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ARCHIVE_BYTES));
    assert!(
        env.contains(&format!(
            "\nLIMA_CIDATA_CONTAINERD_ARCHIVE_SHA256={digest}\n"
        )),
        "{env}"
    );
}

#[test]
fn system_containerd_ships_the_archive() {
    let f = Fixture::new("images: [{location: /x}]\ncontainerd: {user: false, system: true}\n");
    let c = f.generate();
    assert_eq!(archive_file(&c).unwrap().data, ARCHIVE_BYTES);
    assert!(text(&c, "lima.env").contains("\nLIMA_CIDATA_CONTAINERD_SYSTEM=1\n"));
}

#[test]
fn disabled_containerd_ships_nothing_even_when_given_an_archive() {
    let f = Fixture::new("images: [{location: /x}]\ncontainerd: {user: false, system: false}\n");
    let c = f.generate();
    assert!(archive_file(&c).is_none());
    assert!(!text(&c, "lima.env").contains("CONTAINERD_ARCHIVE"));
}

#[test]
fn plain_mode_ships_no_archive() {
    let f = Fixture::new(
        "images: [{location: /x}]\nplain: true\ncontainerd: {user: true, system: true}\n",
    );
    let c = f.generate();
    assert!(archive_file(&c).is_none());
    let env = text(&c, "lima.env");
    assert!(env.contains("\nLIMA_CIDATA_CONTAINERD_USER=\n"), "{env}");
    assert!(!env.contains("CONTAINERD_ARCHIVE"), "{env}");
}

#[test]
fn enabled_without_an_archive_is_an_error() {
    let f = Fixture::new("images: [{location: /x}]\ncontainerd: {user: true}\n");
    let mut input = f.input();
    input.containerd_archive = None;
    let err = generate(&input).unwrap_err();
    assert!(matches!(err, CidataError::NoContainerdArchive), "{err}");
    assert!(err.to_string().contains("containerd.archives"), "{err}");
}

#[test]
fn unreadable_archive_is_an_error_naming_it() {
    let f = Fixture::new("images: [{location: /x}]\ncontainerd: {system: true}\n");
    let mut input = f.input();
    let missing = Path::new("/nonexistent/nerdctl-full.tar.gz");
    input.containerd_archive = Some(missing);
    let err = generate(&input).unwrap_err();
    assert!(
        matches!(&err, CidataError::ContainerdArchive { path, .. } if path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/nerdctl-full.tar.gz"));
}
