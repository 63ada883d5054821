//! Writing the cidata volume as an ISO 9660 image (Rock Ridge for names and
//! modes, Joliet for guests that read only that), in-process with `hadris-iso`.

use std::collections::BTreeMap;
use std::io::{Cursor, Error, ErrorKind};
use std::path::Path;

use hadris_iso::joliet::JolietLevel;
use hadris_iso::read::PathSeparator;
use hadris_iso::rrip::RripOptions;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{InputEntry, InputMetadata, InputTree, IsoImageWriter};

use super::CidataFile;
use crate::store::atomic;
use crate::store::paths::cidata_files::VOLUME_LABEL;

/// The deepest path the ISO holds without Rock Ridge relocation.
const MAX_DEPTH: usize = 8;

#[derive(Default)]
struct Dir {
    dirs: BTreeMap<String, Dir>,
    files: BTreeMap<String, (Vec<u8>, u32)>,
}

fn meta(mode: u32) -> InputMetadata {
    InputMetadata {
        mode: Some(mode & 0o7777),
        uid: Some(0),
        gid: Some(0),
        ..InputMetadata::default()
    }
}

impl Dir {
    fn insert(&mut self, f: &CidataFile) -> std::io::Result<()> {
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("cidata: cannot put {:?} on the ISO: {why}", f.path),
            )
        };
        let parts: Vec<&str> = f.path.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(invalid("not a clean relative path"));
        }
        // Rock Ridge names are C strings to readers: a NUL ends them, and
        // other control characters have no business in a cidata file name
        // (found by fuzz/cidata_iso: "\x18\0\x04" was written, read as "\x18").
        if f.path.chars().any(char::is_control) {
            return Err(invalid("a control character in the name"));
        }
        // ISO 9660 nests 8 levels; deeper ones are "relocated" under
        // rr_moved, which readers do not all undo (found by fuzz/cidata_iso:
        // isoinfo listed an 11-level path under /rr_moved). Cidata needs 2.
        if parts.len() > MAX_DEPTH {
            return Err(invalid(&format!("more than {MAX_DEPTH} levels deep")));
        }
        let (name, parents) = parts.split_last().expect("split yields one part");
        let mut dir = self;
        for p in parents {
            if dir.files.contains_key(*p) {
                return Err(invalid("a parent is a file"));
            }
            dir = dir.dirs.entry(p.to_string()).or_default();
        }
        if dir.dirs.contains_key(*name) || dir.files.contains_key(*name) {
            return Err(invalid("given twice"));
        }
        dir.files.insert(name.to_string(), (f.data.clone(), f.mode));
        Ok(())
    }

    fn into_entries(self) -> Vec<InputEntry> {
        let mut out = Vec::new();
        for (name, d) in self.dirs {
            out.push(InputEntry::directory(name, d.into_entries()).with_metadata(meta(0o755)));
        }
        for (name, (data, mode)) in self.files {
            out.push(InputEntry::file(name, data).with_metadata(meta(mode)));
        }
        out
    }
}

/// The ISO image bytes for `files`.
pub(crate) fn iso_bytes(files: &[CidataFile]) -> std::io::Result<Vec<u8>> {
    super::check_names(files).map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
    let mut root = Dir::default();
    for f in files {
        root.insert(f)?;
    }
    let tree = InputTree::new(PathSeparator::ForwardSlash, root.into_entries());
    let options = IsoFormatOptions {
        volume_name: VOLUME_LABEL.to_string(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: None,
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        strict_charset: false,
        features: CreationFeatures {
            filenames: BaseIsoLevel::Level1 {
                supports_lowercase: false,
                supports_rrip: true,
            },
            joliet: Some(JolietLevel::Level3),
            rock_ridge: Some(RripOptions::default()),
            ..CreationFeatures::default()
        },
    };
    let cursor = IsoImageWriter::create(Cursor::new(Vec::new()), tree, options)
        .map_err(|e| Error::other(format!("cidata: writing the ISO image failed: {e}")))?;
    Ok(cursor.into_inner())
}

/// Writes `files` as the cidata ISO at `path` (volume label `cidata`), atomically:
/// a reader sees the previous image or the new one. Fails with `InvalidInput`
/// for a name over 30 characters or a path given twice.
pub fn write_iso(path: &Path, files: &[CidataFile]) -> std::io::Result<()> {
    let bytes = iso_bytes(files)?;
    // `atomic::write` fsyncs `path.parent()`, which is "" for a bare file name.
    let path = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new(".").join(path),
        _ => path.to_path_buf(),
    };
    atomic::write(&path, &bytes, 0o600)
}
