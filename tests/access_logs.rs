//! CloudFront's access logs into the audit log (issue 21), against moto's S3 (whose
//! bucket notifications reach an SQS queue as S3's do) and real PostgreSQL: log
//! files in CloudFront's W3C format, built from links the pipeline really issued and
//! mailed, are uploaded to a bucket; `doclink run` reads what S3 announces. Counts
//! are taken from the files as written and from the database and the queues, never
//! from doclink's own summary.

mod support;

use async_compression::tokio::write::GzipEncoder;
use chrono::{DateTime, Duration as Span, Utc};
use doclink::signing::KeyKind;
use sqlx::Row;
use std::collections::BTreeSet;
use std::time::Duration;
use support::ses_standin::{Behaviour, Recorded, SesStandIn};
use support::{TestStack, stderr, stdout};
use tokio::io::AsyncWriteExt;

/// The legacy standard log's fields, as CloudFront writes them.
pub const FIELDS: &str = "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

/// One request, as the edge would log it.
#[derive(Clone)]
struct Request {
    at: DateTime<Utc>,
    request_id: String,
    stem: String,
    /// The query as the viewer sent it; logged with CloudFront's escaping.
    query: String,
    status: u16,
    result: &'static str,
    detailed: &'static str,
    bytes: u64,
    range: Option<(u64, u64)>,
    ip: &'static str,
    method: &'static str,
}

/// CloudFront's log escaping: `%` and bytes outside the printable set as `%XX`.
fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'%' | b' ' | b'\t' | b'\\' | b'"' => format!("%{b:02X}"),
            0x21..=0x7e => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Request {
    fn line(&self) -> String {
        let query = if self.query.is_empty() {
            "-".to_string()
        } else {
            escape(&self.query)
        };
        let (start, end) = match self.range {
            Some((s, e)) => (s.to_string(), e.to_string()),
            None => ("-".into(), "-".into()),
        };
        [
            self.at.format("%Y-%m-%d").to_string(),
            self.at.format("%H:%M:%S").to_string(),
            "FRA56-P7".into(),
            self.bytes.to_string(),
            self.ip.into(),
            self.method.into(),
            "d111111abcdef8.cloudfront.net".into(),
            self.stem.clone(),
            self.status.to_string(),
            "-".into(),
            "Mozilla/5.0%20(X11;%20Linux%20x86_64)%20Firefox/133.0".into(),
            query,
            "-".into(),
            self.result.into(),
            self.request_id.clone(),
            "letters.example.net".into(),
            "https".into(),
            "412".into(),
            "0.012".into(),
            "-".into(),
            "TLSv1.3".into(),
            "TLS_AES_128_GCM_SHA256".into(),
            self.result.into(),
            "HTTP/2.0".into(),
            "-".into(),
            "-".into(),
            "51234".into(),
            "0.011".into(),
            self.detailed.into(),
            "application/pdf".into(),
            "48000".into(),
            start,
            end,
        ]
        .join("\t")
    }
}

/// A file's text: the headers, then the lines.
fn file(lines: &[String]) -> String {
    let mut text = format!("#Version: 1.0\n{FIELDS}\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

async fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = GzipEncoder::new(Vec::new());
    encoder.write_all(text.as_bytes()).await.unwrap();
    encoder.shutdown().await.unwrap();
    encoder.into_inner()
}

/// The path and query of a signed link.
fn stem_and_query(url: &str) -> (String, String) {
    let rest = url.strip_prefix(support::BASE_URL).unwrap();
    let (path, query) = rest.split_once('?').unwrap();
    (path.to_string(), query.to_string())
}

fn signature_of(url: &str) -> String {
    let (_, query) = stem_and_query(url);
    query
        .split('&')
        .find_map(|p| p.strip_prefix("Signature="))
        .unwrap()
        .to_string()
}

/// A log bucket whose "object created" notifications go to a new queue.
struct LogBucket {
    s3: aws_sdk_s3::Client,
    bucket: String,
    queue_url: String,
}

impl LogBucket {
    async fn new(stack: &TestStack) -> Self {
        let aws = aws_config::load_from_env().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&aws)
                .force_path_style(true)
                .build(),
        );
        let unique = &stack.name[stack.name.len() - 12..];
        let bucket = format!("access-logs-{unique}");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let queue_url = stack.create_queue("access").await;
        let arn = stack
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        Self {
            s3,
            bucket,
            queue_url,
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    fn object(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// A stack with `n` links issued and mailed through the real pipeline; the mails.
async fn with_mailed_links(name: &str, n: usize) -> (TestStack, Vec<Recorded>) {
    let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            stack
                .event(i, &format!("decisions/2026/C-{i}/Décision.pdf"))
                .to_string()
        })
        .collect();
    stack.enqueue(&bodies).await;
    let ses = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let mut mails = ses.accepted();
    mails.sort_by_key(|m| m.to.clone());
    assert_eq!(mails.len(), n);
    (stack, mails)
}

async fn pairs(stack: &TestStack) -> BTreeSet<(String, String)> {
    sqlx::query("SELECT request_id, link_id::text AS link FROM link_access")
        .fetch_all(&stack.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("request_id"), r.get("link")))
        .collect()
}

