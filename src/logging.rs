//! Log lines in Lima's (logrus) shapes, on stderr:
//! text `time="…" level=info msg="…"` or JSON `{"level":"info","msg":"…","time":"…"}`.
//! Scripts match `level=<lvl> msg="<message>"`, so the text shape is kept exactly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Panic = 0,
    Fatal = 1,
    Error = 2,
    Warn = 3,
    Info = 4,
    Debug = 5,
    Trace = 6,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Panic => "panic",
            Level::Fatal => "fatal",
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "panic" => Level::Panic,
            "fatal" => Level::Fatal,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }
}

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Panic,
        1 => Level::Fatal,
        2 => Level::Error,
        3 => Level::Warn,
        4 => Level::Info,
        5 => Level::Debug,
        _ => Level::Trace,
    }
}

pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

pub fn enabled(l: Level) -> bool {
    l <= level()
}

/// logrus' quoting rule: bare when every character is "safe", else Go-quoted.
fn logfmt_value(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if safe {
        s.to_string()
    } else {
        crate::spec::yaml::go_quote(s)
    }
}

/// Formats one line (without the newline).
pub fn format_line(l: Level, msg: &str, fields: &[(&str, &str)], json: bool, time: &str) -> String {
    if json {
        let mut m = serde_json::Map::new();
        for (k, v) in fields {
            m.insert(
                (*k).to_string(),
                serde_json::Value::String((*v).to_string()),
            );
        }
        m.insert("level".into(), l.name().into());
        m.insert("msg".into(), msg.into());
        m.insert("time".into(), time.into());
        serde_json::Value::Object(m).to_string()
    } else {
        let mut s = format!(
            "time={} level={} msg={}",
            logfmt_value(time),
            l.name(),
            logfmt_value(msg)
        );
        for (k, v) in fields {
            s.push_str(&format!(" {k}={}", logfmt_value(v)));
        }
        s
    }
}

pub fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes one log line to stderr if `l` is enabled.
pub fn log(l: Level, msg: &str, fields: &[(&str, &str)]) {
    if !enabled(l) {
        return;
    }
    let line = format_line(l, msg, fields, JSON.load(Ordering::Relaxed), &now_rfc3339());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::logging::log($crate::logging::Level::Info, &format!($($arg)*), &[]) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::logging::log($crate::logging::Level::Warn, &format!($($arg)*), &[]) };
}
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::logging::log($crate::logging::Level::Error, &format!($($arg)*), &[]) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::logging::log($crate::logging::Level::Debug, &format!($($arg)*), &[]) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_match_logrus() {
        assert_eq!(
            format_line(
                Level::Info,
                "`f.yaml`: OK",
                &[],
                false,
                "2024-01-02T03:04:05Z"
            ),
            "time=\"2024-01-02T03:04:05Z\" level=info msg=\"`f.yaml`: OK\""
        );
        assert_eq!(
            format_line(Level::Warn, "a\"b", &[("instance", "x")], false, "t"),
            "time=t level=warning msg=\"a\\\"b\" instance=x"
        );
    }

    #[test]
    fn json_lines() {
        let l = format_line(Level::Error, "boom", &[], true, "t");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom");
    }
}
