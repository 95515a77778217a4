//! Revocation at the edge. CloudFront cannot revoke one signed URL, so a CloudFront
//! Function (`deploy/edge/revocation.js`) looks each request's `lid` up in a
//! CloudFront KeyValueStore and refuses revoked links. doclink keeps that store in
//! line with the audit log: one key per revoked link that has not expired (its
//! value is the expiry, Unix seconds); an expired link needs no entry, because its
//! signature already fails, and the store holds at most 5 MB.

use crate::audit::ActiveRevocation;
use crate::error::BoxError;
use aws_sdk_cloudfrontkeyvaluestore::config::endpoint::{
    Endpoint, EndpointFuture, Params, ResolveEndpoint,
};
use aws_sdk_cloudfrontkeyvaluestore::types::{DeleteKeyRequestListItem, PutKeyRequestListItem};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A KeyValueStore's ARN: `arn:aws:cloudfront::<account>:key-value-store/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvsArn(String);

impl KvsArn {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix("arn:aws:cloudfront::").ok_or_else(|| {
            format!("{text:?} is not a KeyValueStore ARN (arn:aws:cloudfront::<account>:key-value-store/<id>)")
        })?;
        let (account, resource) = rest
            .split_once(':')
            .ok_or_else(|| format!("{text:?} has no account id"))?;
        let id = resource
            .strip_prefix("key-value-store/")
            .ok_or_else(|| format!("{text:?} does not name a key-value-store"))?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?}: the account id must be 12 digits"));
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "{text:?}: the store id is empty or holds other than letters, digits and '-'"
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit account id (checked by [`KvsArn::parse`]).
    pub fn account(&self) -> &str {
        self.0["arn:aws:cloudfront::".len()..]
            .split(':')
            .next()
            .unwrap_or_default()
    }
}

/// The store's limits (CloudFront Developer Guide, KeyValueStore quotas; the batch
/// size is the UpdateKeys quota of 50 keys).
pub const MAX_STORE_BYTES: usize = 5 * 1024 * 1024;
const BATCH: usize = 50;
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("KeyValueStore {operation} failed")]
    Call {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    #[error(
        "{count} active revocations need {bytes} bytes, more than the KeyValueStore's 5 MB: revoke by key-pair id (rotate the key) instead"
    )]
    TooLarge { count: usize, bytes: usize },
    #[error(
        "the KeyValueStore kept changing under the sync ({CONFLICT_RETRIES} conflicting ETags in a row)"
    )]
    Conflict,
}

fn call<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_cloudfrontkeyvaluestore::error::SdkError<E>) -> EdgeError {
    move |err| EdgeError::Call {
        operation,
        source: Box::new(err),
    }
}

/// The SDK's endpoint rules put the ARN's account id in front of an overridden host
/// (`http://127.0.0.1:9000` becomes `http://123456789012.127.0.0.1:9000`), so
/// `AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE` is used exactly as given instead, with
/// the SigV4A signing the service requires.
#[derive(Debug)]
struct EndpointAsGiven(String);

impl ResolveEndpoint for EndpointAsGiven {
    fn resolve_endpoint<'a>(&'a self, _params: &'a Params) -> EndpointFuture<'a> {
        let endpoint = Endpoint::builder()
            .url(self.0.clone())
            .auth_scheme(
                aws_smithy_types::endpoint::EndpointAuthScheme::with_capacity("sigv4a", 2)
                    .put("signingName", "cloudfront-keyvaluestore")
                    .put("signingRegionSet", vec!["*".to_string().into()]),
            )
            .build();
        EndpointFuture::ready(Ok(endpoint))
    }
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    pub put: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

/// The revocation KeyValueStore.
#[derive(Clone)]
pub struct RevocationStore {
    client: aws_sdk_cloudfrontkeyvaluestore::Client,
    arn: KvsArn,
}

impl RevocationStore {
    pub fn new(aws: &aws_config::SdkConfig, arn: KvsArn) -> Self {
        let mut config = aws_sdk_cloudfrontkeyvaluestore::config::Builder::from(aws);
        if let Ok(url) = std::env::var("AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE")
            && !url.is_empty()
        {
            config = config.endpoint_resolver(EndpointAsGiven(url));
        }
        Self {
            client: aws_sdk_cloudfrontkeyvaluestore::Client::from_conf(config.build()),
            arn,
        }
    }

    pub fn arn(&self) -> &KvsArn {
        &self.arn
    }

    /// Brings the store in line with `active`: puts what is missing or different,
    /// deletes link ids no longer revoked or expired. Idempotent; a conflicting ETag
    /// (someone else wrote) is re-read and the difference computed again.
    pub async fn sync(&self, active: &[ActiveRevocation]) -> Result<SyncReport, EdgeError> {
        let desired: BTreeMap<String, String> = active
            .iter()
            .map(|r| (r.link_id.to_string(), r.expires.to_string()))
            .collect();
        let bytes: usize = desired.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > MAX_STORE_BYTES {
            return Err(EdgeError::TooLarge {
                count: desired.len(),
                bytes,
            });
        }
        for _ in 0..CONFLICT_RETRIES {
            let etag = self.etag().await?;
            let current = self.keys().await?;
            let (puts, deletes, unchanged) = difference(&desired, &current);
            match self.apply(etag, &puts, &deletes).await {
                Ok(()) => {
                    return Ok(SyncReport {
                        put: puts.len(),
                        deleted: deletes.len(),
                        unchanged,
                    });
                }
                Err(Apply::Conflict) => continue,
                Err(Apply::Failed(err)) => return Err(err),
            }
        }
        Err(EdgeError::Conflict)
    }

