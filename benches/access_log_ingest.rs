//! Access-log ingest (issue 21, "Speed"): a CloudFront log of 10,000,000 lines
//! (`BENCH_ACCESS_LINES` for a quick trial) read by
//! `doclink::runtime::access_logs::ingest`, the daemon's path for one S3 object
//! without S3: gzip stream, W3C lines, batches into `link_access`. Lines per
//! second per core (lines over this process's CPU time), wall time, the database's
//! CPU beside it, and this process's peak RSS, written to BENCHMARKS.md. Needs
//! DATABASE_URL (`make bench-access` runs it inside scripts/stack.sh); it builds
//! its own database, `doclink_bench_access`.
//!
//! The file is written first, not timed: legacy W3C lines as CloudFront writes
//! them (33 fields, a few hundred bytes each), in several gzip members, each with
//! its own `#Version` and `#Fields` lines. 1% of the lines are requests for links
//! the database holds (full downloads, ranges, 304s, refusals by the signature check
//! and by the revocation function; some repeated, as when a request is logged in
//! two files), 0.2% name link ids doclink never issued, the rest are other requests.
//! Every line is a function of its number, so what the file holds is counted as it
//! is written, and the ingest's counts and the rows it wrote must agree with that
//! or the bench fails. The same file is then read again: nothing new is recorded.

mod common;

/// As the daemon allocates (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use chrono::{DateTime, TimeZone, Utc};
use doclink::access_log::ClientIp;
use doclink::audit::AuditLog;
use doclink::runtime::access_logs::{FileCounts, ingest};
use flate2::Compression;
use flate2::write::GzEncoder;
use sqlx::postgres::PgPool;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEFAULT_LINES: u64 = 10_000_000;
const LINKS: usize = 10_000;
/// Gzip members in the file (fewer for a file of fewer lines).
const MEMBERS: u64 = 8;
/// The period the file covers, in seconds; the lines are in time order.
const SPAN: i64 = 86_400;
/// Every 20th link is revoked halfway through the period.
const REVOKED_EVERY: usize = 20;
const DATABASE: &str = "doclink_bench_access";
const WRITER: &str = "doclink_bench_access_writer";
/// The file is read through tokio in reads of this size.
const READ_BUFFER: usize = 64 * 1024;
/// RSS samples over the file (one each twentieth of it).
const SAMPLES: u64 = 20;
const TARGET_LINES_PER_CORE: f64 = 500_000.0;
const TARGET_RSS_MIB: f64 = 48.0;

const FIELDS: &str = "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

/// A cheap, well-mixed hash (splitmix64's finaliser): the generator's randomness.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn h(salt: u64, n: u64) -> u64 {
    mix(mix(salt) ^ n)
}

/// A random (version 4) UUID from a seed.
fn uuid_from(seed: u64) -> Uuid {
    let bytes = ((h(seed, 1) as u128) << 64 | h(seed, 2) as u128).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// What the links in the database are.
struct Links {
    ids: Vec<Uuid>,
    revoked_at: DateTime<Utc>,
}

impl Links {
    fn new(revoked_at: DateTime<Utc>) -> Self {
        Self {
            ids: (0..LINKS as u64).map(|i| uuid_from(h(1, i))).collect(),
            revoked_at,
        }
    }

    fn revoked(&self, i: usize) -> bool {
        i.is_multiple_of(REVOKED_EVERY)
    }
}

/// What the file holds, counted as it is written.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    lines: u64,
    bytes: u64,
    /// Lines for issued links, and of them the copies of an earlier request.
    issued: u64,
    repeated: u64,
    /// Lines naming a link id doclink never issued.
    other_link: u64,
    no_link: u64,
    /// Of the distinct requests for issued links:
    opened: u64,
    refused: u64,
    after_revoke: u64,
    bytes_sent: i64,
    ranges: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.lines += o.lines;
        self.bytes += o.bytes;
        self.issued += o.issued;
        self.repeated += o.repeated;
        self.other_link += o.other_link;
        self.no_link += o.no_link;
        self.opened += o.opened;
        self.refused += o.refused;
        self.after_revoke += o.after_revoke;
        self.bytes_sent += o.bytes_sent;
        self.ranges += o.ranges;
    }

    fn recorded(&self) -> u64 {
        self.issued - self.repeated
    }
}

/// The generator: line `n` of `lines`, as text, from its number alone.
struct Generator<'a> {
    lines: u64,
    base: i64,
    links: &'a Links,
}

