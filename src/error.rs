//! Error reports that keep every cause: `ErrorChain` displays an error followed by
//! each of its sources, for log lines (the binary's top-level report does the same
//! through anyhow's `{:#}`).

use std::fmt;

/// At most this many characters of an offending value are echoed in an error.
pub const ECHO_CHARS: usize = 80;

/// An offending value as an error message quotes it: its first [`ECHO_CHARS`]
/// characters, and `…` when there was more. A rejection reason is stored, logged
/// and shown; a 240 KB value must not make it 240 KB (the raw body is kept apart).
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The error type that carries an underlying cause of any kind.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Displays `error: cause: cause ...`, skipping a cause whose text the previous
/// line already ends with (the AWS SDK's errors often repeat themselves).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = self.0.to_string();
        f.write_str(&previous)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !previous.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            previous = text;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_are_cut() {
        assert_eq!(echo("short"), "short");
        assert_eq!(echo(&"é".repeat(80)), "é".repeat(80));
        assert_eq!(echo(&"é".repeat(81)), format!("{}…", "é".repeat(80)));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn prints_every_cause() {
        let err = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(ErrorChain(&err).to_string(), "outer: connection refused");
    }
}
