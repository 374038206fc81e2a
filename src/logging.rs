//! Structured logs through `tracing`, to stderr: text for people, JSON for collectors.
//!
//! Library logs are capped whatever `RUST_LOG` says ([`CAPS`]): at debug and trace the
//! AWS SDK, rustify/vaultrs and the HTTP stacks log requests and answers — the
//! web-identity token sent to STS, Vault tokens, secret values. The caps are a second,
//! fixed filter over the configurable one, and an event must pass both, so no
//! `RUST_LOG` directive lifts them, however specific (an `EnvFilter` directive for a
//! longer target, a span or a field would win over a cap written into the same
//! filter). Setting [`UNCAP_ENV`] to `1` removes them, with a warning, for debugging a
//! library on a machine whose logs may hold secrets.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

/// Without `RUST_LOG`: libraries that log expected 403/404 answers at ERROR level
/// (vaultrs through rustify) and chatty clients.
const QUIET: &str =
    "rustify=off,vaultrs=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn,reqwest=warn";

/// The most a library may log, by target prefix (prefixes match as in `RUST_LOG`:
/// `aws_` covers `aws_config`, `aws_smithy_*`, `aws_sdk_*`, `aws_sigv4`, …; `hyper`
/// covers `hyper_util` and `hyper_rustls`). rustify is off: it logs expected 403/404s
/// at ERROR, and request bodies below.
pub const CAPS: &[(&str, LevelFilter)] = &[
    ("aws_", LevelFilter::WARN),
    ("rustify", LevelFilter::OFF),
    ("vaultrs", LevelFilter::WARN),
    ("hyper", LevelFilter::WARN),
    ("reqwest", LevelFilter::WARN),
    ("h2", LevelFilter::WARN),
    ("rustls", LevelFilter::WARN),
    ("tower", LevelFilter::WARN),
];

/// Set to `1` (or `true`) to lift [`CAPS`]; `authsync` then warns at start that its
/// logs may hold secrets.
pub const UNCAP_ENV: &str = "AUTHSYNC_UNCAP_LIBRARY_LOGS";

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level` — within
/// [`CAPS`], unless [`UNCAP_ENV`] is set.
pub fn init(format: LogFormat, level: LogLevel) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},{QUIET}", level.as_str())));
    let uncapped = uncap_requested(std::env::var(UNCAP_ENV).ok().as_deref());
    let subscriber = build(
        format,
        filter,
        !uncapped,
        std::io::stderr,
        std::io::stderr().is_terminal(),
    );
    // Already installed (tests): keep the first one.
    if subscriber.try_init().is_ok() && uncapped {
        tracing::warn!(
            env = UNCAP_ENV,
            "library logs are NOT capped: at debug and trace level the AWS SDK, vaultrs and the HTTP clients log requests and answers, including tokens and secret values; treat these logs as secret and unset {UNCAP_ENV} when done"
        );
    }
}

fn uncap_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
}

/// The fixed filter of [`CAPS`]; everything else passes to the configurable filter.
fn caps() -> Targets {
    CAPS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    )
}

fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    capped: bool,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let caps = capped.then(caps);
    match format {
        LogFormat::Text => Box::new(builder.with_target(false).finish().with(caps)),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish()
                .with(caps),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Capture {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Logs one event per level for library targets and authsync's own, under `filter`.
    fn emit(filter: &str, capped: bool) -> String {
        let out = Capture::default();
        let subscriber = build(
            LogFormat::Json,
            EnvFilter::new(filter),
            capped,
            out.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "aws-trace");
            tracing::debug!(target: "aws_sdk_sts::operation", "aws-debug");
            tracing::warn!(target: "aws_config::imds", "aws-warn");
            tracing::error!(target: "rustify::endpoint", "rustify-error");
            tracing::debug!(target: "vaultrs::api", "vaultrs-debug");
            tracing::trace!(target: "hyper_util::client", "hyper-util-trace");
            tracing::debug!(target: "reqwest::connect", "reqwest-debug");
            tracing::trace!(target: "h2::codec", "h2-trace");
            tracing::debug!(target: "rustls::client", "rustls-debug");
            tracing::trace!(target: "authsync::sync", "own-trace");
            tracing::info!(target: "authsync::daemon", "own-info");
        });
        out.text()
    }

    #[test]
    fn rust_log_cannot_lift_the_caps() {
        for filter in [
            "trace",
            "info,aws_smithy_runtime=trace,aws_sdk_sts::operation=trace,rustify=trace",
            "info,aws_smithy_runtime::client::orchestrator=trace,hyper_util::client=trace,vaultrs::api=trace",
            "[{body}]=trace,trace",
        ] {
            let out = emit(filter, true);
            for hidden in [
                "aws-trace",
                "aws-debug",
                "rustify-error",
                "vaultrs-debug",
                "hyper-util-trace",
                "reqwest-debug",
                "h2-trace",
                "rustls-debug",
            ] {
                assert!(!out.contains(hidden), "{filter}: {hidden} logged:\n{out}");
            }
            assert!(out.contains("aws-warn"), "{filter}: warnings still pass:\n{out}");
            assert!(out.contains("own-info"), "{filter}:\n{out}");
        }
        // authsync's own trace follows RUST_LOG.
        assert!(emit("trace", true).contains("own-trace"));
        assert!(!emit("info", true).contains("own-trace"));
    }

    #[test]
    fn the_opt_out_lifts_them() {
        let out = emit("trace", false);
        for shown in [
            "aws-trace",
            "rustify-error",
            "hyper-util-trace",
            "own-trace",
        ] {
            assert!(out.contains(shown), "{shown} missing:\n{out}");
        }
        assert!(uncap_requested(Some("1")));
        assert!(uncap_requested(Some("TRUE")));
        for off in [None, Some(""), Some("0"), Some("no")] {
            assert!(!uncap_requested(off), "{off:?}");
        }
    }
}