const EDGES: [&str; 8] = [
    "FRA56-P7", "LHR62-C2", "IAD89-P1", "CDG50-P3", "AMS1-C1", "NRT57-P2", "GRU3-C1", "SIN2-P5",
];
const AGENTS: [&str; 6] = [
    "Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)%20AppleWebKit/537.36%20(KHTML,%20like%20Gecko)%20Chrome/131.0.0.0%20Safari/537.36",
    "Mozilla/5.0%20(X11;%20Linux%20x86_64;%20rv:133.0)%20Gecko/20100101%20Firefox/133.0",
    "Mozilla/5.0%20(iPhone;%20CPU%20iPhone%20OS%2018_1%20like%20Mac%20OS%20X)%20AppleWebKit/605.1.15%20(KHTML,%20like%20Gecko)%20Version/18.1%20Mobile/15E148%20Safari/604.1",
    "Mozilla/5.0%20(Macintosh;%20Intel%20Mac%20OS%20X%2010_15_7)%20AppleWebKit/605.1.15%20(KHTML,%20like%20Gecko)%20Version/18.1%20Safari/605.1.15",
    "Microsoft%20Office/16.0%20(Windows%20NT%2010.0;%20Microsoft%20Outlook%2016.0.18025;%20Pro)",
    "curl/8.5.0",
];
/// The 64 characters of a request id (and, with `~`, of a signature).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One line's fields that vary.
struct Line<'s> {
    edge: &'s str,
    bytes_sent: i64,
    method: &'s str,
    stem: String,
    status: u16,
    referer: &'s str,
    agent: &'s str,
    result: &'s str,
    detailed: &'s str,
    content_type: &'s str,
    content_len: i64,
    range: Option<(i64, i64)>,
}

