//! One log file, read as a stream: gzip decoded as it arrives, one line at a time,
//! each line bounded, so a file of any size takes the same memory.
//!
//! CloudFront's files are gzip; a file may hold several gzip members one after
//! another (files joined, or written in parts), and each is read. A file that is
//! not gzip, or breaks off, is an [`ObjectError`]: the caller sets it aside, whole,
//! never half-read as if complete.

use super::w3c::{LogReader, Parsed};
use super::{ClientIp, scan};
use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// The longest line read. CloudFront logs nothing for a URL over 8,192 bytes or
/// headers over 20 KB, so a real line is far shorter; a longer one is malformed.
pub const MAX_LINE: usize = 64 * 1024;

/// Why a file cannot be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not gzip, corrupt, cut short, or the download broke off.
    #[error("line {line}: {cause} (not gzip, corrupt, or the download broke off)")]
    Unreadable { line: u64, cause: std::io::Error },
    /// A `#Fields:` line without the fields the audit needs.
    #[error("line {line}: {reason}")]
    BadHeader { line: u64, reason: String },
}

/// The lines of one gzip log file, read in order.
pub struct LogLines<R: AsyncBufRead + Unpin> {
    input: BufReader<GzipDecoder<R>>,
    reader: LogReader,
    ip: ClientIp,
    line: u64,
    buffer: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LogLines<R> {
    /// `body` is the file as stored (gzip).
    pub fn new(body: R, ip: ClientIp) -> Self {
        let mut gzip = GzipDecoder::new(body);
        // Without this, decoding stops silently after the first member.
        gzip.multiple_members(true);
        Self {
            input: BufReader::with_capacity(64 * 1024, gzip),
            reader: LogReader::new(),
            ip,
            line: 0,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// The next line's number and what it is, or `None` at the end of the file.
    /// Comments and headers are passed over.
    pub async fn next(&mut self) -> Result<Option<(u64, Parsed)>, ObjectError> {
        loop {
            let too_long = match self.read_line().await {
                Ok(None) => return Ok(None),
                Ok(Some(too_long)) => too_long,
                Err(cause) => {
                    return Err(ObjectError::Unreadable {
                        line: self.line + 1,
                        cause,
                    });
                }
            };
            self.line += 1;
            let parsed = if too_long {
                Parsed::Malformed(format!("longer than {MAX_LINE} bytes"))
            } else {
                match std::str::from_utf8(&self.buffer) {
                    Ok(text) => self.reader.read(text, self.ip),
                    Err(_) => Parsed::Malformed(
                        "not UTF-8 (CloudFront escapes every non-ASCII byte)".into(),
                    ),
                }
            };
            match parsed {
                Parsed::Comment | Parsed::Header => continue,
                Parsed::BadHeader(reason) => {
                    return Err(ObjectError::BadHeader {
                        line: self.line,
                        reason,
                    });
                }
                other => return Ok(Some((self.line, other))),
            }
        }
    }

    /// Reads one line into the buffer, keeping at most [`MAX_LINE`] bytes of it.
    /// `Some(true)` when the line was longer (the rest is skipped), `None` at the end.
    async fn read_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buffer.clear();
        let mut too_long = false;
        let mut read_any = false;
        loop {
            let available = self.input.fill_buf().await?;
            if available.is_empty() {
                return Ok(read_any.then_some(too_long));
            }
            read_any = true;
            let (part, used, ended) = match scan::find(available, b'\n') {
                Some(at) => (&available[..at], at + 1, true),
                None => (available, available.len(), false),
            };
            if self.buffer.len() + part.len() > MAX_LINE {
                too_long = true;
            } else {
                self.buffer.extend_from_slice(part);
            }
            self.input.consume(used);
            if ended {
                return Ok(Some(too_long));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_compression::tokio::bufread::GzipEncoder;
    use tokio::io::AsyncReadExt;

    const LID: &str = "0192f3a4-5b6c-7d8e-9f01-23456789abcd";

    async fn gzip(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        GzipEncoder::new(text.as_bytes())
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    async fn read_all(bytes: Vec<u8>) -> Result<Vec<(u64, Parsed)>, ObjectError> {
        let mut lines = LogLines::new(&bytes[..], ClientIp::Full);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await? {
            out.push(line);
        }
        Ok(out)
    }

    fn access_ids(lines: &[(u64, Parsed)]) -> Vec<(u64, String)> {
        lines
            .iter()
            .filter_map(|(n, p)| match p {
                Parsed::Access(a) => Some((*n, a.request_id.clone())),
                _ => None,
            })
            .collect()
    }

    const HEADER: &str =
        "#Version: 1.0\n#Fields: date time x-edge-request-id cs-uri-query sc-status\n";

    #[tokio::test]
    async fn every_gzip_member_is_read_and_lines_keep_their_numbers() {
        let first = gzip(&format!(
            "{HEADER}2026-12-06\t10:00:00\tr1\tlid={LID}\t200\n2026-12-06\t10:00:01\tr2\t-\t200\n"
        ))
        .await;
        let second = gzip(&format!("{HEADER}2026-12-06\t10:00:02\tr3\tlid={LID}\t200")).await;
        let empty = gzip("").await;
        let joined = [first, empty, second].concat();
        let lines = read_all(joined).await.unwrap();
        assert_eq!(
            access_ids(&lines),
            vec![(3, "r1".to_string()), (7, "r3".to_string())]
        );
        assert!(matches!(lines[1], (4, Parsed::NoLink)));
    }

    #[tokio::test]
    async fn a_long_or_broken_line_is_malformed_and_the_next_is_read() {
        let long = "x".repeat(MAX_LINE + 10);
        let text = format!(
            "{HEADER}{long}\n2026-12-06\t10:00:00\tr1\tlid={LID}\t200\nbad\n2026-12-06\t10:00:01\tr2\tlid={LID}\t200\n"
        );
        let lines = read_all(gzip(&text).await).await.unwrap();
        assert!(matches!(&lines[0], (3, Parsed::Malformed(r)) if r.contains("longer than")));
        assert!(matches!(&lines[2], (5, Parsed::Malformed(r)) if r.contains("tab-separated")));
        assert_eq!(
            access_ids(&lines),
            vec![(4, "r1".to_string()), (6, "r2".to_string())]
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_gzip_or_is_cut_short_is_an_error_not_an_end() {
        let plain = format!("{HEADER}2026-12-06\t10:00:00\tr1\tlid={LID}\t200\n").into_bytes();
        assert!(matches!(
            read_all(plain).await,
            Err(ObjectError::Unreadable { line: 1, .. })
        ));
        let whole = gzip(&format!(
            "{HEADER}2026-12-06\t10:00:00\tr1\tlid={LID}\t200\n"
        ))
        .await;
        let cut = whole[..whole.len() - 6].to_vec();
        assert!(matches!(
            read_all(cut).await,
            Err(ObjectError::Unreadable { .. })
        ));
    }

    #[tokio::test]
    async fn a_header_the_audit_cannot_use_fails_the_file() {
        let text = "#Fields: date time cs-uri-query\n2026-12-06\t10:00:00\tlid=x\n";
        let err = read_all(gzip(text).await).await.unwrap_err();
        assert!(
            matches!(&err, ObjectError::BadHeader { line: 1, reason } if reason.contains("x-edge-request-id")),
            "{err}"
        );
    }
}
