//! Follows the host agent's JSON log (`ha.stderr.log`) so the CLI can re-log
//! its lines with a `[hostagent]` prefix, as Lima does.

use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};

use crate::logging::Level;

pub struct LogFollower {
    path: PathBuf,
    pos: u64,
}

impl LogFollower {
    pub fn new(path: &Path) -> LogFollower {
        LogFollower {
            path: path.to_path_buf(),
            pos: 0,
        }
    }

    /// New complete lines as (level, message); debug lines are skipped unless
    /// debug logging is on. Non-JSON lines are reported at info level.
    pub fn poll(&mut self) -> Vec<(Level, String)> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(std::io::SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut reader = std::io::BufReader::new(f);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) if line.ends_with('\n') => self.pos += n as u64,
                Ok(_) => break,
            }
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