impl Generator<'_> {
    fn time(&self, n: u64) -> i64 {
        self.base + (n as i128 * SPAN as i128 / self.lines as i128) as i64
    }

    /// The `k`th line for an issued link is a copy of line `source(k)`'s request.
    fn source(k: u64) -> u64 {
        if k % 997 == 500 {
            Self::source(k - 1)
        } else if k % 991 == 700 && k >= 600 {
            Self::source(k - 600)
        } else {
            k
        }
    }

    /// Writes line `n` to `out` and counts it.
    fn line(&self, n: u64, out: &mut Vec<u8>, tally: &mut Tally) {
        let start = out.len();
        tally.lines += 1;
        if n % 100 == 37 {
            let k = n / 100;
            let s = Self::source(k);
            tally.issued += 1;
            if s != k {
                tally.repeated += 1;
                self.issued(s, out, None);
            } else {
                self.issued(s, out, Some(tally));
            }
        } else if n % 500 == 211 {
            tally.other_link += 1;
            self.other_link(n, out);
        } else {
            tally.no_link += 1;
            self.no_link(n, out);
        }
        out.push(b'\n');
        tally.bytes += (out.len() - start) as u64;
    }

    /// The request of the `s`th line for an issued link (also written again as a copy).
    fn issued(&self, s: u64, out: &mut Vec<u8>, tally: Option<&mut Tally>) {
        let n = s * 100 + 37;
        let at = self.time(n);
        let i = (h(2, s) % LINKS as u64) as usize;
        let size = 150_000 + (h(3, i as u64) % 4_000_000) as i64;
        let r = h(4, s);
        let mut line = Line {
            edge: EDGES[(r >> 8) as usize % EDGES.len()],
            bytes_sent: size + 412,
            method: "GET",
            stem: format!("/decisions/2026/C-{}/letter-{i}.pdf", i / 10),
            status: 200,
            referer: "-",
            agent: AGENTS[(r >> 16) as usize % AGENTS.len()],
            result: if r >> 24 & 1 == 0 { "Hit" } else { "Miss" },
            detailed: "",
            content_type: "application/pdf",
            content_len: size,
            range: None,
        };
        match r % 100 {
            0..55 => {}
            55..80 => {
                // A viewer's PDF reader fetching a range of 1 MiB.
                let from = ((r >> 32) as i64 % (size / 1_048_576 + 1)) * 1_048_576;
                let to = (from + 1_048_575).min(size - 1);
                line.status = 206;
                line.range = Some((from, to));
                line.content_len = to - from + 1;
                line.bytes_sent = line.content_len + 398;
            }
            80..85 => {
                line.status = 304;
                line.bytes_sent = 310;
                line.content_type = "-";
                line.content_len = 0;
            }
            85..95 => {
                // Refused by the signature check (expired, or a tampered link).
                line.status = 403;
                line.bytes_sent = 564;
                line.result = "Error";
                line.content_type = "text/xml";
                line.content_len = 146;
            }
            _ => {
                // Refused by the revocation function.
                line.status = 403;
                line.bytes_sent = 214;
                line.result = "FunctionGeneratedResponse";
                line.content_type = "text/plain";
                line.content_len = 17;
            }
        }
        line.detailed = line.result;
        let request_id = h(5, s);
        let query = self.signed_query(&self.links.ids[i], at, h(6, s));
        self.write(out, at, &line, client_ip(r), &query, request_id);
        if let Some(tally) = tally {
            if matches!(line.status, 200 | 206 | 304) {
                tally.opened += 1;
            } else {
                tally.refused += 1;
            }
            if self.links.revoked(i) && at >= self.links.revoked_at.timestamp() {
                tally.after_revoke += 1;
            }
            tally.bytes_sent += line.bytes_sent;
            tally.ranges += line.range.is_some() as u64;
        }
    }

    /// A request with a link id doclink never issued (guessed, or another system's).
    fn other_link(&self, n: u64, out: &mut Vec<u8>) {
        let at = self.time(n);
        let r = h(7, n);
        let line = Line {
            edge: EDGES[(r >> 8) as usize % EDGES.len()],
            bytes_sent: 564,
            method: "GET",
            stem: format!("/decisions/2026/C-{}/letter.pdf", r % 9_999),
            status: 403,
            referer: "-",
            agent: AGENTS[(r >> 16) as usize % AGENTS.len()],
            result: "Error",
            detailed: "Error",
            content_type: "text/xml",
            content_len: 146,
            range: None,
        };
        let query = self.signed_query(&uuid_from(h(8, n)), at, h(9, n));
        self.write(out, at, &line, client_ip(r), &query, h(10, n));
    }

    /// Every other request the distribution serves.
    fn no_link(&self, n: u64, out: &mut Vec<u8>) {
        let at = self.time(n);
        let r = h(11, n);
        let mut line = Line {
            edge: EDGES[(r >> 8) as usize % EDGES.len()],
            bytes_sent: 0,
            method: if r >> 20 & 31 == 0 { "HEAD" } else { "GET" },
            stem: String::new(),
            status: 200,
            referer: "https://letters.example.net/",
            agent: AGENTS[(r >> 16) as usize % AGENTS.len()],
            result: if r >> 24 & 3 == 0 { "Miss" } else { "Hit" },
            detailed: "",
            content_type: "text/html",
            content_len: 0,
            range: None,
        };
        let query: String;
        match r % 1000 {
            0..500 => {
                let (ext, kind) = [
                    ("js", "application/javascript"),
                    ("css", "text/css"),
                    ("woff2", "font/woff2"),
                    ("png", "image/png"),
                ][(r >> 32) as usize % 4];
                line.stem = format!("/assets/app-{:08x}.{ext}", (r >> 36) as u32 % 4096);
                line.content_type = kind;
                line.content_len = 2_000 + (r >> 40) as i64 % 200_000;
                query = "-".into();
            }
            500..700 => {
                line.stem = "/index.html".into();
                line.referer = "-";
                line.content_len = 18_342;
                query = "utm_source=letter&utm_medium=email&utm_campaign=decisions-2026-12".into();
            }
            700..800 => {
                line.stem = "/search".into();
                line.content_len = 9_120;
                // The viewer's own %-encoding, escaped again by the log.
                query = format!(
                    "q=d%25C3%25A9cision%2Bfinale%2B{}&page={}",
                    r % 97,
                    r % 5 + 1
                );
            }
            800..850 => {
                // "lid=" inside other parameters.
                line.stem = "/help/slides.html".into();
                line.content_len = 4_210;
                query = format!("slide={}&valid=true&solid=1", r % 40);
            }
            850..860 => {
                // A parameter named like lid, with a link id: not a doclink link.
                line.stem = "/decisions/2026/preview.pdf".into();
                line.content_type = "application/pdf";
                line.content_len = 88_000;
                query = format!("xlid={}&lids={}", uuid_from(h(12, n)), uuid_from(h(13, n)));
            }
            860..870 => {
                // lid without a link id.
                line.stem = "/decisions/2026/C-1/letter.pdf".into();
                line.status = 403;
                line.result = "Error";
                line.content_type = "text/xml";
                line.content_len = 146;
                query = if r & 1 == 0 {
                    "lid=&Expires=1767225600".into()
                } else {
                    format!("lid=C-{}&Expires=1767225600", r % 1000)
                };
            }
            _ => {
                let (stem, status) = [
                    ("/favicon.ico", 200),
                    ("/robots.txt", 200),
                    ("/wp-login.php", 404),
                    ("/.env", 404),
                ][(r >> 32) as usize % 4];
                line.stem = stem.into();
                line.status = status;
                line.referer = "-";
                line.content_type = if status == 404 {
                    "text/html"
                } else {
                    "text/plain"
                };
                line.content_len = 512;
                if status == 404 {
                    line.result = "Error";
                }
                query = "-".into();
            }
        }
        if r >> 44 & 7 == 0 && line.status == 200 {
            line.status = 304;
            line.content_len = 0;
            line.content_type = "-";
        }
        line.bytes_sent = line.content_len + 380 + (r >> 48) as i64 % 40;
        line.detailed = line.result;
        self.write(out, at, &line, client_ip(r), &query, h(14, n));
    }

    /// A doclink link's query as the log holds it: the signature's `~` escaped.
    fn signed_query(&self, lid: &Uuid, at: i64, seed: u64) -> String {
        let mut signature = String::with_capacity(380);
        for j in 0..58 {
            let bits = h(seed, j);
            for c in 0..6 {
                let v = (bits >> (c * 6)) as usize & 63;
                if v == 63 && bits >> 60 & 1 == 0 {
                    signature.push_str("%7E");
                } else {
                    signature.push(ALPHABET[v] as char);
                }
            }
        }
        signature.truncate(344);
        format!(
            "lid={lid}&Expires={}&Signature={signature}&Key-Pair-Id=K2JCJMDEHXQW5F",
            at + 7 * 86_400
        )
    }

    fn write(
        &self,
        out: &mut Vec<u8>,
        at: i64,
        l: &Line,
        ip: String,
        query: &str,
        request_seed: u64,
    ) {
        let when = Utc.timestamp_opt(at, 0).unwrap();
        let mut request_id = [0u8; 56];
        for (j, chunk) in request_id[..54].chunks_mut(6).enumerate() {
            let bits = h(request_seed, j as u64);
            for (c, b) in chunk.iter_mut().enumerate() {
                *b = ALPHABET[(bits >> (c * 6)) as usize & 63];
            }
        }
        request_id[54..].copy_from_slice(b"==");
        let (range_start, range_end) = match l.range {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => ("-".into(), "-".into()),
        };
        let r = mix(request_seed);
        writeln_fields(
            out,
            &[
                &when.format("%Y-%m-%d").to_string(),
                &when.format("%H:%M:%S").to_string(),
                l.edge,
                &l.bytes_sent.to_string(),
                &ip,
                l.method,
                "d111111abcdef8.cloudfront.net",
                &l.stem,
                &l.status.to_string(),
                l.referer,
                l.agent,
                query,
                "-",
                l.result,
                std::str::from_utf8(&request_id).unwrap(),
                "letters.example.net",
                "https",
                &(180 + r % 300).to_string(),
                &format!("0.{:03}", r % 400 + 1),
                "-",
                "TLSv1.3",
                "TLS_AES_128_GCM_SHA256",
                l.result,
                "HTTP/2.0",
                "-",
                "-",
                &(1024 + (r >> 16) % 60_000).to_string(),
                &format!("0.{:03}", r % 390 + 1),
                l.detailed,
                l.content_type,
                &l.content_len.to_string(),
                &range_start,
                &range_end,
            ],
        );
    }
}

