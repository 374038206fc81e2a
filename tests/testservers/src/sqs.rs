//! SQS on the same moto server: queues and messages for the rotation-event tests.
//!
//! moto speaks the SQS JSON protocol (`X-Amz-Target: AmazonSQS.<Action>`), as the Rust SDK
//! does. Queue URLs look like `http://127.0.0.1:PORT/123456789012/NAME`.

use serde_json::{json, Map, Value};

use crate::{parse_body, Moto};

/// How many messages a queue holds (SQS's approximate counts, exact on moto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// `ApproximateNumberOfMessages`: waiting to be received.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: received, not deleted, inside their
    /// visibility timeout.
    pub in_flight: u64,
}

impl QueueCounts {
    /// Every message still on the queue.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight
    }
}

impl Moto {
    /// Calls SQS action `action` (e.g. `"SendMessage"`) with JSON `body`; returns the status
    /// and the response body. Panics only when the server cannot be reached. Errors come
    /// back as 400 with `{"__type": "com.amazonaws.sqs#QueueDoesNotExist", ...}`.
    pub async fn sqs_request(&self, action: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("X-Amz-Target", format!("AmazonSQS.{action}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            // moto routes by the service in the credential scope; it checks no signature.
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("testservers: moto SQS {action} at {}: {e}", self.endpoint));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, parse_body(&text))
    }

    /// Like [`Moto::sqs_request`], but panics unless the status is 2xx.
    pub async fn sqs_call(&self, action: &str, body: Value) -> Value {
        let (status, resp) = self.sqs_request(action, body).await;
        if !(200..300).contains(&status) {
            panic!("testservers: moto SQS {action}: HTTP {status}: {resp}");
        }
        resp
    }

    /// Creates a standard queue (or returns the existing one's URL); returns its URL.
    pub async fn create_queue(&self, name: &str) -> String {
        self.create_queue_with(name, &[]).await
    }

    /// Creates a queue with SQS attributes, e.g. `[("VisibilityTimeout", "2")]`; returns
    /// its URL.
    pub async fn create_queue_with(&self, name: &str, attributes: &[(&str, &str)]) -> String {
        let attrs: Map<String, Value> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let mut body = json!({ "QueueName": name });
        if !attrs.is_empty() {
            body["Attributes"] = Value::Object(attrs);
        }
        let resp = self.sqs_call("CreateQueue", body).await;
        crate::field(&resp, "QueueUrl", "CreateQueue")
    }

    /// Sends one message; returns its MessageId.
    pub async fn send_message(&self, queue_url: &str, body: &str) -> String {
        let resp = self
            .sqs_call(
                "SendMessage",
                json!({ "QueueUrl": queue_url, "MessageBody": body }),
            )
            .await;
        crate::field(&resp, "MessageId", "SendMessage")
    }

    /// Deletes a queue and everything on it.
    pub async fn delete_queue(&self, queue_url: &str) {
        self.sqs_call("DeleteQueue", json!({ "QueueUrl": queue_url }))
            .await;
    }

    /// The queue's message counts (GetQueueAttributes).
    pub async fn queue_counts(&self, queue_url: &str) -> QueueCounts {
        let resp = self
            .sqs_call(
                "GetQueueAttributes",
                json!({
                    "QueueUrl": queue_url,
                    "AttributeNames": [
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible"
                    ]
                }),
            )
            .await;
        let number = |name: &str| -> u64 {
            resp["Attributes"][name]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    panic!("testservers: moto GetQueueAttributes: no {name} in {resp}")
                })
        };
        QueueCounts {
            visible: number("ApproximateNumberOfMessages"),
            in_flight: number("ApproximateNumberOfMessagesNotVisible"),
        }
    }
}

/// A `PutSecretValue` event as EventBridge delivers it to a queue (an `AWS API Call via
/// CloudTrail` record), naming the secret by `secret_id` (a name or, as real events do, an
/// ARN). `n` makes the event id and version id unique.
pub fn put_secret_value_event(secret_id: &str, n: usize) -> Value {
    json!({
        "version": "0",
        "id": format!("79f04f06-924c-7a00-b3f8-{n:012}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "time": "2026-12-02T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "PutSecretValue",
            "awsRegion": "us-east-1",
            "requestParameters": { "secretId": secret_id },
            "responseElements": { "arn": secret_id, "versionId": format!("v-{n}") },
            "eventType": "AwsApiCall"
        }
    })
}
