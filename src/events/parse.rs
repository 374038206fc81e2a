//! What one SQS message body says: which secrets changed, nothing of interest, or garbage.
//!
//! Pure functions over the body text. They never panic, and a [`Parsed::Malformed`] reason
//! never quotes the body: a message can carry anything, secret values included (an
//! `UpdateSecret` request's parameters, a misrouted payload), so reasons name only the
//! body's size, a position, and the contract's own field names.

use serde_json::{Map, Value};

/// The largest body parsed. An EventBridge event is at most 256 KiB, so anything larger
/// was not put on the queue by EventBridge (SQS itself now accepts up to 1 MiB).
pub const MAX_BODY: usize = 256 * 1024;

/// Longer "secret ids" are not ids (an ARN is at most 2048 characters) and are ignored.
const MAX_ID: usize = 2048;

/// `source` of Secrets Manager events.
pub const SOURCE: &str = "aws.secretsmanager";
/// `detail-type` of CloudTrail records of Secrets Manager API calls.
pub const API_CALL: &str = "AWS API Call via CloudTrail";
/// `detail-type` of CloudTrail records of events Secrets Manager raises itself.
pub const SERVICE_EVENT: &str = "AWS Service Event via CloudTrail";
/// API calls that change a secret's current value (or may: `UpdateSecret` without a new
/// value only changes metadata, and reading fresh then finds nothing new).
pub const API_CALL_EVENTS: [&str; 5] = [
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "RestoreSecret",
];
/// Service events after which a secret has a new current value.
pub const SERVICE_EVENTS: [&str; 1] = ["RotationSucceeded"];

/// The outcome of parsing one message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A secret-change event; the secret ids (names or ARNs, in the order the event carries
    /// them, without duplicates) that name the changed secret.
    Secrets(Vec<String>),
    /// A well-formed event (or SNS message) that is not about a secret change: another
    /// service, another event name, a failed API call.
    Unrelated,
    /// Not something EventBridge (or SNS) delivers; the reason never quotes the body.
    Malformed(String),
}

/// Parses an SQS message body: an EventBridge event delivered directly, or wrapped in an
/// SNS notification (`"Type": "Notification"`, the event JSON as a string in `Message`).
pub fn parse(body: &str) -> Parsed {
    if body.len() > MAX_BODY {
        return Parsed::Malformed(format!(
            "the body has {} bytes, more than the {} KiB an EventBridge event can have",
            body.len(),
            MAX_BODY / 1024
        ));
    }
    let obj = match object("the body", body) {
        Ok(obj) => obj,
        Err(reason) => return Parsed::Malformed(reason),
    };
    match obj.get("Type").and_then(Value::as_str) {
        Some("Notification") => {
            let Some(message) = obj.get("Message").and_then(Value::as_str) else {
                return Parsed::Malformed(
                    "an SNS notification without a `Message` string".to_string(),
                );
            };
            match object("the SNS notification's `Message`", message) {
                Ok(event_obj) => event(&event_obj),
                Err(reason) => Parsed::Malformed(reason),
            }
        }
        // The handshake SNS sends to a new subscriber: nothing to act on.
        Some("SubscriptionConfirmation" | "UnsubscribeConfirmation") => Parsed::Unrelated,
        _ => event(&obj),
    }
}

/// `text` as a JSON object, or why not (position only, never content).
fn object(what: &str, text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(format!("{what} is JSON but not an object")),
        Err(e) => {
            let kind = match e.classify() {
                serde_json::error::Category::Eof => "is truncated JSON",
                _ => "is not valid JSON",
            };
            // serde_json's own message can quote input (`invalid type: string "…"`); the
            // position is enough to find the problem in the queue's copy.
            Err(format!(
                "{what} ({} bytes) {kind} (at line {}, column {})",
                text.len(),
                e.line(),
                e.column()
            ))
        }
    }
}