fn writeln_fields(out: &mut Vec<u8>, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        out.extend_from_slice(f.as_bytes());
    }
}

/// A viewer's address: mostly IPv4, one in eight IPv6.
fn client_ip(r: u64) -> String {
    let a = mix(r);
    if a & 7 == 0 {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            (a >> 8) & 0xffff,
            (a >> 24) & 0xffff,
            (a >> 40) & 0xffff
        )
    } else {
        format!(
            "{}.{}.{}.{}",
            1 + (a >> 8) % 223,
            (a >> 16) & 255,
            (a >> 24) & 255,
            1 + (a >> 32) % 254
        )
    }
}

/// Writes the file: `MEMBERS` gzip members (written side by side, one per core),
/// joined into `path`. Returns what it holds.
fn generate(path: &Path, lines: u64, base: i64, links: &Links) -> (Tally, u64) {
    let members = MEMBERS.min(lines.max(1));
    let generator = Generator { lines, base, links };
    let parts: Vec<PathBuf> = (0..members)
        .map(|m| path.with_extension(format!("part{m}")))
        .collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut tally = Tally::default();
                    loop {
                        let m = next.fetch_add(1, Ordering::Relaxed) as u64;
                        if m >= members {
                            return tally;
                        }
                        let file = std::fs::File::create(&parts[m as usize]).unwrap();
                        let mut gz = GzEncoder::new(
                            std::io::BufWriter::with_capacity(1 << 20, file),
                            Compression::default(),
                        );
                        let mut buffer = Vec::with_capacity(1 << 20);
                        buffer.extend_from_slice(b"#Version: 1.0\n");
                        buffer.extend_from_slice(FIELDS.as_bytes());
                        buffer.push(b'\n');
                        for n in m * lines / members..(m + 1) * lines / members {
                            generator.line(n, &mut buffer, &mut tally);
                            if buffer.len() > 900_000 {
                                gz.write_all(&buffer).unwrap();
                                buffer.clear();
                            }
                        }
                        gz.write_all(&buffer).unwrap();
                        gz.finish().unwrap().flush().unwrap();
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for part in &parts {
        std::io::copy(&mut std::fs::File::open(part).unwrap(), &mut out).unwrap();
        std::fs::remove_file(part).unwrap();
    }
    out.flush().unwrap();
    let mut total = Tally::default();
    for t in &tallies {
        total.add(t);
    }
    (total, members)
}

/// A field of /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets VmHWM to the current RSS (Linux 4.0 and later); false when refused.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU seconds every process on the machine has used so far (/proc/stat).
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return f64::NAN;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    busy / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// `(comm, ppid, utime + stime, cutime + cstime)` of a process, in seconds.
fn proc_stat(pid: u32) -> Option<(String, u32, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let n = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let tick = clock_ticks();
    Some((
        stat[open + 1..close].to_string(),
        fields.get(1)?.parse().ok()?,
        (n(11)? + n(12)?) / tick,
        (n(13)? + n(14)?) / tick,
    ))
}

/// The PostgreSQL server's processes, found from the bench's own backend: its CPU,
/// and the CPU of the whole server (the postmaster, its live children, and the
/// children it has reaped). `None` when the server is not on this machine.
#[derive(Clone, Copy)]
struct Server {
    backend: u32,
    postmaster: u32,
}

impl Server {
    fn find(backend: u32) -> Option<Self> {
        let (comm, postmaster, _, _) = proc_stat(backend)?;
        let (parent, _, _, _) = proc_stat(postmaster)?;
        (comm == "postgres" && parent == "postgres").then_some(Self {
            backend,
            postmaster,
        })
    }

    /// `(backend, server)` CPU seconds so far.
    fn cpu(&self) -> (f64, f64) {
        let backend = proc_stat(self.backend).map_or(f64::NAN, |s| s.2);
        let mut server = proc_stat(self.postmaster).map_or(f64::NAN, |s| s.2 + s.3);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            if let Some((_, ppid, cpu, _)) = proc_stat(pid)
                && ppid == self.postmaster
            {
                server += cpu;
            }
        }
        (backend, server)
    }
}

