//! The tamper-evident journal (migration 20261206000003): every change to an audit
//! row appends an entry (written by a trigger as the tables' owner, so the daemon's
//! role cannot forge one), and entries are chained in batches, "seals".
//!
//! Why batches, not a chain entry by entry: chaining each entry to the one before
//! needs the previous hash, so every letter would wait on one lock. A seal instead
//! covers the entries of every transaction whose id lies in `[xid_from, xid_to)`,
//! with `xid_to` the oldest transaction still running when it is made: no commit
//! after it can add an entry to that range. Writers never wait; the daemon seals
//! every `DOCLINK_AUDIT_SEAL_INTERVAL`.
//!
//! [`verify`] recomputes everything independently of the database's functions:
//! each entry's hash from its fields, each seal's hash from the previous seal and its
//! entries, the chain's continuity, an anchor (a seal id and hash kept elsewhere, see
//! [`Head`]), and compares every audit row's current image with its latest entry, so
//! a row changed with the triggers disabled is named.

use super::{AuditError, AuditLog};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPool;
use sqlx::{Connection, Row};
use std::collections::BTreeMap;

/// The tables whose rows are journalled: name, key expression (over `t`), and the
/// columns left out of the image (as `audit_row_image` leaves them out). The
/// catalog supplies the other columns, so a migration that adds one needs no change
/// here (it re-journals the rows: `audit_rebaseline`).
const IMAGED_TABLES: &[(&str, &str, &[&str])] = &[
    ("links", "t.link_id::text", &["lease_until"]),
    (
        "link_attempts",
        "t.link_id::text || '/' || t.attempt::text",
        &[],
    ),
    ("revocations", "t.id::text", &[]),
    ("rejections", "t.id::text", &["body"]),
    ("rejection_retries", "t.id::text", &[]),
    ("delivery_events", "t.id::text", &[]),
    ("link_access", "t.id::text", &[]),
    ("audit_purge_runs", "t.xid::text", &[]),
];

/// A seal: the chain's link over one range of transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub id: i64,
    pub sealed_at: DateTime<Utc>,
    pub xid_from: u64,
    pub xid_to: u64,
    pub entries: i64,
    pub prev_sha256: Option<Vec<u8>>,
    pub seal_sha256: Vec<u8>,
}

impl Seal {
    /// The chain's head as it is exported (log, metric, anchor).
    pub fn head(&self) -> Head {
        Head {
            seal: self.id,
            sha256: hex::encode(&self.seal_sha256),
        }
    }
}

/// The chain's head: a seal's id and hash. Kept outside the database (the log, a
/// metric, an S3 object under Object Lock), it catches even a rewrite of the whole
/// journal with a recomputed chain: the rewritten seal no longer has this hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seal: i64,
    pub sha256: String,
}

impl Head {
    /// `SEAL:SHA256`, as `doclink audit verify --anchor` takes it and the log prints it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (seal, hash) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not SEAL:SHA256 (e.g. 42:3f1c...)"))?;
        let seal: i64 = seal
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("{seal:?} is not a seal number (1 or more)"))?;
        let hash = hash.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hash:?} is not a SHA-256 in hex (64 digits)"));
        }
        Ok(Self { seal, sha256: hash })
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seal, self.sha256)
    }
}

const SEAL_COLUMNS: &str = "id, sealed_at, xid_from::text AS xid_from, xid_to::text AS xid_to, entries, prev_sha256, seal_sha256";

fn seal_from(row: &sqlx::postgres::PgRow) -> Result<Seal, sqlx::Error> {
    let xid = |name: &str| -> Result<u64, sqlx::Error> {
        let text: String = row.try_get(name)?;
        text.parse().map_err(|e| sqlx::Error::ColumnDecode {
            index: name.into(),
            source: Box::new(e),
        })
    };
    Ok(Seal {
        id: row.try_get("id")?,
        sealed_at: row.try_get("sealed_at")?,
        xid_from: xid("xid_from")?,
        xid_to: xid("xid_to")?,
        entries: row.try_get("entries")?,
        prev_sha256: row.try_get("prev_sha256")?,
        seal_sha256: row.try_get("seal_sha256")?,
    })
}

