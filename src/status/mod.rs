//! What `GET /status`, `GET /status.json` and `authsync status` show: per portal and
//! service the state of the last attempt, with its wave, times and scrubbed error; per
//! source its health; the last and next cycle and the events queues.
//!
//! One model serves all three outputs, so the page, the JSON and the terminal always
//! agree. It is built from the state file and the config alone (plus what only a
//! running daemon knows: the next cycle, the events queues), which is why `authsync
//! status` works for CronJob and timer deployments without a daemon.
//!
//! | file | concern |
//! |---|---|
//! | [`model`] | the [`Snapshot`] (everything, built once per cycle), filters and the [`Status`] view (the `/status.json` schema), exit statuses |
//! | [`scrub`] | removing secret paths and fingerprints from error texts |
//! | [`html`] | the server-rendered page (plain HTML and CSS, no script) |
//! | [`text`] | the terminal table of `authsync status` |
//!
//! Nothing here can show a value: the state file holds none. Secret paths (which error
//! texts quote, as the logs do) and fingerprints are scrubbed when the snapshot is built.

pub mod html;
pub mod model;
pub mod scrub;
pub mod text;

pub use model::{
    CellState, DaemonStatus, EventsQueue, Filter, FilterError, Snapshot, Status, Timestamp,
};
