//! What became of the events a test fed in, counted where doclink cannot fake it:
//! the emails an SES stand-in or moto received, the bodies left on the queue and the
//! dead-letter queue, and the rejections table. doclink's own summary is never read.
//!
//! An event is *lost* when its recipient got no email carrying it, and it is neither
//! on a queue nor in the rejections table. An email beyond the first for an event is
//! an *unflagged duplicate* unless its link is flagged `possible_duplicate` with a
//! hand-over in its attempt history for every email.

use super::TestStack;
use sqlx::Row;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One event as the test fed it in.
#[derive(Clone, Debug)]
pub struct FedEvent {
    pub event_id: String,
    pub recipient: String,
    /// `data.case_number`, which the letter prints: ties an email to this event,
    /// not just to its recipient.
    pub case_number: Option<String>,
}

/// One email as the SES side received it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub to: String,
    pub body: String,
    /// The `link_id` tag, where the SES side keeps tags (the stand-ins do).
    pub link_id: Option<String>,
}

impl From<&super::ses_standin::Recorded> for Delivered {
    fn from(r: &super::ses_standin::Recorded) -> Self {
        Self {
            to: r.to.clone(),
            body: r.html.clone(),
            link_id: Some(r.link_id.clone()).filter(|l| !l.is_empty()),
        }
    }
}

impl From<&super::Email> for Delivered {
    fn from(e: &super::Email) -> Self {
        Self {
            to: e.to.clone(),
            body: e.html.clone(),
            link_id: None,
        }
    }
}

/// The accepted requests of an SES stand-in, as deliveries.
pub fn accepted(ses: &super::ses_standin::SesStandIn) -> Vec<Delivered> {
    ses.accepted().iter().map(Delivered::from).collect()
}

#[derive(Default, Clone, Debug)]
pub struct Ledger {
    pub events: Vec<FedEvent>,
}

/// The count, event by event.
#[derive(Clone, Debug, Default)]
pub struct Accounting {
    pub fed: usize,
    /// Events whose recipient got at least one email carrying them.
    pub emailed: usize,
    /// Emails matched to a fed event, extras included.
    pub emails: usize,
    pub extra_emails: usize,
    /// Extra emails on a link flagged `possible_duplicate` with every hand-over recorded.
    pub extra_flagged: usize,
    pub unflagged_duplicates: usize,
    /// Not emailed, and still on the events queue.
    pub waiting_on_queue: usize,
    /// Not emailed, and in the dead-letter queue.
    pub dead_lettered: usize,
    /// Not emailed, and in the rejections table.
    pub rejected: usize,
    pub lost: usize,
    /// Emails to a fed recipient that do not carry that event's case number, or to
    /// nobody fed in.
    pub stray_emails: usize,
    pub lost_events: Vec<String>,
    pub unflagged_events: Vec<String>,
    /// The event ids that were emailed more than once, and how often.
    pub extra_per_event: HashMap<String, usize>,
    pub source: String,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an event body as fed in (plain, not wrapped).
    pub fn feed(&mut self, event: &serde_json::Value) {
        self.events.push(FedEvent {
            event_id: event["event_id"].as_str().expect("event_id").to_string(),
            recipient: event["recipient"]["email"]
                .as_str()
                .expect("recipient.email")
                .to_string(),
            case_number: event["data"]["case_number"].as_str().map(str::to_string),
        });
    }

    pub fn from_events(events: &[serde_json::Value]) -> Self {
        let mut ledger = Self::new();
        for e in events {
            ledger.feed(e);
        }
        ledger
    }

    /// Counts what became of every fed event. Waits (bounded) until no message of
    /// either queue is in flight, so that every one can be read; the daemon must
    /// have stopped. Reading a message leaves it visible again.
    pub async fn count(&self, stack: &TestStack, emails: &[Delivered], source: &str) -> Accounting {
        self.count_in(stack, &stack.pool, emails, source).await
    }

