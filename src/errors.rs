//! Small helpers shared by the clients for turning errors into one-line messages.

use std::path::Path;

/// An error and its causes, `outer: inner: innermost` (transport errors keep the useful
/// part — "connection refused" — in a source). Only for errors that cannot carry a
/// secret value: never for decoding errors of secret-bearing responses.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        msg.push_str(": ");
        msg.push_str(&inner.to_string());
        cur = inner.source();
    }
    msg
}

/// A PEM CA certificate file for a private CA (`ca_cert` settings).
pub fn load_ca(path: &Path) -> Result<reqwest::Certificate, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read ca_cert {}: {e}", path.display()))?;
    reqwest::Certificate::from_pem(&pem)
        .map_err(|e| format!("ca_cert {} is not a PEM certificate: {e}", path.display()))
}
