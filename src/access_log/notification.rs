//! S3's "object created" notifications, as they reach the access-log queue: which
//! log files to read.
//!
//! The body is `{"Records": [...]}`, each record naming a bucket and an object key
//! that S3 form-encodes (`+` for a space, `%XX` for other bytes; moto also encodes
//! `/`). When the notification is configured, S3 first sends an `s3:TestEvent`,
//! which names no object. A notification that went through SNS (raw delivery off)
//! arrives in SNS's envelope, with the S3 body as its `Message` string.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// A log file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogObject {
    pub bucket: String,
    pub key: String,
    /// The size S3 reported, when it did.
    pub size: Option<u64>,
}

/// What a message on the access-log queue asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Notification {
    /// S3's test message on configuration: nothing to read.
    Test,
    /// These objects were created (other events in the same message are skipped).
    Created(Vec<LogObject>),
}

/// Reads a queue message's body. The error names the field and what was wrong.
pub fn parse(body: &str) -> Result<Notification, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let value = match (value.get("Type"), value.get("Message")) {
        (Some(Value::String(kind)), Some(Value::String(message))) if kind == "Notification" => {
            serde_json::from_str(message)
                .map_err(|e| format!("Message (in the SNS envelope) is not JSON: {e}"))?
        }
        _ => value,
    };
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    let records = value
        .get("Records")
        .ok_or("Records is missing: not an S3 notification")?
        .as_array()
        .ok_or("Records is not a list")?;
    let mut objects = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let field = |path: &[&str]| {
            path.iter()
                .try_fold(record, |v, name| v.get(name))
                .ok_or_else(|| format!("Records[{i}].{} is missing", path.join(".")))
        };
        let event = field(&["eventName"])?
            .as_str()
            .ok_or(format!("Records[{i}].eventName is not a string"))?;
        if !event.starts_with("ObjectCreated:") {
            continue;
        }
        let bucket = field(&["s3", "bucket", "name"])?
            .as_str()
            .filter(|b| !b.is_empty())
            .ok_or(format!("Records[{i}].s3.bucket.name is not a bucket name"))?;
        let key = field(&["s3", "object", "key"])?
            .as_str()
            .ok_or(format!("Records[{i}].s3.object.key is not a string"))?;
        let key = percent_decode_str(&key.replace('+', " "))
            .decode_utf8()
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or(format!(
                "Records[{i}].s3.object.key is not a form-encoded UTF-8 key"
            ))?
            .into_owned();
        let size = record.pointer("/s3/object/size").and_then(Value::as_u64);
        objects.push(LogObject {
            bucket: bucket.to_string(),
            key,
            size,
        });
    }
    Ok(Notification::Created(objects))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(event: &str, key: &str) -> Value {
        json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "eu-west-1",
            "eventTime": "2026-12-06T14:00:01.123Z",
            "eventName": event,
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": {"name": "doclink-logs", "arn": "arn:aws:s3:::doclink-logs"},
                "object": {"key": key, "size": 1234, "eTag": "0123"}
            }
        })
    }

    #[test]
    fn created_objects_are_read_with_their_keys_form_decoded() {
        let body = json!({"Records": [
            record("ObjectCreated:Put", "cf/E2EXAMPLE.2026-12-06-14.a1b2c3d4.gz"),
            record("ObjectRemoved:Delete", "cf/gone.gz"),
            record("ObjectCreated:CompleteMultipartUpload", "cf%2Fa+b%2Bc.gz"),
        ]})
        .to_string();
        assert_eq!(
            parse(&body),
            Ok(Notification::Created(vec![
                LogObject {
                    bucket: "doclink-logs".into(),
                    key: "cf/E2EXAMPLE.2026-12-06-14.a1b2c3d4.gz".into(),
                    size: Some(1234),
                },
                LogObject {
                    bucket: "doclink-logs".into(),
                    key: "cf/a b+c.gz".into(),
                    size: Some(1234),
                },
            ]))
        );
    }

    #[test]
    fn the_test_event_and_an_sns_envelope_are_understood() {
        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent",
            "Time": "2026-12-06T14:00:00.000Z", "Bucket": "doclink-logs"});
        assert_eq!(parse(&test.to_string()), Ok(Notification::Test));
        let inner = json!({"Records": [record("ObjectCreated:Put", "x.gz")]}).to_string();
        let wrapped = json!({"Type": "Notification", "MessageId": "m", "Message": inner});
        let Ok(Notification::Created(objects)) = parse(&wrapped.to_string()) else {
            panic!("not created");
        };
        assert_eq!(objects[0].key, "x.gz");
    }

    #[test]
    fn a_body_that_is_not_a_notification_names_what_is_wrong() {
        let mut no_bucket = record("ObjectCreated:Put", "x.gz");
        no_bucket["s3"]["bucket"]
            .as_object_mut()
            .unwrap()
            .remove("name");
        let cases = [
            ("not json".to_string(), "not JSON"),
            (json!({"Foo": 1}).to_string(), "Records is missing"),
            (json!({"Records": {}}).to_string(), "Records is not a list"),
            (
                json!({"Records": [no_bucket]}).to_string(),
                "Records[0].s3.bucket.name is missing",
            ),
            (
                json!({"Records": [record("ObjectCreated:Put", "%FF.gz")]}).to_string(),
                "Records[0].s3.object.key",
            ),
            (
                json!({"Records": [record("ObjectCreated:Put", "")]}).to_string(),
                "Records[0].s3.object.key",
            ),
            (
                json!({"Records": [{"s3": {}}]}).to_string(),
                "Records[0].eventName is missing",
            ),
            (
                json!({"Type": "Notification", "Message": "{"}).to_string(),
                "Message (in the SNS envelope)",
            ),
        ];
        for (body, named) in cases {
            match parse(&body) {
                Err(reason) => assert!(reason.contains(named), "{named}: {reason}"),
                Ok(other) => panic!("{named}: {other:?}"),
            }
        }
    }
}
