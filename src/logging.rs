//! Log lines leave the process through a bounded buffer and a writer thread, so a
//! stderr that nobody reads (a stuck log shipper, a full journald) never blocks the
//! letters: when the buffer is full, lines are dropped and counted.
//!
//! Lines are written in batches: the first line into an empty buffer wakes the
//! writer, which waits up to 100 ms for more (less when the process is closing) and
//! writes them in one call. A wake-up and a write per line cost about a tenth of a
//! letter's CPU (measured); at a few dozen letters a second, a 10 ms wait still
//! woke the writer for nearly every line.
//!
//! The same thread draws the live status line (`run --drain` on a terminal): it
//! erases that line before it writes log lines and draws it again under them, so a
//! log line never starts in the middle of a half-drawn status line.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long the writer gathers lines after the first one arrives.
const GATHER: Duration = Duration::from_millis(100);

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when the writer has drawn or erased the status line.
    status_settled: Condvar,
    limit_bytes: usize,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closing: bool,
    finished: bool,
    /// The status line to show under the log lines, if any.
    status: Option<String>,
    /// The status line changed since the writer last drew it.
    status_changed: bool,
    /// The status line is on the screen: the next write must erase it first.
    status_shown: bool,
}

/// Back to the start of the line and erase it (ANSI EL 2).
const ERASE_LINE: &[u8] = b"\r\x1b[2K";

/// The sending side: a [`tracing_subscriber::fmt::MakeWriter`]. Cloning is cheap.
#[derive(Clone)]
pub struct LogBuffer {
    shared: Arc<Shared>,
}

/// Ends the writer thread when dropped, after flushing what it can within a second.
pub struct LogFlushGuard {
    shared: Arc<Shared>,
}

impl LogBuffer {
    /// Starts the writer thread on `sink`; at most `limit_bytes` wait unwritten.
    pub fn start<W: Write + Send + 'static>(sink: W, limit_bytes: usize) -> (Self, LogFlushGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            status_settled: Condvar::new(),
            limit_bytes,
            dropped: AtomicU64::new(0),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("doclink-log".into())
            .spawn(move || write_batches(&writer, sink))
            .expect("the log writer thread starts");
        (
            Self {
                shared: shared.clone(),
            },
            LogFlushGuard { shared },
        )
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Shows `text` as the status line (one line, no line break), in place of the
    /// last one. Only for a terminal: the line is redrawn with escape sequences.
    pub fn show_status(&self, text: String) {
        let mut state = self.shared.state.lock().expect("log buffer lock");
        state.status = Some(text);
        state.status_changed = true;
        drop(state);
        self.shared.wake.notify_all();
    }

    /// Erases the status line and returns once it is gone from the screen (at most
    /// a second, for a stderr nobody reads), so that what is printed next does not
    /// share its line.
    pub fn clear_status(&self) {
        let mut state = self.shared.state.lock().expect("log buffer lock");
        state.status = None;
        state.status_changed = true;
        self.shared.wake.notify_all();
        let _ = self
            .shared
            .status_settled
            .wait_timeout_while(state, Duration::from_secs(1), |s| {
                (s.status_changed || s.status_shown) && !s.finished
            })
            .expect("log buffer lock");
    }

    fn push(&self, line: &[u8]) {
        let mut state = self.shared.state.lock().expect("log buffer lock");
        if state.pending.len() + line.len() > self.shared.limit_bytes {
            drop(state);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(line);
        drop(state);
        if was_empty {
            self.shared.wake.notify_one();
        }
    }
}

fn write_batches<W: Write>(shared: &Shared, mut sink: W) {
    let mut batch = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut state = shared.state.lock().expect("log buffer lock");
        while state.pending.is_empty() && !state.closing && !state.status_changed {
            state = shared.wake.wait(state).expect("log buffer lock");
        }
        if !state.pending.is_empty() {
            // Let more lines join this batch; closing or erasing the status line
            // ends the wait at once.
            state = shared
                .wake
                .wait_timeout_while(state, GATHER, |s| {
                    let erasing = s.status_changed && s.status.is_none();
                    !(s.closing || erasing)
                })
                .expect("log buffer lock")
                .0;
        }
        std::mem::swap(&mut batch, &mut state.pending);
        let redraw = !batch.is_empty() || state.status_changed;
        state.status_changed = false;
        let status = state.status.clone();
        let shown = state.status_shown;
        let closing = state.closing;
        drop(state);
        if redraw {
            out.clear();
            if shown {
                out.extend_from_slice(ERASE_LINE);
            }
            out.append(&mut batch);
            if let Some(status) = &status {
                out.extend_from_slice(status.as_bytes());
            }
            if !out.is_empty() {
                // A sink that fails (a closed stderr) loses these lines; nothing else to do.
                let _ = sink.write_all(&out).and_then(|()| sink.flush());
            }
            let mut state = shared.state.lock().expect("log buffer lock");
            state.status_shown = status.is_some();
            drop(state);
            shared.status_settled.notify_all();
        }
        if closing {
            let mut state = shared.state.lock().expect("log buffer lock");
            if state.pending.is_empty() {
                state.finished = true;
                shared.wake.notify_all();
                shared.status_settled.notify_all();
                return;
            }
        }
    }
}

