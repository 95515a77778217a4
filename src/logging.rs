//! Log lines leave the process through a bounded buffer and a writer thread, so a
//! stderr that nobody reads (a stuck log shipper, a full journald) never blocks the
//! letters: when the buffer is full, lines are dropped and counted.
//!
//! Lines are written in batches: the first line into an empty buffer wakes the
//! writer, which waits up to 100 ms for more (less when the process is closing) and
//! writes them in one call. A wake-up and a write per line cost about a tenth of a
//! letter's CPU (measured); at a few dozen letters a second, a 10 ms wait still
//! woke the writer for nearly every line.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long the writer gathers lines after the first one arrives.
const GATHER: Duration = Duration::from_millis(100);

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    limit_bytes: usize,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closing: bool,
    finished: bool,
}

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
    loop {
        let mut state = shared.state.lock().expect("log buffer lock");
        while state.pending.is_empty() && !state.closing {
            state = shared.wake.wait(state).expect("log buffer lock");
        }
        // Let more lines join this batch; closing ends the wait at once.
        state = shared
            .wake
            .wait_timeout_while(state, GATHER, |s| !s.closing)
            .expect("log buffer lock")
            .0;
        std::mem::swap(&mut batch, &mut state.pending);
        let closing = state.closing;
        drop(state);
        if !batch.is_empty() {
            // A sink that fails (a closed stderr) loses these lines; nothing else to do.
            let _ = sink.write_all(&batch).and_then(|()| sink.flush());
            batch.clear();
        }
        if closing {
            let mut state = shared.state.lock().expect("log buffer lock");
            if state.pending.is_empty() {
                state.finished = true;
                shared.wake.notify_all();
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
