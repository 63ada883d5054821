//! Log lines in Lima's (logrus) shapes, on stderr:
//! text `time="…" level=info msg="…"` or JSON `{"level":"info","msg":"…","time":"…"}`.
//! Scripts match `level=<lvl> msg="<message>"`, so the text shape is kept exactly.
//!
//! Events are `tracing` events; `LogrusLayer` formats them. Fields of the event
//! and of its enclosing spans (root first) become logrus fields, so inside
//! `let _g = instance_span("web").entered();` every line ends in ` instance=web`.
//! logrus' levels that `tracing` lacks are ERROR events carrying a marker field:
//! `tracing::error!(lima.fatal = true, "…")` is `level=fatal` (and `lima.panic`).
//! Only this crate's events are shown: dependencies that use `tracing`
//! (hadris-iso does) stay quiet, and there is no `log` bridge for the same reason.

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::{LookupSpan, Registry};

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Marker fields on ERROR events for logrus' two levels above error.
pub const FATAL_FIELD: &str = "lima.fatal";
pub const PANIC_FIELD: &str = "lima.panic";
/// Carries `log()`'s run-time fields (JSON `[[key, value], …]`): `tracing` field names are static.
const FIELDS_FIELD: &str = "lima.fields";
/// The crate whose events are shown (its targets are `lima` and `lima::…`).
const OWN_CRATE: &str = env!("CARGO_CRATE_NAME");

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

    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Panic,
            1 => Level::Fatal,
            2 => Level::Error,
            3 => Level::Warn,
            4 => Level::Info,
            5 => Level::Debug,
            _ => Level::Trace,
        }
    }

    /// The logrus level of an event: its `tracing` level, refined by the marker fields.
    fn of(m: &Metadata<'_>) -> Level {
        match *m.level() {
            tracing::Level::ERROR if m.fields().field(PANIC_FIELD).is_some() => Level::Panic,
            tracing::Level::ERROR if m.fields().field(FATAL_FIELD).is_some() => Level::Fatal,
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::TRACE => Level::Trace,
        }
    }
}

/// stderr, for log lines: written with any progress bar cleared and redrawn
/// below the line.
struct AroundBars;

fn stderr_around_bars() -> AroundBars {
    AroundBars
}

impl std::io::Write for AroundBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::suspend(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        crate::progress::suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the stderr subscriber once per process (`set_level`, `set_json` and
/// `log` do; `main_with_args` calls `set_level` first); later calls cost one atomic load.
/// The level and format stay switchable afterwards (they are read per event), so
/// `main_with_args` may run many times in one process.
fn install() {
    INSTALL.call_once(|| {
        let subscriber = Registry::default().with(LogrusLayer {
            config: Config::Global,
            writer: stderr_around_bars,
        });
        // A program embedding this library may have its own subscriber: it wins.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
    install();
}

pub fn level() -> Level {
    Level::from_u8(LEVEL.load(Ordering::Relaxed))
}

pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
    install();
}

pub fn enabled(l: Level) -> bool {
    l <= level()
}

/// The span that tags every line logged inside it with ` instance=NAME`
/// (enter it: `let _g = logging::instance_span(name).entered();`). Spans do not
/// follow spawned threads: enter `Span::current()` again in the new thread.
pub fn instance_span(name: &str) -> tracing::Span {
    tracing::info_span!("instance", instance = name)
}

/// `std::thread::spawn` keeping the caller's span (spans are per thread):
/// the host agent's threads log with `instance=NAME` like its main thread.
pub fn spawn_in_span<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    std::thread::spawn(move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(f)))
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

/// `log()`'s fields, serialized only when the event is written.
struct Encoded<'a>(&'a [(&'a str, &'a str)]);

impl std::fmt::Display for Encoded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self.0).map_err(|_| std::fmt::Error)?)
    }
}

/// Logs one line at a level known only at run time (e.g. a host agent's line
/// re-logged with its own level), with extra logrus fields.
pub fn log(l: Level, msg: &str, fields: &[(&str, &str)]) {
    install();
    let extra = (!fields.is_empty()).then(|| tracing::field::display(Encoded(fields)));
    match l {
        Level::Panic => tracing::error!(lima.panic = true, lima.fields = extra, "{msg}"),
        Level::Fatal => tracing::error!(lima.fatal = true, lima.fields = extra, "{msg}"),
        Level::Error => tracing::error!(lima.fields = extra, "{msg}"),
        Level::Warn => tracing::warn!(lima.fields = extra, "{msg}"),
        Level::Info => tracing::info!(lima.fields = extra, "{msg}"),
        Level::Debug => tracing::debug!(lima.fields = extra, "{msg}"),
        Level::Trace => tracing::trace!(lima.fields = extra, "{msg}"),
    }
}

