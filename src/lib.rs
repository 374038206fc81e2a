//! authsync keeps the authorization keys of ONLYOFFICE portals (Settings → Integration →
//! Third-party services) in sync with the secret stores where those credentials live.
//!
//! The data flow, top to bottom:
//!
//! | step | module |
//! |---|---|
//! | read and validate the config | [`config`] (`load`, `checks`, `reference`; [`catalog`] for service names, [`secret`] for secret settings) |
//! | expand `[[map]]` blocks into (portal, service) targets | [`mapping`] |
//! | read each referenced secret once | [`resolve`] over [`sources`]: one `Source` trait, one folder per store (`vault/`, `aws/`, `files/`, each with its config and `build()`), an in-memory `fake` |
//! | diff desired against the portal's values | [`plan`] (values shown as [`fingerprint`]s) |
//! | push what differs, read it back, restore on refusal, stage waves | [`sync`] (`push`, `rollout`, `health`, `record`) over [`portal`]: one `Portal` trait, `docspace` and `workspace` dialects over one `transport`, an in-memory `fake` |
//! | say what happened | [`report`] (typed outcomes), [`failure`] (one failure type: kind + scrubbed message), [`logging`] |
//! | remember what was confirmed where, and what is held or halted | [`state`] |
//! | show every portal and service's state at a glance (`/status`, `authsync status`) | [`status`] |
//!
//! What starts cycles: [`daemon`] (`authsync run`: schedule, `POST /trigger`, rotation
//! [`events`] from SQS, rollout soak; one cancellation token for shutdown, a
//! [`liveness`] heartbeat), or one-shot [`commands`] parsed by [`cli`]. Around the daemon:
//! [`server`] (HTTP endpoints), [`metrics`] (Prometheus) and [`notify`] (systemd).
//! [`errors`] turns error chains into one-line messages for the clients.

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod errors;
pub mod events;
pub mod failure;
pub mod fingerprint;
pub mod liveness;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod portal;
pub mod report;
pub mod resolve;
pub mod secret;
pub mod server;
pub mod sources;
pub mod state;
pub mod status;
pub mod sync;
