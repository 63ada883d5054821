//! Follows the host agent's JSON log (`ha.stderr.log`) so the CLI can re-log
//! its lines with a `[hostagent]` prefix, as Lima does.

use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};

use crate::logging::Level;

/// Follows a text file from a position, returning the complete lines
/// appended since the last call. The file may not exist yet; a file that
/// shrank (truncated by a new start) is read again from its beginning.
pub struct LineTail {
    path: PathBuf,
    pos: u64,
    partial: String,
}

impl LineTail {
    pub fn from_start(path: &Path) -> LineTail {
        LineTail {
            path: path.to_path_buf(),
            pos: 0,
            partial: String::new(),
        }
    }

    /// Starts at the current end of the file (only new lines).
    pub fn from_end(path: &Path) -> LineTail {
        LineTail {
            pos: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            ..LineTail::from_start(path)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// New complete lines (without their newline); an incomplete last line
    /// is kept until it is finished.
    pub fn lines(&mut self) -> std::io::Result<Vec<String>> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Ok(Vec::new());
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.pos {
            self.pos = 0;
            self.partial.clear();
        }
        f.seek(std::io::SeekFrom::Start(self.pos))?;
        let mut reader = std::io::BufReader::new(f);
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            self.pos += n as u64;
            if !line.ends_with('\n') {
                self.partial.push_str(&line);
                break;
            }
            line.pop();
            out.push(std::mem::take(&mut self.partial) + &line);
        }
        Ok(out)
    }
}

pub struct LogFollower {
    tail: LineTail,
}

impl LogFollower {
    pub fn new(path: &Path) -> LogFollower {
        LogFollower {
            tail: LineTail::from_start(path),
        }
    }

    /// New complete lines as (level, message); debug lines are skipped unless
    /// debug logging is on. Non-JSON lines are reported at info level.
    pub fn poll(&mut self) -> Vec<(Level, String)> {
        let mut out = Vec::new();
        for line in self.tail.lines().unwrap_or_default() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => {
                    let level = v["level"]
                        .as_str()
                        .and_then(Level::parse)
                        .unwrap_or(Level::Info)
                        .max(Level::Error);
                    let msg = v["msg"].as_str().unwrap_or("").to_string();
                    if crate::logging::enabled(level) {
                        out.push((level, msg));
                    }
                }
                Err(_) => out.push((Level::Info, line.to_string())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn complete_lines_only_and_again_after_truncation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut t = LineTail::from_start(&p);
        assert!(t.lines().unwrap().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(t.lines().unwrap(), ["one"]);
        f.write_all(b"o\n").unwrap();
        assert_eq!(t.lines().unwrap(), ["two"]);
        let mut end = LineTail::from_end(&p);
        std::fs::write(&p, "new\n").unwrap();
        assert_eq!(t.lines().unwrap(), ["new"], "a shorter file is a new one");
        assert_eq!(end.lines().unwrap(), ["new"]);
    }
}
