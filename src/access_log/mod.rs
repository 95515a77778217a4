//! Who opened which document, and when: CloudFront's access logs, read into the
//! audit. Log files land in S3; each file's lines that name a doclink link
//! (`lid`) become rows of `link_access`, one per edge request and link.
//!
//! [`w3c`] reads a file's lines. What a line becomes is an [`AccessLine`]: the
//! request's facts, never its query (which holds the signature).

pub mod notification;
pub mod object;
mod scan;
pub mod w3c;

use chrono::{DateTime, Utc};
use std::net::IpAddr;
use uuid::Uuid;

/// How much of the viewer's address is kept (`DOCLINK_ACCESS_IP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// The whole address.
    Full,
    /// The network only: IPv4 /24, IPv6 /48 (the default). Enough to tell one
    /// office or provider from another, not one household from its neighbour.
    Truncated,
    /// Nothing.
    None,
}

impl ClientIp {
    /// `full`, `truncated` or `none`.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "truncated" | "" => Ok(Self::Truncated),
            "none" => Ok(Self::None),
            _ => Err(format!("{value:?} is not full, truncated or none")),
        }
    }

    /// What is kept of `addr`: the address with its host bits cleared, and the
    /// prefix length that says how many bits are real.
    pub fn keep(self, addr: IpAddr) -> Option<(IpAddr, u8)> {
        match (self, addr) {
            (Self::None, _) => None,
            (Self::Full, IpAddr::V4(_)) => Some((addr, 32)),
            (Self::Full, IpAddr::V6(_)) => Some((addr, 128)),
            (Self::Truncated, IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                Some((IpAddr::from([a, b, c, 0]), 24))
            }
            (Self::Truncated, IpAddr::V6(v6)) => {
                let s = v6.segments();
                Some((IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0]), 48))
            }
        }
    }
}

/// One request for one or more doclink links, as the edge logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine {
    /// `x-edge-request-id`: unique per request, so a file read twice (S3 notifies
    /// at least once) records nothing twice.
    pub request_id: String,
    /// The distinct link ids the query named with `lid` (a doclink link has one).
    pub link_ids: Vec<Uuid>,
    /// When the edge finished answering (whole seconds in the legacy logs).
    pub at: DateTime<Utc>,
    pub edge_location: Option<String>,
    /// The HTTP status; 0 when the viewer went away before the answer began.
    pub status: i16,
    /// `cs-method`: GET, or HEAD (which asks about the document without it).
    pub method: Option<String>,
    /// `sc-content-len`: the body's length as the response's Content-Length gave
    /// it (of a 206, the part's).
    pub content_length: Option<i64>,
    /// `x-edge-result-type`: Hit, Miss, Error, ... (kept as text: the set grows).
    pub result_type: Option<String>,
    pub detailed_result_type: Option<String>,
    /// Bytes sent to the viewer, headers included.
    pub bytes_sent: Option<i64>,
    pub range_start: Option<i64>,
    pub range_end: Option<i64>,
    /// The viewer's address as [`ClientIp`] keeps it, with its prefix length.
    pub client_ip: Option<(IpAddr, u8)>,
    pub user_agent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_kept_whole_cut_to_their_network_or_not_at_all() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:85a3:1:2:8a2e:370:7334".parse().unwrap();
        assert_eq!(ClientIp::Full.keep(v4), Some((v4, 32)));
        assert_eq!(ClientIp::Full.keep(v6), Some((v6, 128)));
        assert_eq!(
            ClientIp::Truncated.keep(v4),
            Some(("203.0.113.0".parse().unwrap(), 24))
        );
        assert_eq!(
            ClientIp::Truncated.keep(v6),
            Some(("2001:db8:85a3::".parse().unwrap(), 48))
        );
        assert_eq!(ClientIp::None.keep(v4), None);
        assert_eq!(ClientIp::parse("Truncated"), Ok(ClientIp::Truncated));
        assert_eq!(ClientIp::parse(""), Ok(ClientIp::Truncated));
        assert!(
            ClientIp::parse("half")
                .unwrap_err()
                .contains("full, truncated or none")
        );
    }
}