/// Where the level, format and clock come from.
enum Config {
    /// `set_level`/`set_json`, the wall clock.
    Global,
    /// Fixed values, for tests that compare whole lines.
    #[cfg(test)]
    Fixed {
        level: Level,
        json: bool,
        time: &'static str,
    },
}

impl Config {
    fn level(&self) -> Level {
        match self {
            Config::Global => level(),
            #[cfg(test)]
            Config::Fixed { level, .. } => *level,
        }
    }
}

/// Writes each event as one logrus line (with the newline, in one write).
struct LogrusLayer<W> {
    config: Config,
    writer: W,
}

/// Logrus fields in order of first appearance; a later value for a key replaces
/// the earlier one (an inner span or the event overrides an outer span), as a
/// logrus `Fields` map would.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Fields {
    fn set(&mut self, key: &str, value: String) {
        match self.pairs.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.pairs.push((key.to_string(), value)),
        }
    }

    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            FATAL_FIELD | PANIC_FIELD => {}
            FIELDS_FIELD => match serde_json::from_str::<Vec<(String, String)>>(&value) {
                Ok(pairs) => pairs.into_iter().for_each(|(k, v)| self.set(&k, v)),
                Err(_) => self.set(FIELDS_FIELD, value),
            },
            name => self.set(name, value),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

fn own_target(target: &str) -> bool {
    target
        .strip_prefix(OWN_CRATE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

impl<S, W> Layer<S> for LogrusLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
        // "sometimes": the level can change at run time, so `enabled` decides per event.
        if own_target(m.target()) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, m: &Metadata<'_>, _: Context<'_, S>) -> bool {
        // Spans are always on, so an error inside an info span still carries its fields.
        own_target(m.target()) && (m.is_span() || Level::of(m) <= self.config.level())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    for (k, v) in &f.pairs {
                        fields.set(k, v.clone());
                    }
                }
            }
        }
        event.record(&mut fields);
        let pairs: Vec<(&str, &str)> = fields
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let level = Level::of(event.metadata());
        let mut line = match &self.config {
            Config::Global => format_line(
                level,
                &fields.message,
                &pairs,
                JSON.load(Ordering::Relaxed),
                &now_rfc3339(),
            ),
            #[cfg(test)]
            Config::Fixed { json, time, .. } => {
                format_line(level, &fields.message, &pairs, *json, time)
            }
        };
        line.push('\n');
        let _ = self
            .writer
            .make_writer_for(event.metadata())
            .write_all(line.as_bytes());
    }
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { ::tracing::info!($($arg)*) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { ::tracing::warn!($($arg)*) };
}
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { ::tracing::error!($($arg)*) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { ::tracing::debug!($($arg)*) };
}