impl Drop for LogFlushGuard {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("log buffer lock");
        state.closing = true;
        self.shared.wake.notify_all();
        // A writer blocked on a stderr nobody reads must not keep the process alive.
        let (state, _) = self
            .shared
            .wake
            .wait_timeout_while(state, Duration::from_secs(1), |s| !s.finished)
            .expect("log buffer lock");
        drop(state);
    }
}

/// One log line being formatted; it joins the buffer whole when dropped.
pub struct LineWriter {
    buffer: LogBuffer,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.buffer.push(&self.line);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buffer: self.clone(),
            line: Vec::with_capacity(256),
        }
    }
}

/// Hides PostgreSQL's notices that an `IF NOT EXISTS` or `IF EXISTS` had nothing to
/// do, such as `relation "_sqlx_migrations" already exists, skipping`, which sqlx's
/// migrator causes at every start of an already-migrated database: news to nobody,
/// and they read like a fault. Every other notice is still logged.
pub struct QuietNotices;

/// Where sqlx logs PostgreSQL's notices (a NOTICE at `info`).
const NOTICE_TARGET: &str = "sqlx::postgres::notice";

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietNotices {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if event.metadata().target() != NOTICE_TARGET {
            return true;
        }
        let mut message = MessageField(String::new());
        event.record(&mut message);
        !is_nothing_to_do_notice(&message.0)
    }
}

/// PostgreSQL's words for an `IF [NOT] EXISTS` that skipped its statement.
fn is_nothing_to_do_notice(message: &str) -> bool {
    message.ends_with(", skipping")
        && (message.contains(" already exists") || message.contains(" does not exist"))
}

/// An event's `message` field.
struct MessageField(String);