impl AuditLog {
    /// Seals the entries of every transaction that ended since the last seal. None
    /// when there was nothing to seal, or another process was sealing.
    pub async fn seal(&self) -> Result<Option<Seal>, AuditError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SEAL_COLUMNS} FROM public.audit_seal()"
        )))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(seal_from).transpose()?)
    }

    /// The seal with this id, if the journal has one.
    pub async fn seal_by_id(&self, id: i64) -> Result<Option<Seal>, AuditError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SEAL_COLUMNS} FROM public.audit_seals WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(seal_from).transpose()?)
    }

    /// How long the oldest entry not yet sealed has waited, in seconds (0 when none).
    pub async fn unsealed_age(&self) -> Result<f64, AuditError> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(extract(epoch FROM now() - min(j.at))::float8, 0)
             FROM public.audit_journal j
             WHERE j.xid >= coalesce((SELECT max(s.xid_to) FROM public.audit_seals s), '0'::xid8)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The database's name (an anchor says which database its head is of).
    pub async fn database_name(&self) -> Result<String, AuditError> {
        Ok(sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The latest seal, if any.
    pub async fn journal_head(&self) -> Result<Option<Seal>, AuditError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SEAL_COLUMNS} FROM public.audit_seals ORDER BY id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(seal_from).transpose()?)
    }
}

/// What is wrong, in terms an auditor can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Break {
    /// An entry's fields no longer give its hash: it was edited after it was written.
    EntryAltered {
        seq: i64,
        table: String,
        row: String,
        event: String,
    },
    /// A seal does not match what it covers: entries in its range were added,
    /// removed or rewritten (hashes included), or the seal itself was.
    SealMismatch {
        seal: i64,
        first_seq: Option<i64>,
        last_seq: Option<i64>,
        entries_now: i64,
        entries_sealed: i64,
    },
    /// The chain is not continuous here: a seal was removed, inserted or rewritten.
    ChainBroken { seal: i64, reason: String },
    /// The anchor kept outside the database does not match: the journal was rewritten.
    AnchorMismatch {
        seal: i64,
        anchored: String,
        found: Option<String>,
    },
    /// A row differs from its latest journal entry: changed outside the journal.
    RowChanged {
        table: String,
        row: String,
        last_seq: i64,
        last_event: String,
    },
    /// A row the journal says exists is gone, and retention did not remove it.
    RowRemoved {
        table: String,
        row: String,
        last_seq: i64,
        last_event: String,
    },
    /// A row with no journal entry: added (or re-keyed) outside the journal.
    RowUnjournaled { table: String, row: String },
    /// An entry records what no doclink role may do: a change that breaks the rules
    /// (the owner's: the trigger refuses it to every other role) or a delete outside retention.
    Forbidden {
        seq: i64,
        table: String,
        row: String,
        event: String,
    },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::EntryAltered {
                seq,
                table,
                row,
                event,
            } => write!(
                f,
                "journal entry {seq} ({table} {row}, {event}) was altered after it was written: its hash does not match"
            ),
            Break::SealMismatch {
                seal,
                first_seq,
                last_seq,
                entries_now,
                entries_sealed,
            } => {
                write!(
                    f,
                    "seal {seal} does not match its entries (sealed {entries_sealed}, found {entries_now}"
                )?;
                if let (Some(a), Some(b)) = (first_seq, last_seq) {
                    write!(f, ", entries {a}..{b}")?;
                }
                write!(f, "): entries were added, removed or rewritten")
            }
            Break::ChainBroken { seal, reason } => {
                write!(f, "chain broken at seal {seal}: {reason}")
            }
            Break::AnchorMismatch {
                seal,
                anchored,
                found,
            } => match found {
                Some(found) => write!(
                    f,
                    "seal {seal} has hash {found}, but the anchor says {anchored}: the journal was rewritten"
                ),
                None => write!(
                    f,
                    "seal {seal} is anchored ({anchored}) but missing from the journal: the journal was rewritten"
                ),
            },
            Break::RowChanged {
                table,
                row,
                last_seq,
                last_event,
            } => write!(
                f,
                "{table} {row} was changed outside the journal (its last entry is {last_seq}, {last_event})"
            ),
            Break::RowRemoved {
                table,
                row,
                last_seq,
                last_event,
            } => write!(
                f,
                "{table} {row} was removed outside retention (its last entry is {last_seq}, {last_event})"
            ),
            Break::RowUnjournaled { table, row } => {
                write!(
                    f,
                    "{table} {row} is not in the journal: added or changed outside it"
                )
            }
            Break::Forbidden {
                seq,
                table,
                row,
                event,
            } => write!(
                f,
                "journal entry {seq} ({table} {row}) records what no doclink role may do: {event}"
            ),
        }
    }
}