/// An EventBridge event object.
fn event(obj: &Map<String, Value>) -> Parsed {
    let source = obj.get("source").and_then(Value::as_str);
    let detail_type = obj.get("detail-type").and_then(Value::as_str);
    let (Some(source), Some(detail_type)) = (source, detail_type) else {
        return Parsed::Malformed(
            "not an EventBridge event: no `source` and `detail-type` strings".to_string(),
        );
    };
    if source != SOURCE {
        return Parsed::Unrelated;
    }
    let names: &[&str] = match detail_type {
        API_CALL => &API_CALL_EVENTS,
        SERVICE_EVENT => &SERVICE_EVENTS,
        _ => return Parsed::Unrelated,
    };
    let Some(detail) = obj.get("detail").and_then(Value::as_object) else {
        return Parsed::Malformed("a Secrets Manager event without a `detail` object".to_string());
    };
    let Some(event_name) = detail.get("eventName").and_then(Value::as_str) else {
        return Parsed::Malformed(
            "a Secrets Manager event without a `detail.eventName` string".to_string(),
        );
    };
    let Some(event_name) = names.iter().find(|n| **n == event_name) else {
        return Parsed::Unrelated;
    };
    // CloudTrail records refused calls too (AccessDenied, ResourceNotFound, …): nothing
    // changed.
    if detail.get("errorCode").is_some_and(|v| !v.is_null()) {
        return Parsed::Unrelated;
    }
    let mut ids: Vec<String> = Vec::new();
    for path in [
        ["requestParameters", "secretId"],
        ["responseElements", "arn"],
        // Events before February 2024 spelled it `aRN`.
        ["responseElements", "aRN"],
        ["additionalEventData", "SecretId"],
    ] {
        let id = detail
            .get(path[0])
            .and_then(|v| v.get(path[1]))
            .and_then(Value::as_str);
        if let Some(id) = id.filter(|id| is_id(id)) {
            if !ids.iter().any(|seen| seen == id) {
                ids.push(id.to_string());
            }
        }
    }
    if ids.is_empty() {
        return Parsed::Malformed(format!(
            "a {event_name} event that names no secret (no detail.requestParameters.secretId, \
             detail.responseElements.arn or aRN, or detail.additionalEventData.SecretId)"
        ));
    }
    Parsed::Secrets(ids)
}