impl tracing::field::Visit for MessageField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// The log filter: `DOCLINK_LOG` when set, else [`DEFAULT_FILTER`]. An invalid filter is an
/// error naming the setting, not a filter that quietly shows nothing: `EnvFilter`
/// reads a bare word it does not know (`verbose`) as a target name, which hides
/// every line, warnings included. So a directive without `=` must be a level.
pub fn filter_from_env() -> Result<tracing_subscriber::EnvFilter, crate::config::ConfigError> {
    let error = |message: String| crate::config::ConfigError {
        env: "DOCLINK_LOG",
        key: "environment only",
        message,
    };
    match std::env::var("DOCLINK_LOG") {
        Ok(text) if !text.trim().is_empty() => parse_filter(&text).map_err(error),
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            Ok(tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(error("is not valid UTF-8".into())),
    }
}

/// `info`, but the AWS SDK's credential and region chain only at `error`: it warns
/// for each provider it tries in vain, with debug dumps, and doclink names what is
/// missing itself (`startup::check_aws_setup`).
pub const DEFAULT_FILTER: &str = "info,aws_config=error";

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn parse_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let wrong = |why: String| {
        format!(
            "{why}; give a level ({}) or target=level directives, \
             e.g. DOCLINK_LOG=info,doclink=debug",
            LEVELS.join(", ")
        )
    };
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[']);
        if bare && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(wrong(format!("{directive:?} is not a log level")));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| {
        wrong(format!(
            "{:?} is not a log filter: {e}",
            crate::error::echo(text)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter that would hide every line is refused, naming the setting; levels
    /// and target=level directives are accepted.
    #[test]
    fn an_invalid_log_filter_names_the_setting() {
        for good in [
            "info",
            "WARN",
            "info,doclink=debug",
            "sqlx=warn, debug",
            "off",
        ] {
            assert!(parse_filter(good).is_ok(), "{good}");
        }
        let error = parse_filter("verbose").unwrap_err();
        assert!(
            error.starts_with("\"verbose\" is not a log level; give a level (trace, debug, info, warn, error, off)"),
            "{error}"
        );
        assert!(
            parse_filter("doclink=loud")
                .unwrap_err()
                .starts_with("\"doclink=loud\" is not a log filter")
        );
    }

    /// A sink that hands each write to the test as it happens.
    struct Writes(std::sync::mpsc::Sender<String>);

    impl Write for Writes {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(String::from_utf8_lossy(bytes).into_owned());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The status line is erased before log lines are written and drawn again under
    /// them, so no log line starts in the middle of it; once cleared, it is gone
    /// before `clear_status` returns, and log lines are written bare.
    #[test]
    fn log_lines_are_never_glued_to_the_status_line() {
        let (sent, writes) = std::sync::mpsc::channel();
        let (buffer, guard) = LogBuffer::start(Writes(sent), 1 << 20);
        let next = || writes.recv_timeout(Duration::from_secs(10)).unwrap();
        let log = |text: &str| {
            let mut line = tracing_subscriber::fmt::MakeWriter::make_writer(&buffer);
            writeln!(line, "{text}").unwrap();
        };
        buffer.show_status("sent 1, in flight 2".into());
        assert_eq!(next(), "sent 1, in flight 2");
        log("a log line");
        assert_eq!(next(), "\r\x1b[2Ka log line\nsent 1, in flight 2");
        buffer.show_status("sent 2, in flight 1".into());
        assert_eq!(next(), "\r\x1b[2Ksent 2, in flight 1");
        buffer.clear_status();
        assert_eq!(writes.try_recv().unwrap(), "\r\x1b[2K");
        log("after the status line");
        assert_eq!(next(), "after the status line\n");
        drop(guard);
    }

    /// PostgreSQL's "already exists, skipping" (and "does not exist, skipping")
    /// notices are not logged; other notices and every other event are.
    #[test]
    fn nothing_to_do_notices_are_not_logged() {
        use tracing_subscriber::layer::SubscriberExt;
        let (sent, writes) = std::sync::mpsc::channel();
        let (buffer, guard) = LogBuffer::start(Writes(sent), 1 << 20);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer)
            .with_ansi(false)
            .finish()
            .with(QuietNotices);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "sqlx::postgres::notice",
                message = "relation \"_sqlx_migrations\" already exists, skipping"
            );
            tracing::info!(
                target: "sqlx::postgres::notice",
                message = "trigger \"t\" for relation \"links\" does not exist, skipping"
            );
            tracing::info!(target: "sqlx::postgres::notice", message = "a notice that says something");
            tracing::info!("relation already exists, skipping, said by doclink itself");
        });
        drop(guard);
        let written: String = writes.try_iter().collect();
        assert!(!written.contains("_sqlx_migrations"), "{written}");
        assert!(!written.contains("does not exist"), "{written}");
        assert!(
            written.contains("a notice that says something"),
            "{written}"
        );
        assert!(written.contains("said by doclink itself"), "{written}");
    }

    /// A sink that blocks until released, as a pipe nobody reads.
    struct Blocked(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);

    impl Write for Blocked {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.1.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_sink_never_blocks_the_logger_and_drops_are_counted() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (buffer, guard) = LogBuffer::start(Blocked(gate.clone(), written.clone()), 1_000);
        for i in 0..1_000 {
            let mut line = tracing_subscriber::fmt::MakeWriter::make_writer(&buffer);
            writeln!(line, "line {i:04}").unwrap();
        }
        // The sink took at most one batch before it blocked; the rest overflowed.
        assert!(buffer.dropped_lines() >= 800, "{}", buffer.dropped_lines());
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let written = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(written.starts_with("line 0000\n"), "{written}");
        assert_eq!(
            written.lines().count() as u64 + buffer.dropped_lines(),
            1_000
        );
    }
}