/// What `doclink audit verify` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verification {
    pub seals: i64,
    pub entries: i64,
    /// Entries of transactions after the last seal (sealed by the next one).
    pub unsealed: i64,
    pub rows_checked: i64,
    pub head: Option<String>,
    pub anchors: Vec<String>,
    pub breaks: Vec<Break>,
}

/// The canonical line an entry's hash covers; the same as the database's
/// `audit_entry_line`, written again here so that verify does not trust it.
pub fn entry_line(
    seq: i64,
    xid: u64,
    at_micros: i64,
    table: &str,
    row: &str,
    event: &str,
    row_sha256: Option<&[u8]>,
) -> String {
    let digest = row_sha256.map_or_else(|| "-".to_string(), hex::encode);
    format!("{seq}|{xid}|{at_micros}|{table}|{row}|{event}|{digest}")
}

struct OpenSeal {
    seal: Seal,
    hasher: Sha256,
    count: i64,
    first: Option<i64>,
    last: Option<i64>,
}

/// Recomputes the journal and compares every audit row with it. Reads only (the
/// auditor's role suffices). Streams the journal: memory is flat in its length.
pub async fn verify(pool: &PgPool, anchors: &[Head]) -> Result<Verification, AuditError> {
    let mut report = Verification {
        anchors: anchors.iter().map(|a| a.to_string()).collect(),
        ..Verification::default()
    };
    let mut connection = pool.acquire().await?;
    let mut tx = connection.begin().await?;
    // One snapshot for the whole check; images in UTC, as the triggers make them.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL TimeZone = 'UTC'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL bytea_output = 'hex'")
        .execute(&mut *tx)
        .await?;

    // The seals, checked as a chain.
    let seals: Vec<Seal> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SEAL_COLUMNS} FROM public.audit_seals ORDER BY id"
    )))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(seal_from)
    .collect::<Result<_, _>>()?;
    report.seals = seals.len() as i64;
    report.head = seals.last().map(|s| s.head().to_string());
    let mut open: BTreeMap<u64, OpenSeal> = BTreeMap::new();
    let mut previous: Option<&Seal> = None;
    for (i, seal) in seals.iter().enumerate() {
        let expected_id = i as i64 + 1;
        if seal.id != expected_id {
            report.breaks.push(Break::ChainBroken {
                seal: seal.id,
                reason: format!("seal {expected_id} is missing"),
            });
        }
        let (expected_prev, expected_from) = match previous {
            Some(p) => (Some(p.seal_sha256.clone()), p.xid_to),
            None => (None, 0),
        };
        if seal.prev_sha256 != expected_prev {
            report.breaks.push(Break::ChainBroken {
                seal: seal.id,
                reason: "its previous hash is not the previous seal's hash".into(),
            });
        }
        if seal.xid_from != expected_from || seal.xid_to <= seal.xid_from {
            report.breaks.push(Break::ChainBroken {
                seal: seal.id,
                reason: format!(
                    "it covers transactions {}..{}, not from {expected_from} on",
                    seal.xid_from, seal.xid_to
                ),
            });
        }
        let mut hasher = Sha256::new();
        let prev = seal
            .prev_sha256
            .as_ref()
            .map_or_else(|| "genesis".to_string(), hex::encode);
        hasher.update(format!(
            "{prev}\n{}\n{}\n{}\n{}",
            seal.id, seal.xid_from, seal.xid_to, seal.entries
        ));
        open.insert(
            seal.xid_from,
            OpenSeal {
                seal: seal.clone(),
                hasher,
                count: 0,
                first: None,
                last: None,
            },
        );
        previous = Some(seal);
    }
    for anchor in anchors {
        let found = seals.iter().find(|s| s.id == anchor.seal);
        let found_hash = found.map(|s| hex::encode(&s.seal_sha256));
        if found_hash.as_deref() != Some(anchor.sha256.as_str()) {
            report.breaks.push(Break::AnchorMismatch {
                seal: anchor.seal,
                anchored: anchor.sha256.clone(),
                found: found_hash,
            });
        }
    }

    // The entries, in order: each one's hash from its fields, fed to its seal.
    let mut purge_runs = std::collections::HashSet::new();
    let mut purged = Vec::new();
    {
        let mut entries = sqlx::query(
            "SELECT seq, xid::text AS xid, (extract(epoch FROM at) * 1000000)::numeric(30, 0)::text AS at_micros,
                    table_name, row_key, event, row_sha256, entry_sha256
             FROM public.audit_journal ORDER BY seq",
        )
        .fetch(&mut *tx);
        while let Some(row) = entries.try_next().await? {
            report.entries += 1;
            let seq: i64 = row.try_get("seq")?;
            let xid: u64 = parse_column(&row, "xid")?;
            let at_micros: i64 = parse_column(&row, "at_micros")?;
            let table: String = row.try_get("table_name")?;
            let key: String = row.try_get("row_key")?;
            let event: String = row.try_get("event")?;
            let row_sha256: Option<Vec<u8>> = row.try_get("row_sha256")?;
            let stored: Vec<u8> = row.try_get("entry_sha256")?;
            // A purge is allowed only in a retention run's transaction, whose own
            // entry (`purge_run`) the journal holds.
            if table == "audit_purge_runs" {
                purge_runs.insert(xid);
            }
            if event == "purged" {
                purged.push((seq, xid, table.clone(), key.clone()));
            }
            if event == "deleted" || event.starts_with("tampered") {
                report.breaks.push(Break::Forbidden {
                    seq,
                    table: table.clone(),
                    row: key.clone(),
                    event: event.clone(),
                });
            }
            let line = entry_line(
                seq,
                xid,
                at_micros,
                &table,
                &key,
                &event,
                row_sha256.as_deref(),
            );
            if Sha256::digest(line.as_bytes()).as_slice() != stored.as_slice() {
                report.breaks.push(Break::EntryAltered {
                    seq,
                    table: table.clone(),
                    row: key.clone(),
                    event: event.clone(),
                });
            }
            // The seal whose range holds this transaction, if any yet.
            match open.range_mut(..=xid).next_back() {
                Some((_, s)) if xid < s.seal.xid_to => {
                    s.hasher.update(b"\n");
                    s.hasher.update(hex::encode(&stored).as_bytes());
                    s.count += 1;
                    s.first.get_or_insert(seq);
                    s.last = Some(seq);
                }
                _ => report.unsealed += 1,
            }
        }
    }
    for (seq, xid, table, row) in purged {
        if !purge_runs.contains(&xid) || table == "revocations" {
            report.breaks.push(Break::Forbidden {
                seq,
                table,
                row,
                event: "purged outside a retention run".into(),
            });
        }
    }
    for s in open.into_values() {
        let sha = s.hasher.finalize();
        if s.count != s.seal.entries || sha.as_slice() != s.seal.seal_sha256.as_slice() {
            report.breaks.push(Break::SealMismatch {
                seal: s.seal.id,
                first_seq: s.first,
                last_seq: s.last,
                entries_now: s.count,
                entries_sealed: s.seal.entries,
            });
        }
    }
    report.breaks.sort_by_key(break_order);

    // Every row against its latest entry. Each row's image is built here from the
    // catalog's column list, not by the database's audit functions (which the owner
    // could replace), with every name qualified and nothing else on the search path.
    sqlx::query("SET LOCAL search_path = pg_catalog, pg_temp")
        .execute(&mut *tx)
        .await?;
    let mut present = Vec::new();
    for (table, key, left_out) in IMAGED_TABLES {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = ('public.' || quote_ident($1))::regclass AND a.attnum > 0
               AND NOT a.attisdropped AND a.attname <> ALL ($2)
             ORDER BY a.attnum",
        )
        .bind(table)
        .bind(left_out.to_vec())
        .fetch_all(&mut *tx)
        .await?;
        present.push(format!(
            "SELECT '{table}'::text AS table_name, {key} AS row_key, pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_object({})::text, 'UTF8')) AS digest FROM public.{table} t",
            columns
                .iter()
                .map(|c| {
                    let quoted = c.replace('"', "\"\"");
                    format!("'{}', t.\"{quoted}\"", c.replace('\'', "''"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH latest AS (
            SELECT DISTINCT ON (j.table_name, j.row_key) j.table_name, j.row_key, j.seq, j.event, j.row_sha256
            FROM public.audit_journal j ORDER BY j.table_name, j.row_key, j.seq DESC
         ), present AS ({})
         SELECT coalesce(p.table_name, l.table_name) AS table_name, coalesce(p.row_key, l.row_key) AS row_key,
                l.seq, l.event, l.row_sha256 IS NOT NULL AS journal_has_row, p.digest IS NOT NULL AS present,
                (p.digest IS NOT NULL) AND l.row_sha256 IS NOT DISTINCT FROM p.digest AS same
         FROM present p FULL JOIN latest l ON l.table_name = p.table_name AND l.row_key = p.row_key",
        present.join(" UNION ALL ")
    )))
    .fetch(&mut *tx);
    let mut row_breaks = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let present: bool = row.try_get("present")?;
        let journal_has_row: bool = row.try_get("journal_has_row")?;
        let same: bool = row.try_get("same")?;
        if present {
            report.rows_checked += 1;
        }
        let table: String = row.try_get("table_name")?;
        let key: String = row.try_get("row_key")?;
        let seq: Option<i64> = row.try_get("seq")?;
        let event: Option<String> = row.try_get("event")?;
        match (present, seq, journal_has_row, same) {
            (true, _, _, true) | (false, Some(_), false, _) => {}
            (true, None, _, _) => row_breaks.push(Break::RowUnjournaled { table, row: key }),
            (true, Some(seq), _, false) => row_breaks.push(Break::RowChanged {
                table,
                row: key,
                last_seq: seq,
                last_event: event.unwrap_or_default(),
            }),
            (false, Some(seq), true, _) => row_breaks.push(Break::RowRemoved {
                table,
                row: key,
                last_seq: seq,
                last_event: event.unwrap_or_default(),
            }),
            (false, None, _, _) => {}
        }
    }
    drop(rows);
    row_breaks.sort_by(|a, b| format!("{a}").cmp(&format!("{b}")));
    report.breaks.extend(row_breaks);
    tx.rollback().await?;
    Ok(report)
}

fn parse_column<T: std::str::FromStr>(
    row: &sqlx::postgres::PgRow,
    name: &str,
) -> Result<T, sqlx::Error>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.try_get(name)?;
    text.parse().map_err(|e| sqlx::Error::ColumnDecode {
        index: name.into(),
        source: Box::new(e),
    })
}