/// Whether a string can be a secret name or ARN.
fn is_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_ID && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The `RotationSucceeded` event of the AWS Database Blog post "Multi-user secrets
    /// rotation for Amazon RDS" (aws.amazon.com/blogs/database), verbatim.
    const AWS_BLOG_ROTATION_SUCCEEDED: &str = r#"{
    "version": "0",
    "id": "dd5fd657-7361-f5d2-0c0f-0fe27390611b",
    "detail-type": "AWS Service Event via CloudTrail",
    "source": "aws.secretsmanager",
    "account": "accountid",
    "time": "2021-08-13T19:17:16Z",
    "region": "us-west-2",
    "resources": [],
    "detail": {
        "eventVersion": "1.08",
        "userIdentity": {
            "accountId": "accountid",
            "invokedBy": "secretsmanager.amazonaws.com"
        },
        "eventTime": "2021-08-13T19:17:16Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "RotationSucceeded",
        "awsRegion": "us-west-2",
        "sourceIPAddress": "secretsmanager.amazonaws.com",
        "userAgent": "secretsmanager.amazonaws.com",
        "requestParameters": null,
        "responseElements": null,
        "additionalEventData": {
            "SecretId": "arn:aws:secretsmanager:us-west-2:accountid:secret:Appuser-pyodbc-WoDpmU"
        },
        "requestID": "Rotation-arn:aws:secretsmanager:us-west-2:accountid:secret:Appuser-pyodbc-WoDpmU-7ac47c8c-f328-423b-9698-6926dd1f293e",
        "eventID": "638c6d2d-e098-4100-a3e0-a4b7b87e5b92",
        "readOnly": false,
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "recipientAccountId": "accountid",
        "eventCategory": "Management"
    }
}"#;

    /// A `PutSecretValue` event as it arrives on an SQS queue from EventBridge: the
    /// "Default AWS SQS Message Schema" of the External Secrets Reloader documentation,
    /// verbatim.
    const PUT_SECRET_VALUE: &str = r#"{
  "version": "0",
  "id": "79f04f06-924c-7a00-b3f8-e532167d23e0",
  "detail-type": "AWS API Call via CloudTrail",
  "source": "aws.secretsmanager",
  "account": "123456789012",
  "time": "2024-10-23T12:26:45Z",
  "region": "eu-west-1",
  "resources": [],
  "detail": {
    "eventVersion": "1.09",
    "eventTime": "2024-10-23T12:26:45Z",
    "eventName": "PutSecretValue",
    "awsRegion": "eu-west-1",
    "userAgent": "Mozilla/5.0",
    "requestParameters": {
      "secretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/test-secret-123456",
      "clientRequestToken": "4d383ea9-084a-49c9-8722-cbfb0f25c456"
    },
    "responseElements": {
      "arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/test-secret-123456"
    },
    "eventID": "12345678-1234-1234-1234-123456789012",
    "readOnly": false,
    "eventType": "AwsApiCall",
    "managementEvent": true,
    "recipientAccountId": "123456789012",
    "eventCategory": "Management",
    "tlsDetails": {
      "tlsVersion": "TLSv1.3",
      "cipherSuite": "TLS_AES_128_GCM_SHA256",
      "clientProvidedHostHeader": "secretsmanager.eu-west-1.amazonaws.com"
    }
  }
}"#;

    const PUT_ARN: &str =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/test-secret-123456";

    fn secrets(ids: &[&str]) -> Parsed {
        Parsed::Secrets(ids.iter().map(|s| s.to_string()).collect())
    }

    fn reason(p: Parsed) -> String {
        match p {
            Parsed::Malformed(r) => r,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// An event of `detail-type` with `detail`.
    fn envelope(detail_type: &str, detail: Value) -> String {
        json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type,
            "source": "aws.secretsmanager",
            "account": "111122223333",
            "time": "2024-03-01T10:00:00Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": detail,
        })
        .to_string()
    }

    /// `event` as SNS delivers it to an SQS subscriber without raw message delivery.
    fn sns(event: &str) -> String {
        json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-1:111122223333:secret-changes",
            "Message": event,
            "Timestamp": "2024-03-01T10:00:01.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+...",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-west-1:111122223333:secret-changes:c9135db0"
        })
        .to_string()
    }

    #[test]
    fn documented_rotation_succeeded() {
        assert_eq!(
            parse(AWS_BLOG_ROTATION_SUCCEEDED),
            secrets(&["arn:aws:secretsmanager:us-west-2:accountid:secret:Appuser-pyodbc-WoDpmU"])
        );
    }

    #[test]
    fn documented_put_secret_value_collapses_equal_ids() {
        // requestParameters.secretId and responseElements.arn are the same ARN: one id.
        assert_eq!(parse(PUT_SECRET_VALUE), secrets(&[PUT_ARN]));
    }

    #[test]
    fn sns_wrapped_events() {
        assert_eq!(parse(&sns(PUT_SECRET_VALUE)), secrets(&[PUT_ARN]));
        assert_eq!(
            parse(&sns(AWS_BLOG_ROTATION_SUCCEEDED)),
            parse(AWS_BLOG_ROTATION_SUCCEEDED)
        );
        let confirm = json!({"Type": "SubscriptionConfirmation", "Message": "You have chosen…"});
        assert_eq!(parse(&confirm.to_string()), Parsed::Unrelated);
        // Only one level is unwrapped: SNS does not nest notifications.
        assert!(matches!(
            parse(&sns(&sns(PUT_SECRET_VALUE))),
            Parsed::Malformed(_)
        ));
    }

    #[test]
    fn every_api_call_event_by_name_and_arn() {
        for name in API_CALL_EVENTS {
            let body = envelope(
                API_CALL,
                json!({
                    "eventSource": "secretsmanager.amazonaws.com",
                    "eventName": name,
                    "requestParameters": {"secretId": "docspace/backup-s3"},
                    "responseElements": {
                        "arn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:docspace/backup-s3-AbCdEf"
                    }
                }),
            );
            assert_eq!(
                parse(&body),
                secrets(&[
                    "docspace/backup-s3",
                    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:docspace/backup-s3-AbCdEf"
                ]),
                "{name}"
            );
        }
    }

    #[test]
    fn arn_spelled_with_capitals_before_february_2024() {
        let body = envelope(
            API_CALL,
            json!({
                "eventName": "UpdateSecret",
                "requestParameters": {"secretId": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:oauth/google"},
                "responseElements": {
                    "aRN": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:oauth/google-Q1w2E3",
                    "name": "oauth/google"
                }
            }),
        );
        assert_eq!(
            parse(&body),
            secrets(&[
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:oauth/google",
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:oauth/google-Q1w2E3",
            ])
        );
        // `aRN` alone is enough.
        let body = envelope(
            API_CALL,
            json!({"eventName": "RotateSecret", "responseElements": {"aRN": "x-Q1w2E3"}}),
        );
        assert_eq!(parse(&body), secrets(&["x-Q1w2E3"]));
    }

    #[test]
    fn unrelated_events() {
        let cases = [
            // Reads and other API calls.
            envelope(
                API_CALL,
                json!({"eventName": "GetSecretValue", "requestParameters": {"secretId": "a"}}),
            ),
            envelope(
                API_CALL,
                json!({"eventName": "DeleteSecret", "requestParameters": {"secretId": "a"}}),
            ),
            // Service events other than a successful rotation.
            envelope(
                SERVICE_EVENT,
                json!({"eventName": "RotationFailed", "additionalEventData": {"SecretId": "a"}}),
            ),
            // A service-event name under the API-call detail type, and vice versa.
            envelope(
                API_CALL,
                json!({"eventName": "RotationSucceeded", "additionalEventData": {"SecretId": "a"}}),
            ),
            envelope(
                SERVICE_EVENT,
                json!({"eventName": "PutSecretValue", "requestParameters": {"secretId": "a"}}),
            ),
            // Another detail type of Secrets Manager.
            envelope(
                "AWS Secrets Manager Secret Label Updated",
                json!({"SecretId": "a"}),
            ),
            // A refused call changed nothing.
            envelope(
                API_CALL,
                json!({
                    "eventName": "PutSecretValue",
                    "errorCode": "AccessDenied",
                    "requestParameters": {"secretId": "a"}
                }),
            ),
            // Another service.
            json!({
                "source": "aws.ec2",
                "detail-type": "EC2 Instance State-change Notification",
                "detail": {"instance-id": "i-1", "state": "running"}
            })
            .to_string(),
        ];
        for body in cases {
            assert_eq!(parse(&body), Parsed::Unrelated, "{body}");
        }
        // A null errorCode is no error.
        let body = envelope(
            API_CALL,
            json!({"eventName": "PutSecretValue", "errorCode": null, "requestParameters": {"secretId": "a"}}),
        );
        assert_eq!(parse(&body), secrets(&["a"]));
    }

    #[test]
    fn every_id_field_is_read_and_odd_ones_are_skipped() {
        let body = envelope(
            SERVICE_EVENT,
            json!({
                "eventName": "RotationSucceeded",
                "requestParameters": {"secretId": ""},
                "responseElements": {"arn": 42, "aRN": "b"},
                "additionalEventData": {"SecretId": "c"}
            }),
        );
        assert_eq!(parse(&body), secrets(&["b", "c"]));
        let body = envelope(
            SERVICE_EVENT,
            json!({
                "eventName": "RotationSucceeded",
                "requestParameters": {"secretId": "x".repeat(MAX_ID + 1)},
                "additionalEventData": {"SecretId": "line\nbreak"}
            }),
        );
        assert!(matches!(parse(&body), Parsed::Malformed(_)));
    }

    #[test]
    fn malformed_bodies_are_described_without_their_content() {
        const PLANT: &str = "sk-PLANTED-secret-value-4242";
        let truncated = &PUT_SECRET_VALUE[..PUT_SECRET_VALUE.len() / 2];
        let truncated = format!("{truncated}{PLANT}");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "is truncated JSON"),
            (truncated, "is truncated JSON"),
            (format!("{PLANT} garbage"), "is not valid JSON"),
            (
                format!("{{\"a\": \"{PLANT}\"}} trailing"),
                "is not valid JSON",
            ),
            (format!("[\"{PLANT}\"]"), "not an object"),
            (format!("\"{PLANT}\""), "not an object"),
            (
                json!({"message": PLANT}).to_string(),
                "not an EventBridge event",
            ),
            (
                json!({"source": "aws.secretsmanager", "detail-type": API_CALL, "detail": PLANT})
                    .to_string(),
                "without a `detail` object",
            ),
            (
                envelope(API_CALL, json!({"eventName": 7, "note": PLANT})),
                "without a `detail.eventName`",
            ),
            (
                envelope(
                    API_CALL,
                    json!({"eventName": "PutSecretValue", "requestParameters": {"secretString": PLANT}}),
                ),
                "a PutSecretValue event that names no secret",
            ),
            (
                json!({"Type": "Notification", "Message": {"x": PLANT}}).to_string(),
                "without a `Message` string",
            ),
            (
                json!({"Type": "Notification", "Message": format!("{{{PLANT}")}).to_string(),
                "the SNS notification's `Message`",
            ),
            (
                json!({"Type": "Notification", "Message": format!("[\"{PLANT}\"]")}).to_string(),
                "JSON but not an object",
            ),
            (
                format!("{}{PLANT}", "[".repeat(100_000)),
                "is not valid JSON",
            ),
            (
                format!("{}{PLANT}", " ".repeat(MAX_BODY)),
                "more than the 256 KiB",
            ),
        ];
        for (body, want) in cases {
            let r = reason(parse(&body));
            assert!(r.contains(want), "{r:?} does not say {want:?}");
            assert!(!r.contains("PLANTED"), "the reason quotes the body: {r}");
            assert!(r.len() < 300, "{r}");
        }
    }

    #[test]
    fn the_size_limit_is_inclusive() {
        // Exactly MAX_BODY bytes are parsed (and are valid JSON here).
        let pad = MAX_BODY - PUT_SECRET_VALUE.len();
        let body = format!("{PUT_SECRET_VALUE}{}", " ".repeat(pad));
        assert_eq!(body.len(), MAX_BODY);
        assert_eq!(parse(&body), secrets(&[PUT_ARN]));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_quotes(body in ".{0,400}") {
            if let Parsed::Malformed(r) = parse(&body) {
                // Any quote of the body would be at least this long somewhere in it.
                if body.len() >= 12 {
                    proptest::prop_assert!(!r.contains(&body));
                }
            }
        }

        #[test]
        fn mutated_events_never_panic(cut in 0usize..2000, junk in "[{}\\[\\]\":,a-z0-9 ]{0,20}") {
            let base = PUT_SECRET_VALUE;
            let cut = cut.min(base.len());
            let cut = (0..=cut).rev().find(|i| base.is_char_boundary(*i)).unwrap_or(0);
            let body = format!("{}{junk}{}", &base[..cut], &base[cut..]);
            let _ = parse(&body);
            let _ = parse(&sns(&body));
        }
    }
}