    /// As [`Ledger::count`], for a daemon whose audit database is not the stack's.
    pub async fn count_in(
        &self,
        stack: &TestStack,
        pool: &sqlx::PgPool,
        emails: &[Delivered],
        source: &str,
    ) -> Accounting {
        let queued = peek_bodies(stack, &stack.queue_url).await;
        let dead = peek_bodies(stack, &stack.dlq_url).await;
        let rejections: Vec<(Option<String>, String)> =
            sqlx::query("SELECT event_id, body FROM rejections")
                .fetch_all(pool)
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| (r.get("event_id"), r.get("body")))
                        .collect()
                })
                .unwrap_or_default();
        let links: HashMap<String, (bool, i64)> = sqlx::query(
            "SELECT l.link_id::text AS link, l.possible_duplicate,
                    (SELECT count(*) FROM link_attempts a
                      WHERE a.link_id = l.link_id AND a.sending_at IS NOT NULL) AS handed
             FROM links l",
        )
        .fetch_all(pool)
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r.get::<String, _>("link"),
                        (r.get("possible_duplicate"), r.get("handed")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
        self.tally(emails, &queued, &dead, &rejections, &links, source)
    }

    /// The count itself, from what was read.
    pub fn tally(
        &self,
        emails: &[Delivered],
        queued: &[String],
        dead: &[String],
        rejections: &[(Option<String>, String)],
        links: &HashMap<String, (bool, i64)>,
        source: &str,
    ) -> Accounting {
        let mut account = Accounting {
            fed: self.events.len(),
            source: source.to_string(),
            ..Default::default()
        };
        let mut per_recipient: HashMap<&str, Vec<&Delivered>> = HashMap::new();
        for email in emails {
            per_recipient
                .entry(address(&email.to))
                .or_default()
                .push(email);
        }
        let mut matched = 0;
        for event in &self.events {
            let carrying: Vec<&Delivered> = per_recipient
                .get(event.recipient.as_str())
                .map(|list| {
                    list.iter()
                        .copied()
                        .filter(|e| carries(&e.body, event.case_number.as_deref()))
                        .collect()
                })
                .unwrap_or_default();
            matched += carrying.len();
            if let Some(first) = carrying.first() {
                account.emailed += 1;
                account.emails += carrying.len();
                let extra = carrying.len() - 1;
                if extra > 0 {
                    account.extra_emails += extra;
                    account
                        .extra_per_event
                        .insert(event.event_id.clone(), carrying.len());
                    // Every email on one link, and that link flagged with a hand-over
                    // in its history for each of them.
                    let one_link = carrying.iter().all(|e| e.link_id == first.link_id);
                    let flagged = match &first.link_id {
                        Some(link) => links
                            .get(link)
                            .is_some_and(|&(flag, handed)| flag && handed >= carrying.len() as i64),
                        None => false,
                    };
                    if one_link && flagged {
                        account.extra_flagged += extra;
                    } else {
                        account.unflagged_duplicates += extra;
                        account.unflagged_events.push(event.event_id.clone());
                    }
                }
            } else if queued.iter().any(|b| names(b, &event.event_id)) {
                account.waiting_on_queue += 1;
            } else if dead.iter().any(|b| names(b, &event.event_id)) {
                account.dead_lettered += 1;
            } else if rejections.iter().any(|(id, body)| {
                id.as_deref() == Some(event.event_id.as_str()) || names(body, &event.event_id)
            }) {
                account.rejected += 1;
            } else {
                account.lost += 1;
                account.lost_events.push(event.event_id.clone());
            }
        }
        account.stray_emails = emails.len() - matched;
        account
    }
}

/// The bare address of a `To` as SES received it: doclink writes a named recipient
/// as `"Name" <address>`.
fn address(to: &str) -> &str {
    match (to.rfind('<'), to.rfind('>')) {
        (Some(open), Some(close)) if open < close => &to[open + 1..close],
        _ => to.trim(),
    }
}

/// Whether a letter's body prints the case number as a whole token ("C-1" is not
/// in "C-10").
fn carries(body: &str, case_number: Option<&str>) -> bool {
    let Some(case) = case_number else { return true };
    body.match_indices(case).any(|(at, _)| {
        !body[at + case.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// Whether a message body (plain or wrapped in an envelope, so quotes may be
/// escaped) holds this event id as a JSON string.
fn names(body: &str, event_id: &str) -> bool {
    body.contains(&format!("\"{event_id}\"")) || body.contains(&format!("\\\"{event_id}\\\""))
}

/// Every body on a queue, read without consuming: waits (bounded) until nothing is
/// in flight, receives until the queue is empty, then makes every message visible
/// again.
pub async fn peek_bodies(stack: &TestStack, url: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, in_flight) = stack.queue_counts(url).await;
        if in_flight == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{in_flight} messages still in flight on {url}: stop the daemon before counting"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut bodies = Vec::new();
    let mut handles = Vec::new();
    loop {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(120)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive to count the queue");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            let (visible, _) = stack.queue_counts(url).await;
            if visible == 0 {
                break;
            }
            continue;
        }
        for m in messages {
            bodies.push(m.body.unwrap_or_default());
            handles.push(m.receipt_handle.unwrap_or_default());
        }
    }
    for handle in handles {
        stack
            .sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .expect("make a counted message visible again");
    }
    bodies
}

impl Accounting {
    /// The counted evidence for a RELIABILITY.md fragment.
    pub fn evidence(&self) -> serde_json::Value {
        serde_json::json!({
            "counted_from": self.source,
            "fed": self.fed,
            "emailed": self.emailed,
            "emails": self.emails,
            "extra_emails": self.extra_emails,
            "extra_flagged": self.extra_flagged,
            "unflagged_duplicates": self.unflagged_duplicates,
            "waiting_on_queue": self.waiting_on_queue,
            "dead_lettered": self.dead_lettered,
            "rejected": self.rejected,
            "lost": self.lost,
            "stray_emails": self.stray_emails,
        })
    }

    /// Nothing lost, no unflagged extra email, no stray email.
    pub fn assert_sound(&self) {
        assert_eq!(self.lost, 0, "events lost: {:?}", self.lost_events);
        assert_eq!(
            self.unflagged_duplicates, 0,
            "extra emails not flagged: {:?}",
            self.unflagged_events
        );
        assert_eq!(self.stray_emails, 0, "emails that carry no fed event");
    }

    /// Sound, and every fed event emailed (extras flagged).
    pub fn assert_all_emailed(&self) {
        self.assert_sound();
        assert_eq!(self.emailed, self.fed, "events emailed: {self:?}");
    }

    /// Sound, and every fed event emailed exactly once.
    pub fn assert_each_emailed_once(&self) {
        self.assert_all_emailed();
        assert_eq!(
            self.extra_emails, 0,
            "emailed twice: {:?}",
            self.extra_per_event
        );
    }
}

/// Writes a RELIABILITY.md fragment (see support::record_reliability) whose figures
/// are this count's.
pub fn record(name: &str, what: serde_json::Value, account: &Accounting) {
    let mut fragment = what;
    fragment["evidence"] = account.evidence();
    super::record_reliability(name, fragment);
}