fn break_order(b: &Break) -> (u8, i64) {
    match b {
        Break::AnchorMismatch { seal, .. } => (0, *seal),
        Break::ChainBroken { seal, .. } => (1, *seal),
        Break::SealMismatch { seal, .. } => (2, *seal),
        Break::EntryAltered { seq, .. } => (3, *seq),
        Break::Forbidden { seq, .. } => (4, *seq),
        _ => (5, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_is_a_seal_number_and_a_sha256() {
        let hash = "ab".repeat(32);
        assert_eq!(
            Head::parse(&format!("42:{}", hash.to_uppercase())).unwrap(),
            Head {
                seal: 42,
                sha256: hash.clone()
            }
        );
        assert!(Head::parse(&hash).unwrap_err().contains("SEAL:SHA256"));
        assert!(
            Head::parse(&format!("0:{hash}"))
                .unwrap_err()
                .contains("seal number")
        );
        assert!(Head::parse("7:abc").unwrap_err().contains("64 digits"));
    }

    #[test]
    fn an_entry_line_names_every_field_and_a_removed_row_as_a_dash() {
        assert_eq!(
            entry_line(
                3,
                740,
                1_796_536_000_123_456,
                "links",
                "k",
                "sent",
                Some(&[0xab, 0x01])
            ),
            "3|740|1796536000123456|links|k|sent|ab01"
        );
        assert_eq!(
            entry_line(4, 741, 5, "links", "k", "purged", None),
            "4|741|5|links|k|purged|-"
        );
    }
}
