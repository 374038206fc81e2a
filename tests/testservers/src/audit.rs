//! OpenBao's file audit device, read back by tests to count the requests the server saw.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::OpenBao;

/// The audit device's path (`sys/audit/<name>`).
const AUDIT_DEVICE: &str = "testservers";
/// The audit log's file name inside the server's temp dir.
const AUDIT_FILE: &str = "audit.log";
/// A request header that every request made by this crate's helpers carries. OpenBao is told
/// to write it (unhashed) into the audit log, so [`AuditEntry::harness`] can tell the
/// harness's own requests from the client's.
pub(crate) const HARNESS_HEADER: &str = "X-Testservers-Harness";

/// One `"type":"request"` entry of OpenBao's audit log.
///
/// Paths are as OpenBao routes them: no leading `/`, no `v1/`, no query string, the mount
/// included (`secret/data/x`, `secret/metadata/x`, `kv1/x`, `sys/internal/ui/mounts/secret/x`).
/// A list (`LIST` or `GET ...?list=true`) keeps the trailing `/` of the request
/// (`secret/metadata/portals/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// E.g. `secret/data/portals/a`.
    pub path: String,
    /// OpenBao's logical operation: `read` (GET), `list` (LIST or `GET ?list=true`),
    /// `create` (POST/PUT to a new KV path), `update` (POST/PUT otherwise), `delete`, ...
    pub operation: String,
    /// Whether the request was made by one of this crate's helpers ([`OpenBao::request`] and
    /// everything built on it), not by the code under test.
    pub harness: bool,
    /// The error OpenBao logged with the request (e.g. `"permission denied"` for a bad
    /// token or a policy that does not allow it), `None` if it logged none. Errors of the
    /// backend itself (e.g. 404s) are only in the response entries and are not reported here.
    pub error: Option<String>,
}

/// OpenBao's file audit log, from [`OpenBao::enable_audit`].
///
/// OpenBao writes a request's audit entry before it handles the request and its response
/// entry before it answers, so once a client has its response the entry is in the file.
/// Call [`AuditLog::settle`] anyway if requests may still be in flight (e.g. a client that
/// runs in the background).
///
/// The log lives in the server's temp dir: it is gone when the [`OpenBao`] is dropped, and
/// [`OpenBao::restart`] starts a server without the audit device (call `enable_audit` again).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// Byte offset: only entries from here on are reported.
    mark: u64,
}

impl OpenBao {
    /// Enables a file audit device (`PUT /v1/sys/audit/testservers`, type `file`, writing to
    /// `audit.log` in the server's temp dir) if it is not enabled yet, and returns the log,
    /// marked at its current end: the audit-enabling requests and everything before are not
    /// reported. Call [`AuditLog::mark`] again after the test's own setup.
    ///
    /// OpenBao (2.7 at least) refuses API-created audit devices unless the server
    /// configuration sets `unsafe_allow_api_audit_creation = true`, which
    /// [`OpenBao::start`] does.
    pub async fn enable_audit(&self) -> AuditLog {
        let path = self.dir.path().join(AUDIT_FILE);
        let devices = self.root_request(Method::GET, "sys/audit", None).await;
        let name = format!("{AUDIT_DEVICE}/");
        let enabled = devices
            .get(&name)
            .or_else(|| devices["data"].get(&name))
            .is_some();
        if !enabled {
            // Log the harness marker header in clear text, so entries can be told apart.
            self.root_request(
                Method::PUT,
                &format!("sys/config/auditing/request-headers/{HARNESS_HEADER}"),
                Some(json!({ "hmac": false })),
            )
            .await;
            self.root_request(
                Method::PUT,
                &format!("sys/audit/{AUDIT_DEVICE}"),
                Some(json!({
                    "type": "file",
                    "options": { "file_path": path.to_string_lossy() },
                })),
            )
            .await;
        }
        let mut log = AuditLog { path, mark: 0 };
        log.mark();
        log
    }
}

impl AuditLog {
    /// The audit log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remembers the current end of the log: later calls only report entries written after
    /// this. Call it once the test's setup is done (and, if requests may be in flight,
    /// after [`AuditLog::settle`]).
    pub fn mark(&mut self) {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        self.mark = complete_len(&bytes) as u64;
    }

    /// The request entries written since the mark, oldest first (the audit log's response
    /// entries are skipped). Includes the harness's own requests made after the mark; filter
    /// on [`AuditEntry::harness`] to leave them out.
    pub fn requests(&self) -> Vec<AuditEntry> {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let start = usize::try_from(self.mark)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = complete_len(&bytes).max(start);
        parse_requests(&String::from_utf8_lossy(&bytes[start..end]))
    }

    /// How many request entries since the mark have a path containing `path_contains` (`""`
    /// matches all) and, if given, the operation `operation` (`"read"`, `"list"`,
    /// `"create"`, `"update"`, `"delete"`, ...). Note that `secret/data/a` also matches
    /// `secret/data/ab`; use [`AuditLog::requests`] for exact matches.
    pub fn count(&self, path_contains: &str, operation: Option<&str>) -> usize {
        self.requests()
            .iter()
            .filter(|e| e.path.contains(path_contains))
            .filter(|e| operation.is_none_or(|op| e.operation == op))
            .count()
    }

    /// Waits until the log file has not grown for 100 ms (at most 2 s), for requests that
    /// may still be in flight.
    pub async fn settle(&self) {
        let started = Instant::now();
        let mut last = file_len(&self.path);
        let mut stable_since = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let len = file_len(&self.path);
            if len != last {
                last = len;
                stable_since = Instant::now();
            } else if stable_since.elapsed() >= Duration::from_millis(100) {
                return;
            }
        }
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The length of `bytes` up to and including its last newline (a line being written is not
/// complete yet).
fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

fn parse_requests(text: &str) -> Vec<AuditEntry> {
    let header = HARNESS_HEADER.to_ascii_lowercase();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["type"] == "request")
        .map(|e| {
            let req = &e["request"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            AuditEntry {
                path: text(&req["path"]),
                operation: text(&req["operation"]),
                harness: !req["headers"][&header].is_null(),
                error: e["error"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_entries_only() {
        let log = concat!(
            r#"{"type":"request","request":{"operation":"read","path":"secret/data/x","headers":{"x-testservers-harness":["1"]}}}"#,
            "\n",
            r#"{"type":"response","request":{"operation":"read","path":"secret/data/x"}}"#,
            "\n",
            r#"{"type":"request","error":"permission denied","request":{"operation":"list","path":"secret/metadata/"}}"#,
            "\n",
            "not json\n",
        );
        assert_eq!(
            parse_requests(log),
            vec![
                AuditEntry {
                    path: "secret/data/x".into(),
                    operation: "read".into(),
                    harness: true,
                    error: None,
                },
                AuditEntry {
                    path: "secret/metadata/".into(),
                    operation: "list".into(),
                    harness: false,
                    error: Some("permission denied".into()),
                },
            ]
        );
    }

    #[test]
    fn incomplete_last_line_is_ignored() {
        assert_eq!(complete_len(b"a\nb\nc"), 4);
        assert_eq!(complete_len(b"abc"), 0);
        assert_eq!(complete_len(b"a\n"), 2);
    }
}
