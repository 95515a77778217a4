//! doclink-healthcheck: the container's HEALTHCHECK probe.
//!
//!     doclink-healthcheck http://127.0.0.1:9464/healthz
//!
//! Exits 0 when the answer's status is 200, 1 otherwise (refused, timed out,
//! any other status). The runtime image has no shell, curl or wget, and doclink
//! has no health subcommand, so this std-only program is built with plain
//! `rustc` in the builder stage. It speaks just enough HTTP/1.1 for doclink's
//! own endpoint: plain http, a literal IP address and port, no redirects.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

fn probe(url: &str) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority}: not IP:port ({e})"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: doclink-healthcheck\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    // The status line is all that matters; read until it is complete.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => {
            code.parse().map_err(|_| format!("bad status line: {}", line.lines().next().unwrap_or("")))
        }
        _ => Err(format!("bad status line: {}", line.lines().next().unwrap_or(""))),
    }
}

fn main() -> ExitCode {
    let url = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:9464/healthz".to_string());
    match probe(&url) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("doclink-healthcheck: {url}: status {code}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("doclink-healthcheck: {err}");
            ExitCode::FAILURE
        }
    }
}
