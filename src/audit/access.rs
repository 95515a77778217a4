//! The edge's requests for doclink links in the audit log (`link_access`): added a
//! batch at a time, once per edge request and link, only for links doclink issued.

use super::{AuditError, AuditLog};
use crate::access_log::AccessLine;

/// One access to record: the line's facts, which file and line it came from.
pub struct AccessRecord<'a> {
    pub line: &'a AccessLine,
    pub line_number: u64,
}

/// What recording a batch did, counted by the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessesRecorded {
    /// (request, link) pairs new to the audit log.
    pub recorded: u64,
    /// Pairs for links doclink issued that were recorded before (a file read again).
    pub duplicates: u64,
    /// Pairs naming a link id doclink never issued: not recorded.
    pub other_link: u64,
    /// Of the new ones: answered with the document (200, 206, 304).
    pub opened: u64,
    /// Of the new ones: refused (4xx: the signature check, the revocation function).
    pub refused: u64,
    /// Of the new ones: neither (a HEAD, the viewer gone, 5xx, a redirect).
    pub other: u64,
    /// Of the new ones: made at or after the link's revocation.
    pub after_revoke: u64,
}

/// The statuses that mean the viewer got the document (or a part, or was told its
/// copy is current), to a GET (a HEAD asks about the document without it).
pub const OPENED_STATUSES: [i16; 3] = [200, 206, 304];

/// [`OPENED_STATUSES`] as SQL over a `link_access` row `a`: every query that says
/// "opened" says it this way.
pub const OPENED_SQL: &str = "(a.status IN (200, 206, 304) AND coalesce(a.method, 'GET') = 'GET')";

/// A request at or after a revocation, over `link_access` `a` and `links` `l`. The
/// legacy logs give whole seconds: a request in the revocation's own second counts
/// (it may have come just before; `links show` says which second).
pub const AFTER_REVOKE_SQL: &str =
    "(l.revoked_at IS NOT NULL AND a.accessed_at >= date_trunc('second', l.revoked_at))";

impl AuditLog {
    /// Records `accesses` read from the log file `object` (`s3://bucket/key`), one
    /// statement: rows for links not in `links` are left out, rows already recorded
    /// are skipped (`x-edge-request-id` and link), so reading a file again adds
    /// nothing.
    pub async fn record_accesses(
        &self,
        object: &str,
        accesses: &[AccessRecord<'_>],
    ) -> Result<AccessesRecorded, AuditError> {
        let pairs = accesses
            .iter()
            .flat_map(|a| a.line.link_ids.iter().map(move |id| (a, *id)));
        let mut request_id = Vec::new();
        let mut link_id = Vec::new();
        let mut accessed_at = Vec::new();
        let mut edge_location = Vec::new();
        let mut status = Vec::new();
        let mut method = Vec::new();
        let mut content_length = Vec::new();
        let mut result_type = Vec::new();
        let mut detailed = Vec::new();
        let mut bytes_sent = Vec::new();
        let mut range_start = Vec::new();
        let mut range_end = Vec::new();
        let mut client_ip = Vec::new();
        let mut user_agent = Vec::new();
        let mut log_line = Vec::new();
        for (a, id) in pairs {
            let l = a.line;
            request_id.push(l.request_id.as_str());
            link_id.push(id);
            accessed_at.push(l.at);
            edge_location.push(l.edge_location.as_deref());
            status.push(l.status);
            method.push(l.method.as_deref());
            content_length.push(l.content_length);
            result_type.push(l.result_type.as_deref());
            detailed.push(l.detailed_result_type.as_deref());
            bytes_sent.push(l.bytes_sent);
            range_start.push(l.range_start);
            range_end.push(l.range_end);
            client_ip.push(l.client_ip.map(|(ip, prefix)| format!("{ip}/{prefix}")));
            user_agent.push(l.user_agent.as_deref());
            log_line.push(a.line_number as i64);
        }
        if request_id.is_empty() {
            return Ok(AccessesRecorded::default());
        }
        let (pairs, known, recorded, opened, refused, after_revoke): (i64, i64, i64, i64, i64, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH input AS (
                    SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::smallint[],
                                         $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[],
                                         $11::inet[], $12::text[], $13::bigint[], $15::text[], $16::bigint[])
                        AS i(request_id, link_id, accessed_at, edge_location, status, result_type,
                             detailed_result_type, bytes_sent, range_start, range_end, client_ip,
                             user_agent, log_line, method, content_length)
                 ), known AS (
                    SELECT i.* FROM input i WHERE EXISTS (SELECT 1 FROM links l WHERE l.link_id = i.link_id)
                 ), stored AS (
                    INSERT INTO link_access (request_id, link_id, accessed_at, edge_location, status, method,
                                             content_length, result_type, detailed_result_type, bytes_sent,
                                             range_start, range_end, client_ip, user_agent, log_object, log_line)
                    SELECT k.request_id, k.link_id, k.accessed_at, k.edge_location, k.status, k.method,
                           k.content_length, k.result_type, k.detailed_result_type, k.bytes_sent, k.range_start,
                           k.range_end, k.client_ip, k.user_agent, $14, k.log_line
                    FROM known k
                    ON CONFLICT (request_id, link_id) DO NOTHING
                    RETURNING link_id, status, method, accessed_at
                 )
                 SELECT (SELECT count(*) FROM input), (SELECT count(*) FROM known), count(a.*),
                        count(*) FILTER (WHERE {OPENED_SQL}),
                        count(*) FILTER (WHERE a.status BETWEEN 400 AND 499),
                        count(*) FILTER (WHERE {AFTER_REVOKE_SQL})
                 FROM stored a JOIN links l ON l.link_id = a.link_id"
            )))
            .bind(&request_id)
            .bind(&link_id)
            .bind(&accessed_at)
            .bind(&edge_location)
            .bind(&status)
            .bind(&result_type)
            .bind(&detailed)
            .bind(&bytes_sent)
            .bind(&range_start)
            .bind(&range_end)
            .bind(&client_ip)
            .bind(&user_agent)
            .bind(&log_line)
            .bind(object)
            .bind(&method)
            .bind(&content_length)
            .fetch_one(&self.pool)
            .await?;
        Ok(AccessesRecorded {
            recorded: recorded as u64,
            duplicates: (known - recorded) as u64,
            other_link: (pairs - known) as u64,
            opened: opened as u64,
            refused: refused as u64,
            other: (recorded - opened - refused) as u64,
            after_revoke: after_revoke as u64,
        })
    }
}