#[tokio::test]
async fn the_edge_logs_of_issued_links_are_recorded_once_each_and_bad_files_set_aside() {
    let (stack, mails) = with_mailed_links("access-logs", 3).await;
    let links: Vec<String> = mails.iter().map(|m| m.link_id.clone()).collect();
    let urls: Vec<String> = mails.iter().map(Recorded::link).collect();
    // Link 2 is revoked; a request for it afterwards is refused by the edge function.
    let out = stack
        .doclink(
            &["links", "revoke", &links[2], "--reason", "withdrawn"],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let logs = LogBucket::new(&stack).await;

    let later = Utc::now() + Span::minutes(2);
    let request = |n: &str, link: usize, status: u16, range: Option<(u64, u64)>| {
        let (stem, query) = stem_and_query(&urls[link]);
        Request {
            // A1 one second after `later`, B3 thirteen: each request its own time.
            at: later
                + Span::seconds(
                    (n.as_bytes()[0] - b'A') as i64 * 10 + n[1..].parse::<i64>().unwrap(),
                ),
            request_id: format!("{n}-{}==", stack.name.replace('-', "")),
            stem,
            query,
            status,
            result: if status == 403 { "Error" } else { "Miss" },
            detailed: if status == 403 {
                "FunctionGeneratedResponse"
            } else {
                "Miss"
            },
            bytes: range.map_or(48_412, |(s, e)| e - s + 1 + 400),
            range,
            ip: "203.0.113.77",
            method: "GET",
        }
    };
    let opened = request("A1", 0, 200, None);
    let first_half = request("A4", 0, 206, Some((0, 23_999)));
    let second_half = request("A5", 0, 206, Some((24_000, 47_999)));
    let other = request("B1", 1, 200, None);
    let after_revoke = request("B2", 2, 403, None);
    // A 10 KB query naming link 1 among junk: read, its lid found, its query dropped.
    let mut long = request("B3", 1, 200, None);
    long.query = format!("junk={}&{}", "%zz".repeat(3_400), long.query);
    // Requests doclink must leave out: no lid, and a lid doclink never issued.
    let mut favicon = request("A2", 0, 404, None);
    favicon.stem = "/favicon.ico".into();
    favicon.query = String::new();
    // A HEAD for link 1 (a mail gateway's check): recorded, never "opened".
    let mut head = request("B4", 1, 200, None);
    head.method = "HEAD";
    let mut unknown = request("A3", 0, 403, None);
    unknown.query = unknown
        .query
        .replace(&links[0], &uuid::Uuid::new_v4().to_string());

    // File A in two gzip members (each with its headers, as parts of a file are).
    let mut a = gzip(&file(&[opened.line(), favicon.line(), unknown.line()])).await;
    a.extend(gzip(&file(&[first_half.line(), second_half.line()])).await);
    // File B: the same hour, another file; hostile lines among the good ones.
    let hostile = [
        format!("{}\textra", other.line()),             // a field too many
        other.line().replacen('\t', "", 3),             // fields run together
        other.line().replace("FRA56-P7", "FRA\u{7}56"), // a control byte
        "2026-12-06\t14:03:59\tonly three".to_string(), // a short line
    ];
    let mut b_lines = vec![other.line(), after_revoke.line(), long.line(), head.line()];
    b_lines.extend(hostile.iter().cloned());
    let b = gzip(&file(&b_lines)).await;
    // A file whose #Fields line lacks the request id; a file that is not gzip.
    let headerless = gzip(&format!(
        "#Version: 1.0\n{}\n{}\n",
        FIELDS.replace(" x-edge-request-id", ""),
        opened.line()
    ))
    .await;
    let not_gzip = file(&[opened.line()]).into_bytes();

    logs.put("logs/E1.2026-12-06-14.a.gz", a.clone()).await;
    logs.put("logs/E1.2026-12-06-14.b.gz", b).await;
    // The same file again (S3 notifies at least once; CloudFront may deliver twice).
    logs.put("logs/E1.2026-12-06-14.a-again.gz", a).await;
    logs.put("logs/E1.2026-12-06-14.c.gz", headerless).await;
    logs.put("logs/E1.2026-12-06-14.d.gz", not_gzip).await;

    let child = stack.spawn(
        &["run"],
        &[("DOCLINK_ACCESS_LOG_QUEUE_URL", &logs.queue_url)],
    );
    stack
        .wait_for_count(
            "SELECT count(*)::bigint FROM rejections WHERE field = 'object'",
            2,
        )
        .await;
    stack
        .wait_for_count("SELECT count(*)::bigint FROM link_access", 7)
        .await;
    stack.wait_for_empty_queue(&logs.queue_url).await;
    support::terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);

    // Exactly the requests for issued links, once each, though file A came twice.
    let expected: BTreeSet<(String, String)> = [
        (&opened, 0),
        (&first_half, 0),
        (&second_half, 0),
        (&other, 1),
        (&long, 1),
        (&head, 1),
        (&after_revoke, 2),
    ]
    .iter()
    .map(|(r, link)| (r.request_id.clone(), links[*link].clone()))
    .collect();
    assert_eq!(pairs(&stack).await, expected);
    assert_eq!(stack.queue_counts(&logs.queue_url).await, (0, 0));

    // The facts of a line, as logged; the address cut to its /24.
    let row = sqlx::query(
        "SELECT status, range_start, range_end, bytes_sent, host(client_ip) AS ip, masklen(client_ip) AS bits,
                edge_location, result_type, detailed_result_type, user_agent, log_object, log_line, accessed_at
         FROM link_access WHERE request_id = $1",
    )
    .bind(&first_half.request_id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<i16, _>("status"), 206);
    assert_eq!(row.get::<Option<i64>, _>("range_start"), Some(0));
    assert_eq!(row.get::<Option<i64>, _>("range_end"), Some(23_999));
    assert_eq!(row.get::<Option<i64>, _>("bytes_sent"), Some(24_400));
    assert_eq!(row.get::<String, _>("ip"), "203.0.113.0");
    assert_eq!(row.get::<i32, _>("bits"), 24);
    assert_eq!(
        row.get::<Option<String>, _>("edge_location").as_deref(),
        Some("FRA56-P7")
    );
    assert_eq!(
        row.get::<Option<String>, _>("user_agent").as_deref(),
        Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")
    );
    // Lines 1-5 are the first member's; the second's #Version and #Fields are 6 and 7.
    assert_eq!(row.get::<i64, _>("log_line"), 8);
    let object: String = row.get("log_object");
    assert!(
        object == logs.object("logs/E1.2026-12-06-14.a.gz")
            || object == logs.object("logs/E1.2026-12-06-14.a-again.gz"),
        "{object}"
    );
    assert_eq!(
        row.get::<DateTime<Utc>, _>("accessed_at").timestamp(),
        first_half.at.timestamp()
    );
    let refused = sqlx::query(
        "SELECT a.status, a.detailed_result_type, a.accessed_at >= l.revoked_at AS after
         FROM link_access a JOIN links l USING (link_id) WHERE a.request_id = $1",
    )
    .bind(&after_revoke.request_id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(refused.get::<i16, _>("status"), 403);
    assert_eq!(
        refused
            .get::<Option<String>, _>("detailed_result_type")
            .as_deref(),
        Some("FunctionGeneratedResponse")
    );
    assert!(refused.get::<bool, _>("after"));

    // The two unusable files are set aside whole, retryable, each with why.
    let rejected = sqlx::query(
        "SELECT reason, queue_url, body FROM rejections WHERE field = 'object' ORDER BY reason",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let reasons: Vec<String> = rejected.iter().map(|r| r.get("reason")).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("E1.2026-12-06-14.c.gz") && r.contains("lacks x-edge-request-id")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("E1.2026-12-06-14.d.gz") && r.contains("not gzip")),
        "{reasons:?}"
    );
    for r in &rejected {
        assert_eq!(r.get::<String, _>("queue_url"), logs.queue_url);
        assert!(r.get::<String, _>("body").contains("ObjectCreated"));
    }
    // The malformed lines were named by file and line, never quoted.
    for line in 7..=10 {
        assert!(
            log.lines()
                .any(|l| l.contains("malformed access-log line skipped")
                    && l.contains("E1.2026-12-06-14.b.gz")
                    && l.contains(&format!("\"line\":{line}"))),
            "line {line} of file B not reported:\n{log}"
        );
    }

    // No signature from a log line anywhere: database, journal, rejections, log.
    for url in &urls {
        let signature = signature_of(url);
        let found: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM link_access a WHERE position($1 IN a::text) > 0)
                  + (SELECT count(*) FROM rejections r WHERE position($1 IN r::text) > 0)
                  + (SELECT count(*) FROM audit_journal j WHERE position($1 IN j::text) > 0)",
        )
        .bind(&signature)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        assert_eq!(found, 0, "a signature reached the database");
        assert!(!log.contains(&signature), "a signature reached the log");
        assert!(!log.contains("Key-Pair-Id"), "a query reached the log");
    }

    // Every access is in the journal, and the journal holds.
    let verify = stack.doclink(&["audit", "verify"], &[]).await;
    assert!(verify.status.success(), "{}", stdout(&verify));
    let journalled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_journal WHERE table_name = 'link_access' AND event = 'access'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(journalled, 7);

    // The story: link 0 opened three times, whole and in parts; link 2 refused
    // after its revocation.
    let show = stack.doclink(&["links", "show", &links[0]], &[]).await;
    assert!(show.status.success(), "{}", stderr(&show));
    let story = stdout(&show);
    let at = |r: &Request| r.at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert!(
        story.contains(&format!(
            "opened      3 requests answered with the document, first {}, last {}\n",
            at(&opened),
            at(&second_half)
        )),
        "{story}"
    );
    assert!(
        story.contains("downloaded  whole (200, 48412 bytes sent for a body of 48000)"),
        "{story}"
    );
    assert!(
        story.contains("opened (206, bytes 0-23999) at the edge FRA56-P7, 203.0.113.0/24"),
        "{story}"
    );
    assert!(!story.contains("refused"), "{story}");
    let story = stdout(&stack.doclink(&["links", "show", &links[1]], &[]).await);
    assert!(
        story.contains("opened      2 requests answered with the document, first ")
            && story.contains("; 1 other request neither")
            && story.contains("asked about with HEAD (200 Miss)"),
        "{story}"
    );
    let show = stack.doclink(&["links", "show", &links[2]], &[]).await;
    let story = stdout(&show);
    assert!(
        story.contains("opened      not in the access logs read so far; 1 request refused"),
        "{story}"
    );
    assert!(
        story.contains("refused (403 FunctionGeneratedResponse) at the edge FRA56-P7, 203.0.113.0/24, after its revocation"),
        "{story}"
    );
    // A revoked link's history: the revocation comes before the refused request.
    let revoked_at = story.find("revoked by").unwrap();
    assert!(revoked_at < story.find("refused (403").unwrap(), "{story}");

    let listed = |args: &'static [&'static str]| {
        let stack = &stack;
        async move {
            let mut all = vec!["links", "list", "--format", "json"];
            all.extend_from_slice(args);
            let out = stack.doclink(&all, &[]).await;
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
            rows.iter()
                .map(|r| r["link_id"].as_str().unwrap().to_string())
                .collect::<BTreeSet<String>>()
        }
    };
    let set = |ids: &[usize]| {
        ids.iter()
            .map(|i| links[*i].clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(listed(&["--opened"]).await, set(&[0, 1]));
    assert_eq!(listed(&["--not-opened"]).await, set(&[2]));
    assert_eq!(listed(&["--tried-after-revoke"]).await, set(&[2]));
    // Sent seconds ago and opened two minutes "later": none opened within a second
    // of its send; and none was sent ten minutes ago.
    stack
        .wait_for_count(
            "SELECT count(*)::bigint FROM links WHERE sent_at <= now() - interval '1 second'",
            3,
        )
        .await;
    assert_eq!(
        listed(&["--not-opened-within", "1s"]).await,
        set(&[0, 1, 2])
    );
    assert_eq!(listed(&["--not-opened-within", "10m"]).await, set(&[]));

    // The case file: the history with its accesses, the journal entries of each of
    // its rows, and no bearer token.
    let evidence = stack.doclink(&["links", "evidence", &links[0]], &[]).await;
    assert!(evidence.status.success(), "{}", stderr(&evidence));
    let text = stdout(&evidence);
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["link"]["accesses"].as_array().unwrap().len(), 3);
    let journal = record["journal"].as_array().unwrap();
    let count = |table: &str, event: &str| {
        journal
            .iter()
            .filter(|e| e["table_name"] == table && e["event"] == event)
            .count()
    };
    assert_eq!(count("link_access", "access"), 3);
    assert_eq!(count("links", "issued"), 1);
    assert!(count("link_attempts", "attempt") >= 1);
    assert!(
        !text.contains(&signature_of(&urls[0])),
        "a signature in the evidence"
    );
    assert!(
        !text.contains("Signature="),
        "a signed query in the evidence"
    );

    // Retention takes a link's accesses with it (made purgeable by hand: expired).
    sqlx::query("UPDATE links SET expires_at = now() - interval '1 day' WHERE link_id = $1::uuid")
        .bind(&links[0])
        .execute(&stack.pool)
        .await
        .unwrap();
    let purged = sqlx::query("SELECT * FROM audit_purge_links(now(), ARRAY[$1::uuid])")
        .bind(&links[0])
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(purged.get::<i64, _>("purged_links"), 1);
    assert_eq!(purged.get::<i64, _>("purged_accesses"), 3);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM link_access")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(left, 4);
    // Outside a retention run, an access is never deleted or changed.
    let deleted = sqlx::query("DELETE FROM link_access WHERE link_id = $1::uuid")
        .bind(&links[1])
        .execute(&stack.pool)
        .await;
    assert!(deleted.is_err(), "an access was deleted outside retention");
    let changed = sqlx::query("UPDATE link_access SET status = 200 WHERE link_id = $1::uuid")
        .bind(&links[2])
        .execute(&stack.pool)
        .await;
    assert!(changed.is_err(), "an access was changed");
}

