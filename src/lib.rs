//! authsync keeps the authorization keys of ONLYOFFICE portals (Settings → Integration →
//! Third-party services) in sync with the secret stores where those credentials live.
//!
//! The data flow, top to bottom:
//!
//! | step | module |
//! |---|---|
//! | read and validate the config | [`config`] (with [`catalog`] for names, [`secret`] for secret settings) |
//! | expand `[[map]]` blocks into (portal, service) targets | [`mapping`] |
//! | read each referenced secret once | [`resolve`] over [`sources`] (`vault`, `aws`, `files`) |
//! | diff desired against the portal's values | [`plan`] (values shown as [`fingerprint`]s) |
//! | push what differs, read it back | [`sync`] over [`portal`] |
//! | print and log the outcome | [`report`], [`logging`] |
//!
//! | remember what was confirmed where | [`state`] |
//! | react to rotation events from an SQS queue | [`events`] |
//! | show every portal and service's state at a glance (`/status`, `authsync status`) | [`status`] |
//!
//! [`cli`] and [`commands`] are the command line; [`daemon`] is `authsync run`, with
//! [`server`] (HTTP endpoints), [`metrics`] and [`notify`] (systemd).

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
