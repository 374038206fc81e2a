//! Rotation events: Secrets Manager changes that EventBridge routes to an SQS queue start
//! a cycle for the targets that use the changed secret, reading it fresh.
//!
//! * [`config`]: `events = { queue_url = … }` of an AWS source.
//! * [`parse`]: an SQS message body → the secret ids it names (pure, never panics).
//! * [`matching`]: secret ids (names or ARNs) → the configured paths they name.
//! * [`consumer`]: the long-polling loop that hands the daemon [`EventBatch`]es.

pub mod config;
pub mod consumer;
pub mod matching;
pub mod parse;

pub use config::EventsConfig;
pub use consumer::{
    check_queue, queues, referenced_paths, spawn, EventBatch, EventConsumer, QueueStatus,
};
pub use parse::Parsed;