/// A large file for links 0-2: `lines` requests, every 100th for a link, each with
/// its own request id; returns the gzip and how many requests name a link.
async fn large_file(stack: &TestStack, urls: &[String], lines: usize) -> (Vec<u8>, i64) {
    let at = Utc::now() + Span::minutes(1);
    let mut text = format!("#Version: 1.0\n{FIELDS}\n");
    let mut for_links = 0;
    for i in 0..lines {
        let mut r = Request {
            at,
            request_id: format!("L{i}-{}", &stack.name[stack.name.len() - 12..]),
            stem: "/images/logo.png".into(),
            query: String::new(),
            status: 200,
            result: "Hit",
            detailed: "Hit",
            bytes: 2_000,
            range: None,
            ip: "198.51.100.7",
            method: "GET",
        };
        if i % 100 == 0 {
            let (stem, query) = stem_and_query(&urls[(i / 100) % urls.len()]);
            r.stem = stem;
            r.query = query;
            for_links += 1;
        }
        text.push_str(&r.line());
        text.push('\n');
    }
    (gzip(&text).await, for_links)
}

#[tokio::test]
async fn a_file_cut_off_by_shutdown_is_read_again_whole_after_the_restart() {
    let (stack, mails) = with_mailed_links("access-shutdown", 3).await;
    let urls: Vec<String> = mails.iter().map(Recorded::link).collect();
    let logs = LogBucket::new(&stack).await;
    let (file, for_links) = large_file(&stack, &urls, 400_000).await;
    logs.put("logs/E1.2026-12-06-15.big.gz", file).await;

    assert_eq!(for_links, 4_000);
    // The 1,001st access (line 100,002's request, for link 1) is held by an insert
    // not yet committed: doclink records the first batch of 1,000, then its second
    // batch waits on this row, and the shutdown comes there, mid-file, every time.
    let suffix = &stack.name[stack.name.len() - 12..];
    let mut holder = stack.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO link_access (request_id, link_id, accessed_at, status, log_object, log_line)
         VALUES ($1, $2::uuid, now(), 200, 'held by the test', 0)",
    )
    .bind(format!("L100000-{suffix}"))
    .bind(&mails[1].link_id)
    .execute(&mut *holder)
    .await
    .unwrap();

    let env = [("DOCLINK_ACCESS_LOG_QUEUE_URL", logs.queue_url.as_str())];
    let child = stack.spawn(&["run"], &env);
    stack
        .wait_for_count("SELECT count(*)::bigint FROM link_access", 1_000)
        .await;
    stack
        .wait_for_at_least(
            "SELECT count(*)::bigint FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            1,
        )
        .await;
    support::terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    holder.rollback().await.unwrap();
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM link_access")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(
        recorded, 1_000,
        "the first batch, and nothing of the cut-off rest"
    );
    // The notification is back on the queue at once, not hidden for its visibility.
    assert_eq!(stack.queue_counts(&logs.queue_url).await, (1, 0));

    let child = stack.spawn(&["run"], &env);
    stack
        .wait_for_count("SELECT count(*)::bigint FROM link_access", 4_000)
        .await;
    stack.wait_for_empty_queue(&logs.queue_url).await;
    support::terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Every request of the file, each once (the first 1,000 were read twice).
    let ids: BTreeSet<String> = sqlx::query_scalar("SELECT request_id FROM link_access")
        .fetch_all(&stack.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = (0..400_000)
        .step_by(100)
        .map(|i| format!("L{i}-{suffix}"))
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn access_denied_by_s3_keeps_the_notification_and_sets_nothing_aside() {
    let (stack, mails) = with_mailed_links("access-denied", 1).await;
    let urls: Vec<String> = mails.iter().map(Recorded::link).collect();
    let logs = LogBucket::new(&stack).await;
    let (file, for_links) = large_file(&stack, &urls, 1_000).await;
    logs.put("logs/E1.2026-12-06-16.a.gz", file).await;

    // S3 refuses the worker: a permission fault, not a verdict on the file.
    let refusing = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(403).set_body_string(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>R1</RequestId></Error>",
        ))
        .mount(&refusing)
        .await;
    let child = stack.spawn(
        &["run"],
        &[
            ("DOCLINK_ACCESS_LOG_QUEUE_URL", logs.queue_url.as_str()),
            ("AWS_ENDPOINT_URL_S3", &refusing.uri()),
        ],
    );
    // Asked, refused, and asked again after the notification came back.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while refusing
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::GET)
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "S3 was asked once only"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let (visible, hidden) = stack.queue_counts(&logs.queue_url).await;
    assert_eq!(visible + hidden, 1, "the notification stays on the queue");
    let set_aside: i64 = sqlx::query_scalar("SELECT count(*) FROM rejections")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(set_aside, 0, "a permission fault is not the file's");

    // With S3 back, the same notification is read.
    let child = stack.spawn(
        &["run"],
        &[("DOCLINK_ACCESS_LOG_QUEUE_URL", logs.queue_url.as_str())],
    );
    stack
        .wait_for_count("SELECT count(*)::bigint FROM link_access", 10)
        .await;
    stack.wait_for_empty_queue(&logs.queue_url).await;
    support::terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(for_links, 10);
}