/// The file as tokio reads it, with this process's RSS taken each `step` bytes.
struct Sampled<'a, R> {
    inner: R,
    read: u64,
    next: u64,
    step: u64,
    samples: &'a mut Vec<(u64, f64)>,
}

impl Pass {
    /// The most RSS seen during the read: VmHWM, or the RSS at its start or a
    /// sample above it (the kernel updates VmHWM lazily).
    fn peak(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.1)
            .fold(self.rss_peak.max(self.rss_before), f64::max)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Sampled<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for Sampled<'_, R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.inner).consume(amt);
        self.read += amt as u64;
        if self.read >= self.next {
            let at = self.read;
            self.next += self.step;
            self.samples.push((at, status_mib("VmRSS:")));
        }
    }
}

struct Pass {
    counts: FileCounts,
    wall: f64,
    cpu: f64,
    db: Option<(f64, f64)>,
    /// CPU seconds the machine's other processes used meanwhile.
    others: f64,
    rss_before: f64,
    rss_peak: f64,
    peak_reset: bool,
    samples: Vec<(u64, f64)>,
}

async fn pass(path: &Path, audit: &AuditLog, server: Option<Server>) -> Pass {
    let size = std::fs::metadata(path).unwrap().len();
    let mut samples = Vec::with_capacity(SAMPLES as usize + 2);
    let peak_reset = reset_peak();
    let rss_before = status_mib("VmRSS:");
    let shutdown = CancellationToken::new();
    let db_before = server.map(|s| s.cpu());
    let machine = machine_busy();
    let (cpu, started) = (common::cpu_seconds(), Instant::now());
    let file = tokio::fs::File::open(path).await.unwrap();
    let body = Sampled {
        inner: tokio::io::BufReader::with_capacity(READ_BUFFER, file),
        read: 0,
        next: size / SAMPLES,
        step: (size / SAMPLES).max(1),
        samples: &mut samples,
    };
    let counts = ingest(
        body,
        "s3://bench-logs/E2BENCH.2026-12-06-14.a1b2c3d4.gz",
        ClientIp::Truncated,
        audit,
        &shutdown,
    )
    .await
    .expect("the bench's file is read to its end");
    let wall = started.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds() - cpu;
    let db = server.zip(db_before).map(|(s, (b0, s0))| {
        let (b1, s1) = s.cpu();
        (b1 - b0, s1 - s0)
    });
    let others = machine_busy() - machine - cpu - db.map_or(0.0, |d| d.1);
    Pass {
        counts,
        wall,
        cpu,
        db,
        others,
        rss_before,
        rss_peak: status_mib("VmHWM:"),
        peak_reset,
        samples,
    }
}

