//! Error reports that keep every cause: `ErrorChain` displays an error followed by
//! each of its sources, for log lines (the binary's top-level report does the same
//! through anyhow's `{:#}`).

use std::fmt;

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