    /// The store's item count and size, as `doclink doctor` reports them.
    pub async fn describe(&self) -> Result<(i32, i64), EdgeError> {
        let out = self
            .client
            .describe_key_value_store()
            .kvs_arn(self.arn.as_str())
            .send()
            .await
            .map_err(call("DescribeKeyValueStore"))?;
        Ok((out.item_count(), out.total_size_in_bytes()))
    }

    async fn etag(&self) -> Result<String, EdgeError> {
        let out = self
            .client
            .describe_key_value_store()
            .kvs_arn(self.arn.as_str())
            .send()
            .await
            .map_err(call("DescribeKeyValueStore"))?;
        Ok(out.e_tag().to_string())
    }

    async fn keys(&self) -> Result<BTreeMap<String, String>, EdgeError> {
        let mut keys = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_keys()
                .kvs_arn(self.arn.as_str())
                .max_results(50)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(call("ListKeys"))?;
            for item in out.items() {
                keys.insert(item.key().to_string(), item.value().to_string());
            }
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => return Ok(keys),
            }
        }
    }

    async fn apply(
        &self,
        mut etag: String,
        puts: &[(String, String)],
        deletes: &[String],
    ) -> Result<(), Apply> {
        let mut puts = puts.iter().peekable();
        let mut deletes = deletes.iter().peekable();
        while puts.peek().is_some() || deletes.peek().is_some() {
            let mut request = self
                .client
                .update_keys()
                .kvs_arn(self.arn.as_str())
                .if_match(&etag);
            let mut ops = 0;
            while ops < BATCH {
                if let Some(key) = deletes.next() {
                    request = request.deletes(
                        DeleteKeyRequestListItem::builder()
                            .key(key)
                            .build()
                            .expect("the key is set"),
                    );
                } else if let Some((key, value)) = puts.next() {
                    request = request.puts(
                        PutKeyRequestListItem::builder()
                            .key(key)
                            .value(value)
                            .build()
                            .expect("key and value are set"),
                    );
                } else {
                    break;
                }
                ops += 1;
            }
            match request.send().await {
                Ok(out) => etag = out.e_tag().to_string(),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conflict_exception()) =>
                {
                    return Err(Apply::Conflict);
                }
                Err(err) => return Err(Apply::Failed(call("UpdateKeys")(err))),
            }
        }
        Ok(())
    }
}

enum Apply {
    Conflict,
    Failed(EdgeError),
}

/// What to put, what to delete, and how many entries are already right. Only keys
/// that are link ids are deleted: the store may hold entries doclink did not write.
fn difference(
    desired: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> (Vec<(String, String)>, Vec<String>, usize) {
    let puts: Vec<(String, String)> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deletes: Vec<String> = current
        .keys()
        .filter(|k| !desired.contains_key(*k) && Uuid::parse_str(k).is_ok())
        .cloned()
        .collect();
    let unchanged = desired.len() - puts.len();
    (puts, deletes, unchanged)
}

/// `[{"link_id": ..., "expires": ...}, ...]`.
pub fn export_json(active: &[ActiveRevocation]) -> String {
    serde_json::to_string_pretty(active).expect("revocations serialize") + "\n"
}

/// The import format of CreateKeyValueStore: `{"data":[{"key":...,"value":...}]}`.
pub fn export_kvs_json(active: &[ActiveRevocation]) -> String {
    let data: Vec<serde_json::Value> = active
        .iter()
        .map(|r| serde_json::json!({"key": r.link_id.to_string(), "value": r.expires.to_string()}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "data": data })).expect("json") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert!(
            KvsArn::parse("arn:aws:cloudfront::123456789012:key-value-store/a1b2c3d4-5678").is_ok()
        );
        for bad in [
            "",
            "arn:aws:s3:::bucket",
            "arn:aws:cloudfront::12345:key-value-store/x",
            "arn:aws:cloudfront::123456789012:distribution/x",
            "arn:aws:cloudfront::123456789012:key-value-store/",
        ] {
            assert!(KvsArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_difference_puts_changes_and_deletes_only_link_ids() {
        let id1 = "0192f3a4-5b6c-7d8e-9f01-23456789abcd".to_string();
        let id2 = "0192f3a4-5b6c-7d8e-9f01-23456789abce".to_string();
        let id3 = "0192f3a4-5b6c-7d8e-9f01-23456789abcf".to_string();
        let desired = BTreeMap::from([
            (id1.clone(), "10".to_string()),
            (id2.clone(), "20".to_string()),
        ]);
        let current = BTreeMap::from([
            (id1.clone(), "10".to_string()),
            (id2.clone(), "19".to_string()),
            (id3.clone(), "5".to_string()),
            ("someone-else".to_string(), "x".to_string()),
        ]);
        let (puts, deletes, unchanged) = difference(&desired, &current);
        assert_eq!(puts, vec![(id2, "20".to_string())]);
        assert_eq!(deletes, vec![id3]);
        assert_eq!(unchanged, 1);
    }

    #[test]
    fn the_kvs_export_is_the_import_format() {
        let active = [ActiveRevocation {
            link_id: Uuid::parse_str("0192f3a4-5b6c-7d8e-9f01-23456789abcd").unwrap(),
            expires: 1_800_000_000,
        }];
        let value: serde_json::Value = serde_json::from_str(&export_kvs_json(&active)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"data": [{"key": "0192f3a4-5b6c-7d8e-9f01-23456789abcd", "value": "1800000000"}]})
        );
    }
}