fn main() {
    let admin_url =
        std::env::var("DATABASE_URL").expect("DATABASE_URL: run through `make bench-access`");
    let lines: u64 = std::env::var("BENCH_ACCESS_LINES")
        .ok()
        .map(|v| {
            v.replace('_', "")
                .parse()
                .expect("BENCH_ACCESS_LINES is a number of lines")
        })
        .unwrap_or(DEFAULT_LINES);
    // The daemon's runtime by default (DOCLINK_THREADS=1): one thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let admin = PgPool::connect(&admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
            .execute(&admin)
            .await
            .unwrap();
        let options = admin.connect_options().as_ref().clone().database(DATABASE);
        let owner = doclink::audit::connect_with(options.clone(), 2).await.unwrap();
        let current: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&owner)
            .await
            .unwrap();
        assert_eq!(current, DATABASE, "the bench must not touch another database");
        doclink::audit::migrate(&owner, doclink::audit::DEFAULT_ROLE_PREFIX)
            .await
            .unwrap();
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&owner)
            .await
            .unwrap();

        // The period the log covers ends a day ago; links were issued before it.
        let now = Utc::now().timestamp();
        let base = now - 2 * 86_400 - now % 3_600;
        let links = Links::new(Utc.timestamp_opt(base + SPAN / 2, 0).unwrap());
        seed_links(&owner, &links, base).await;
        // The ingest runs as the daemon does: a login of the writer role, on one
        // connection (so its backend's CPU can be told apart).
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS {WRITER};
             CREATE ROLE {WRITER} LOGIN IN ROLE doclink_writer;
             GRANT CONNECT ON DATABASE {DATABASE} TO {WRITER};"
        )))
        .execute(&owner)
        .await
        .unwrap();
        let writer = doclink::audit::connect_with(options.username(WRITER), 1)
            .await
            .unwrap();
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&writer)
            .await
            .unwrap();
        let server = Server::find(backend as u32);
        let audit = AuditLog::new(writer.clone(), 1);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("E2BENCH.2026-12-06-14.a1b2c3d4.gz");
        let started = Instant::now();
        let (tally, members) = generate(&path, lines, base, &links);
        let gzip_bytes = std::fs::metadata(&path).unwrap().len();
        println!(
            "generated {} lines ({:.0} MB, {:.0} MB gzip, {members} members) in {:.0} s",
            tally.lines,
            tally.bytes as f64 / 1e6,
            gzip_bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(tally.lines, lines);

        let first = pass(&path, &audit, server).await;
        report("first", &first, lines);
        let again = pass(&path, &audit, server).await;
        report("again", &again, lines);

        // What was recorded must be what the file holds.
        let want_first = FileCounts {
            lines,
            no_link: tally.no_link,
            malformed: 0,
            accesses: doclink::audit::AccessesRecorded {
                recorded: tally.recorded(),
                duplicates: tally.repeated,
                other_link: tally.other_link,
                opened: tally.opened,
                refused: tally.refused,
                other: 0,
                after_revoke: tally.after_revoke,
            },
        };
        assert_eq!(first.counts, want_first, "the first read's counts");
        let want_again = FileCounts {
            accesses: doclink::audit::AccessesRecorded {
                recorded: 0,
                duplicates: tally.issued,
                other_link: tally.other_link,
                opened: 0,
                refused: 0,
                other: 0,
                after_revoke: 0,
            },
            ..want_first
        };
        assert_eq!(again.counts, want_again, "the second read's counts");
        let (rows, requests, opened, bytes_sent, ranges, after_revoke, wide): (
            i64,
            i64,
            i64,
            Option<i64>,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT a.request_id),
                    count(*) FILTER (WHERE a.status IN (200, 206, 304)),
                    sum(a.bytes_sent)::bigint, count(a.range_start),
                    count(*) FILTER (WHERE l.revoked_at IS NOT NULL AND a.accessed_at >= l.revoked_at),
                    count(*) FILTER (WHERE masklen(a.client_ip) NOT IN (24, 48))
             FROM link_access a JOIN links l USING (link_id)",
        )
        .fetch_one(&owner)
        .await
        .unwrap();
        assert_eq!(rows as u64, tally.recorded(), "rows in link_access");
        assert_eq!(requests as u64, tally.recorded(), "distinct request ids");
        assert_eq!(opened as u64, tally.opened, "rows for opened documents");
        assert_eq!(bytes_sent, Some(tally.bytes_sent), "bytes sent, summed");
        assert_eq!(ranges as u64, tally.ranges, "rows with a range");
        assert_eq!(after_revoke as u64, tally.after_revoke, "rows after revocation");
        assert_eq!(wide, 0, "client addresses are kept truncated");

        let section = section(
            &Run {
                lines,
                members,
                version,
                tally,
                gzip_bytes,
            },
            &first,
            &again,
        );
        print!("{section}");
        common::write_section("access-ingest", &section);

        drop(audit);
        writer.close().await;
        owner.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {DATABASE} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {WRITER}")))
            .execute(&admin)
            .await
            .unwrap();
    });
}