/// Runs `f` with a subscriber of this thread only that writes lines at time `t`
/// into a buffer; returns them. For tests that check what is logged.
#[cfg(test)]
pub(crate) fn capture(level: Level, json: bool, f: impl FnOnce()) -> String {
    use crate::sync::MutexExt;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.locked().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    let buffer = Buffer::default();
    let subscriber = Registry::default().with(LogrusLayer {
        config: Config::Fixed {
            level,
            json,
            time: "2024-01-02T03:04:05Z",
        },
        writer: buffer.clone(),
    });
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(buffer.0.locked().clone()).expect("log lines are UTF-8")
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

    const T: &str = "time=\"2024-01-02T03:04:05Z\"";
    const JT: &str = "\"time\":\"2024-01-02T03:04:05Z\"";

    #[test]
    fn subscriber_writes_text_lines_byte_for_byte() {
        let out = capture(Level::Info, false, || {
            crate::info!("Starting");
            crate::info!("`{}`: OK", "f.yaml");
            crate::warn!("disk {} is {}", "vda", "full");
            crate::error!("boom");
            crate::cli::fatal("no instance");
            tracing::info!(location = "https://x/a b.img", digest = %"sha256:ab", "Attempting");
        });
        let want = [
            format!("{T} level=info msg=Starting"),
            format!("{T} level=info msg=\"`f.yaml`: OK\""),
            format!("{T} level=warning msg=\"disk vda is full\""),
            format!("{T} level=error msg=boom"),
            format!("{T} level=fatal msg=\"no instance\""),
            format!(
                "{T} level=info msg=Attempting location=\"https://x/a b.img\" digest=\"sha256:ab\""
            ),
        ];
        assert_eq!(out, want.map(|l| l + "\n").concat());
    }

    #[test]
    fn subscriber_writes_json_lines_byte_for_byte() {
        let out = capture(Level::Info, true, || {
            crate::info!("Starting");
            crate::warn!("a\"b");
            crate::cli::fatal("no instance");
            tracing::info!(arch = "x86_64", "Attempting");
        });
        let want = [
            format!("{{\"level\":\"info\",\"msg\":\"Starting\",{JT}}}"),
            format!("{{\"level\":\"warning\",\"msg\":\"a\\\"b\",{JT}}}"),
            format!("{{\"level\":\"fatal\",\"msg\":\"no instance\",{JT}}}"),
            format!("{{\"arch\":\"x86_64\",\"level\":\"info\",\"msg\":\"Attempting\",{JT}}}"),
        ];
        assert_eq!(out, want.map(|l| l + "\n").concat());
    }

    #[test]
    fn run_time_level_and_fields() {
        let out = capture(Level::Info, false, || {
            log(
                Level::Info,
                "Attempting to download the image",
                &[("arch", "x86_64"), ("digest", ""), ("location", "/a b")],
            );
            log(Level::Warn, "[hostagent] slow", &[]);
            log(Level::Debug, "hidden", &[]);
        });
        assert_eq!(
            out,
            format!(
                "{T} level=info msg=\"Attempting to download the image\" arch=x86_64 digest=\"\" location=\"/a b\"\n\
                 {T} level=warning msg=\"[hostagent] slow\"\n"
            )
        );
    }

    #[test]
    fn threads_spawned_in_a_span_log_in_it() {
        let out = capture(Level::Info, false, || {
            let _g = instance_span("web").entered();
            spawn_in_span(|| crate::info!("from a thread"))
                .join()
                .unwrap();
        });
        assert_eq!(
            out,
            format!("{T} level=info msg=\"from a thread\" instance=web\n")
        );
    }

    #[test]
    fn instance_span_tags_every_line_inside_it() {
        let run = || {
            crate::info!("outside");
            let _g = instance_span("web").entered();
            crate::info!("Starting");
            tracing::warn!(port = 2222, "busy");
            // An inner span's value for the same key wins; the position stays.
            let _inner = instance_span("db").entered();
            crate::error!("inner");
        };
        assert_eq!(
            capture(Level::Info, false, run),
            format!(
                "{T} level=info msg=outside\n\
                 {T} level=info msg=Starting instance=web\n\
                 {T} level=warning msg=busy instance=web port=2222\n\
                 {T} level=error msg=inner instance=db\n"
            )
        );
        assert_eq!(
            capture(Level::Info, true, run),
            format!(
                "{{\"level\":\"info\",\"msg\":\"outside\",{JT}}}\n\
                 {{\"instance\":\"web\",\"level\":\"info\",\"msg\":\"Starting\",{JT}}}\n\
                 {{\"instance\":\"web\",\"port\":\"2222\",\"level\":\"warning\",\"msg\":\"busy\",{JT}}}\n\
                 {{\"instance\":\"db\",\"level\":\"error\",\"msg\":\"inner\",{JT}}}\n"
            )
        );
    }

    #[test]
    fn level_filter() {
        let run = || {
            crate::debug!("details");
            crate::info!("news");
            crate::error!("bad");
            crate::cli::fatal("worse");
        };
        assert_eq!(
            capture(Level::Info, false, run),
            format!(
                "{T} level=info msg=news\n{T} level=error msg=bad\n{T} level=fatal msg=worse\n"
            )
        );
        assert_eq!(
            capture(Level::Debug, false, run),
            format!(
                "{T} level=debug msg=details\n{T} level=info msg=news\n\
                 {T} level=error msg=bad\n{T} level=fatal msg=worse\n"
            )
        );
        assert_eq!(
            capture(Level::Fatal, false, run),
            format!("{T} level=fatal msg=worse\n")
        );
        // An error inside an info span keeps the span's field at level error.
        let out = capture(Level::Error, false, || {
            let _g = instance_span("web").entered();
            crate::info!("hidden");
            crate::error!("shown");
        });
        assert_eq!(out, format!("{T} level=error msg=shown instance=web\n"));
    }

    #[test]
    fn dependencies_events_are_not_shown() {
        let out = capture(Level::Trace, false, || {
            tracing::info!(target: "hadris_iso::read", "chatty");
            tracing::info!(target: "limarest", "not ours either");
            tracing::info!(target: "lima", "ours");
        });
        assert_eq!(out, format!("{T} level=info msg=ours\n"));
    }
}
