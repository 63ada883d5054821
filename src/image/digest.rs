//! OCI digests (`algo:hex`) and streaming hashers.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// A digest algorithm Lima accepts (go-digest's registered ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// The cache entry's file name for this algorithm: `sha256.digest`.
    pub fn digest_file_name(self) -> String {
        format!(
            "{}{}",
            self.name(),
            crate::store::paths::cache_files::DIGEST_SUFFIX
        )
    }
}

/// A parsed OCI digest such as `sha256:5ba3…`; `Display` gives it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    pub algo: Algorithm,
    /// Lower-case hex.
    pub hex: String,
}

impl Digest {
    /// Parses `algo:hex`; `None` when the algorithm is unknown or the hex is malformed.
    pub fn parse(s: &str) -> Option<Digest> {
        let (algo, hex) = s.split_once(':')?;
        let algo = Algorithm::parse(algo)?;
        if hex.len() != algo.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        Some(Digest {
            algo,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex)
    }
}

/// An incremental hasher for one [`Algorithm`].
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algo, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha384(h) => (Algorithm::Sha384, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algo, hex }
    }
}

/// Hashes everything read through it (when given a hasher).
pub struct HashingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, hasher: Option<Hasher>) -> Self {
        HashingReader {
            inner,
            hasher,
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads the rest (so trailing bytes a decoder left are hashed too) and
    /// returns the digest, if hashing.
    pub fn finish(mut self) -> io::Result<Option<Digest>> {
        if self.hasher.is_some() {
            io::copy(&mut self, &mut io::sink())?;
        }
        Ok(self.hasher.map(Hasher::finish))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// The sha256 of a string, hex: the cache key of a URL.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let d = Digest::parse(
            "sha256:5ba3d476707d510fe3ca3928e9cda5d0b4ce527d42b343404c92d563f82ba967",
        )
        .unwrap();
        assert_eq!(d.algo, Algorithm::Sha256);
        assert_eq!(
            d.to_string(),
            "sha256:5ba3d476707d510fe3ca3928e9cda5d0b4ce527d42b343404c92d563f82ba967"
        );
        assert_eq!(d.algo.digest_file_name(), "sha256.digest");
        assert!(Digest::parse("sha256:abc").is_none());
        assert!(Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e").is_none());
        assert!(
            Digest::parse(
                "sha256:5BA3D476707D510FE3CA3928E9CDA5D0B4CE527D42B343404C92D563F82BA967"
            )
            .is_none()
        );
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_some());
    }

    #[test]
    fn hashing_reader_hashes_everything() {
        let data = b"hello world".to_vec();
        let mut r = HashingReader::new(&data[..], Some(Algorithm::Sha256.hasher()));
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let d = r.finish().unwrap().unwrap();
        assert_eq!(
            d.hex,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            sha256_hex("hello world"),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }
}