/// The issued links, every 20th revoked at `links.revoked_at`.
async fn seed_links(pool: &PgPool, links: &Links, base: i64) {
    let revoked: Vec<Option<DateTime<Utc>>> = (0..LINKS)
        .map(|i| links.revoked(i).then_some(links.revoked_at))
        .collect();
    sqlx::query(
        "INSERT INTO links (link_id, event_id, document_key, resource_url, recipient_email, template, locale,
                            key_pair_id, hash_algorithm, status, attempts, created_at, sent_at, expires_at,
                            delivery, delivery_rank, revoked_at, revoked_reason, ses_message_id)
         SELECT t.id, 'bench-event-' || t.i,
                'decisions/2026/C-' || ((t.i - 1) / 10) || '/letter-' || (t.i - 1) || '.pdf',
                'https://letters.example.net/decisions/2026/letter.pdf?lid=' || t.id,
                'customer' || t.i || '@example.org', 'decision_letter', 'en',
                'K2JCJMDEHXQW5F', 'SHA1', 'sent', 1, $3, $3, $3 + interval '30 days',
                'delivered', 2, t.revoked_at, CASE WHEN t.revoked_at IS NOT NULL THEN 'bench' END,
                'ses-bench-' || t.i
         FROM unnest($1::uuid[], $2::timestamptz[]) WITH ORDINALITY AS t(id, revoked_at, i)",
    )
    .bind(&links.ids)
    .bind(&revoked)
    .bind(Utc.timestamp_opt(base - 3 * 86_400, 0).unwrap())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE links").execute(pool).await.unwrap();
}

fn per_core(lines: u64, p: &Pass) -> f64 {
    lines as f64 / p.cpu
}

fn report(name: &str, p: &Pass, lines: u64) {
    let a = p.counts.accesses;
    println!(
        "{name}: {lines} lines in {:.1} s wall, {:.1} s CPU: {:.0} lines/s per core; \
         RSS {:.1} MiB before, peak {:.1} MiB; recorded {}, duplicates {}, other links {}, no link {}{}",
        p.wall,
        p.cpu,
        per_core(lines, p),
        p.rss_before,
        p.peak(),
        a.recorded,
        a.duplicates,
        a.other_link,
        p.counts.no_link,
        p.db.map_or(String::new(), |(b, s)| format!(
            "; PostgreSQL CPU {b:.1} s (backend), {s:.1} s (server)"
        )),
    );
}

struct Run {
    lines: u64,
    members: u64,
    version: String,
    tally: Tally,
    gzip_bytes: u64,
}

/// How busy the rest of the machine was during the reads.
fn machine_note(reads: &[&Pass]) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let shares: Vec<f64> = reads
        .iter()
        .map(|p| (p.others / (p.wall * cores)).max(0.0))
        .collect();
    if shares.iter().any(|s| !s.is_finite()) {
        return String::new();
    }
    let shown: Vec<String> = shares
        .iter()
        .map(|s| format!("{:.0}%", 100.0 * s))
        .collect();
    format!(
        "During the two reads the machine's other processes kept {} of its {cores:.0} cores busy ({}).",
        shown.join(" and "),
        if shares.iter().any(|s| *s >= 0.10) {
            "shared: the figures are noisy"
        } else {
            "otherwise idle"
        }
    )
}

