//! Decompression of `.gz`, `.bz2`, `.xz` and `.zst` (reference §7.3), in
//! process and streamed: chosen by the location's extension, else by the
//! first bytes of the data.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

/// A compression format Lima decompresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// By the extension of the location's path (a URL's query and fragment
    /// are ignored). `.zstd` is not an extension Lima knows: magic bytes decide.
    pub fn from_location(location: &str) -> Option<Compression> {
        let path = if location.contains("://") {
            let end = location.find(['?', '#']).unwrap_or(location.len());
            &location[..end]
        } else {
            location
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "gz" => Some(Compression::Gzip),
            "bz2" => Some(Compression::Bzip2),
            "xz" => Some(Compression::Xz),
            "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// By magic bytes.
    pub fn from_magic(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(b"BZh") {
            Some(Compression::Bzip2)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Compression::Xz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    /// Extension first, then magic bytes.
    pub fn detect(location: &str, head: &[u8]) -> Option<Compression> {
        Self::from_location(location).or_else(|| Self::from_magic(head))
    }

    /// A streaming decoder over `input` (multi-member/multi-stream aware).
    pub fn decoder<'a, R: Read + 'a>(self, input: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(1 << 16, input),
            )),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(
                BufReader::with_capacity(1 << 16, input),
            )),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(
                BufReader::with_capacity(1 << 16, input),
            )),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
        })
    }
}

/// Reads up to 8 bytes from the start of `f` and seeks back.
pub fn peek_head(f: &mut File) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 8];
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    head.truncate(n);
    f.seek(SeekFrom::Start(0))?;
    Ok(head)
}

/// Which side of a copy failed.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `r` into `w` with a large buffer; tells read from write failures.
pub fn copy(r: &mut dyn Read, w: &mut SparseWriter) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
    Ok(total)
}

/// Writes a file, leaving holes for all-zero blocks (raw disk images are
/// mostly zeros once decompressed). Buffers so block boundaries never depend
/// on how the caller's writes are cut.
pub struct SparseWriter {
    file: File,
    pos: u64,
    /// The file position differs from `pos` (a hole was skipped).
    pending_seek: bool,
    buf: Vec<u8>,
}

const BLOCK: usize = 4096;
const BUF: usize = 1 << 20;

impl SparseWriter {
    pub fn new(file: File) -> SparseWriter {
        SparseWriter {
            file,
            pos: 0,
            pending_seek: false,
            buf: Vec::with_capacity(BUF),
        }
    }

    fn write_run(&mut self, start: usize, end: usize) -> io::Result<()> {
        if self.pending_seek {
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.pending_seek = false;
        }
        self.file.write_all(&self.buf[start..end])?;
        self.pos += (end - start) as u64;
        Ok(())
    }

    /// Writes the buffer's first `len` bytes (`pos` stays block-aligned
    /// until the final flush), seeking over zero blocks.
    fn drain(&mut self, len: usize) -> io::Result<()> {
        let mut run_start = 0;
        let mut i = 0;
        while i < len {
            let end = (i + BLOCK).min(len);
            if end - i == BLOCK && self.buf[i..end].iter().all(|&b| b == 0) {
                if run_start < i {
                    self.write_run(run_start, i)?;
                }
                self.pos += BLOCK as u64;
                self.pending_seek = true;
                run_start = end;
            }
            i = end;
        }
        if run_start < len {
            self.write_run(run_start, len)?;
        }
        self.buf.drain(..len);
        Ok(())
    }

    /// Writes what is buffered, sets the final length (trailing holes) and
    /// returns the file.
    pub fn finish(mut self) -> io::Result<File> {
        let len = self.buf.len();
        self.drain(len)?;
        self.file.set_len(self.pos)?;
        Ok(self.file)
    }
}

impl Write for SparseWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(BUF - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == BUF {
            self.drain(BUF)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn detects_by_extension_then_magic() {
        assert_eq!(
            Compression::from_location("https://x/y.img.xz?token=1"),
            Some(Compression::Xz)
        );
        assert_eq!(
            Compression::from_location("/a.b/vmlinuz.GZ"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_location("https://x/a.zst"),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_location("https://x.gz/disk.qcow2"), None);
        assert_eq!(Compression::from_location("https://x/a.zstd"), None);
        assert_eq!(
            Compression::detect("https://x/a.zstd", &[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_magic(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Some(Compression::Xz)
        );
        assert_eq!(
            Compression::from_magic(b"BZh91AY"),
            Some(Compression::Bzip2)
        );
        assert_eq!(
            Compression::from_magic(&[0x1f, 0x8b, 8]),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_magic(b"QFI\xfb"), None);
    }

    fn roundtrip(c: Compression, data: &[u8]) -> Vec<u8> {
        let compressed = match c {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
        };
        assert_eq!(Compression::from_magic(&compressed), Some(c));
        let mut out = Vec::new();
        c.decoder(&compressed[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn each_format_roundtrips() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for c in [
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            assert_eq!(roundtrip(c, &data), data, "{}", c.name());
        }
    }

    #[test]
    fn sparse_writer_keeps_content_and_makes_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut data = vec![0u8; 1 << 20];
        data[5000] = 1;
        data.extend(vec![7u8; 3000]);
        data.extend(vec![0u8; 10_000]);
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        // Odd chunk sizes so block boundaries fall inside writes.
        for chunk in data.chunks(3333) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&p).unwrap();
        assert!(m.blocks() * 512 < m.len() / 2, "expected holes");
    }
}