fn section(run: &Run, first: &Pass, again: &Pass) -> String {
    let t = &run.tally;
    let lines = run.lines;
    let row = |name: &str, p: &Pass| {
        let a = p.counts.accesses;
        format!(
            "| {name} | {:.1} s | {:.1} s | **{:.0}** | {:.0} | {} | {} | {} | {} |\n",
            p.wall,
            p.cpu,
            per_core(lines, p),
            lines as f64 / p.wall,
            p.db.map_or("not measured".into(), |(b, s)| format!(
                "{b:.2} s / {s:.2} s"
            )),
            a.recorded,
            a.duplicates,
            a.other_link,
        )
    };
    let rate = per_core(lines, first).min(per_core(lines, again));
    let peak = first.peak().max(again.peak());
    // Flat: nothing grows with the file. Over the first read, the most RSS reached
    // in the second half of the file against the most in its first tenth, with 2 MiB
    // for the allocator's own swings.
    let most = |from: u64, to: u64| {
        first
            .samples
            .iter()
            .skip((from * SAMPLES / 100) as usize)
            .take(((to - from) * SAMPLES / 100) as usize)
            .map(|s| s.1)
            .fold(f64::NAN, f64::max)
    };
    let (tenth, later) = (most(0, 10), most(50, 100));
    let flat = later.is_nan() || later <= tenth + 2.0;
    let over_file: Vec<String> = first
        .samples
        .iter()
        .enumerate()
        .filter(|(i, _)| [1, 4, 9, 14, 19].contains(i))
        .map(|(i, s)| format!("{}%: {:.1} MiB", (i + 1) * 100 / SAMPLES as usize, s.1))
        .collect();
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let lines_override = if lines == DEFAULT_LINES {
        String::new()
    } else {
        format!(" with BENCH_ACCESS_LINES={lines} (a trial, not the issue's 10,000,000)")
    };
    format!(
        "## Access-log ingest (`make bench`, benches/access_log_ingest.rs)\n\n\
         Run {} on {}, {}. {}\n\
         `make bench-access` (`scripts/stack.sh cargo bench --bench access_log_ingest`){lines_override}:\n\
         `doclink::runtime::access_logs::ingest`, the daemon's path for one S3 object without S3, reads a\n\
         CloudFront legacy W3C log (33 fields) from a local file through tokio ({} KiB reads), on one thread\n\
         (the daemon's default runtime, mimalloc), into PostgreSQL {} as a login of the writer role.\n\n\
         The file: {lines} request lines in {} gzip members (each with its `#Version` and `#Fields` lines),\n\
         {:.0} MB uncompressed ({:.0} bytes per line: the issue's \"about 1 GB\" reckoned 100, but CloudFront's\n\
         33 fields with a browser's user agent come to about four times that), {:.0} MB gzip (level 6). {} lines (1%) are requests for\n\
         {LINKS} issued links ({} revoked halfway through the period): full downloads, 1 MiB ranges, 304s,\n\
         refusals by the signature check and by the revocation function, {} of them the same request logged again;\n\
         {} lines (0.2%) name link ids doclink never issued; the other {} are other requests (static files,\n\
         queries without `lid`, some with `valid=`, `xlid=` or a `lid` that is no link id).\n\n\
         | read | wall | doclink CPU | lines/s per core | lines/s (wall) | PostgreSQL CPU (backend / server) | recorded | already recorded | other links |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         {}{}\n\
         *Lines/s per core*: lines over this process's CPU time (user + system, every thread: the gzip\n\
         stream, the line parsing, the batches' statements through sqlx, tokio's file reads). PostgreSQL's\n\
         CPU is not in it: it is shown apart, for the bench's one connection and for the whole server.\n\n\
         Memory (this process; VmHWM reset before each read{}): {:.1} MiB before the first read, peak\n\
         {:.1} MiB during it ({:+.1} MiB); {:.1} MiB before the second read, peak {:.1} MiB. RSS over the first\n\
         read: {}.\n\n\
         Checked, or the bench fails: each read's counts (lines, no link, malformed, recorded, already recorded,\n\
         other links, opened, refused, after revocation) against what the generator wrote, and the rows of\n\
         `link_access` (one per distinct request, opened ones, bytes sent, ranges, after revocation, addresses\n\
         kept as /24 or /48).\n\n\
         Targets (issue 21): at least 500,000 lines/s per core — {} ({rate:.0}, the slower read);\n\
         RSS flat within {TARGET_RSS_MIB:.0} MiB — {} (peak {peak:.1} MiB; at most {:.1} MiB over the first tenth of\n\
         the file and {:.1} MiB over its second half, flat meaning at most 2 MiB more).\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        common::cpu_and_cores(),
        common::commit(),
        machine_note(&[first, again]),
        READ_BUFFER / 1024,
        run.version.split_whitespace().next().unwrap_or(""),
        run.members,
        t.bytes as f64 / 1e6,
        t.bytes as f64 / lines as f64,
        run.gzip_bytes as f64 / 1e6,
        t.issued,
        LINKS / REVOKED_EVERY,
        t.repeated,
        t.other_link,
        t.no_link,
        row("first", first),
        row("again (the same file)", again),
        if first.peak_reset && again.peak_reset {
            ""
        } else {
            "; the reset was refused, so the peak is the process's own"
        },
        first.rss_before,
        first.peak(),
        first.peak() - first.rss_before,
        again.rss_before,
        again.peak(),
        over_file.join(", "),
        met(rate >= TARGET_LINES_PER_CORE),
        met(peak <= TARGET_RSS_MIB && flat),
        tenth,
        later,
    )
}
