//! Status page cost at fleet scale: `cargo bench --bench status` (options after `--`:
//! `--portals N` (1000), `--services S` (20), `--runs R` (5)).
//!
//! Builds a config of N portals × S services and a state file in two shapes — mixed
//! (most portals in sync; some with a failed, held, halted, skipped or pending service;
//! a few unreachable) and the worst case (every service of every portal failing, each
//! error quoting its secret path) — then times, per shape: building the snapshot (once
//! per cycle in the daemon; every time for `authsync status`), and rendering the page
//! and the JSON with the default filter (what a page load costs), plus the JSON of
//! everything. Prints time per render and bytes, next to the targets: under 1 s and
//! under 1 MiB for the default filter.

use std::fmt::Write;
use std::time::{Duration, Instant};

use authsync::config::{self, Config};
use authsync::failure::FailureKind;
use authsync::state::{CycleRecord, LastResult, ServiceState, SourceRecord, State};
use authsync::status::{html, Filter, Snapshot};

const MIB: usize = 1024 * 1024;

struct Args {
    portals: usize,
    services: usize,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        portals: 1000,
        services: 20,
        runs: 5,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (argv[i].as_str(), next) {
            ("--portals", Some(v)) => a.portals = v.max(1),
            ("--services", Some(v)) => a.services = v.max(1),
            ("--runs", Some(v)) => a.runs = v.max(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn portal(i: usize) -> String {
    format!("portal-{i:04}")
}

fn service(j: usize) -> String {
    format!("svc{j:02}")
}

/// N portals, S maps; every third map reads a per-portal path (`{portal}`), so the
/// scrubber has per-portal work too.
fn fleet_config(a: &Args) -> Config {
    let mut text = String::from(
        "[sources.vault]\nkind = \"vault\"\naddress = \"http://127.0.0.1:8200\"\nauth = { method = \"token\", token = \"t\" }\n",
    );
    for i in 0..a.portals {
        let _ = write!(
            text,
            "[portals.{}]\nurl = \"http://127.0.0.1:{}\"\napi_key = \"sk\"\n",
            portal(i),
            1000 + i
        );
    }
    for j in 0..a.services {
        let path = if j % 3 == 0 {
            format!("secret/portals/{{portal}}/svc{j:02}")
        } else {
            format!("secret/shared/svc{j:02}")
        };
        let _ = write!(
            text,
            "[[map]]\nservice = \"{}\"\nprops.clientId = \"vault:{path}#id\"\nprops.clientSecret = \"vault:{path}#secret\"\n",
            service(j)
        );
    }
    match config::parse(&text, std::path::Path::new("bench.toml")) {
        Ok(l) => l.config,
        Err(e) => panic!("bench config: {e}"),
    }
}

const NOW: i64 = 1_764_000_000;

fn ok() -> ServiceState {
    ServiceState {
        result: LastResult::Ok,
        last_attempt: NOW,
        confirmed: [
            ("clientId", "fp:0a1b2c3d4e5f"),
            ("clientSecret", "fp:5f4e3d2c1b0a"),
        ]
        .into_iter()
        .collect(),
        confirmed_at: Some(NOW - 86_400),
        pushed_at: Some(NOW - 86_400),
        ..ServiceState::default()
    }
}

fn problem(result: LastResult, kind: FailureKind, error: String) -> ServiceState {
    ServiceState {
        result,
        last_attempt: NOW,
        error: Some(error.into()),
        error_kind: Some(kind),
        ..ServiceState::default()
    }
}

/// The error a source read leaves, quoting the path as the logs do.
fn read_error(i: usize, j: usize) -> String {
    let path = if j % 3 == 0 {
        format!("secret/portals/{}/svc{j:02}", portal(i))
    } else {
        format!("secret/shared/svc{j:02}")
    };
    format!("prop `clientId` ← vault:{path}#id: reading vault:{path} failed: Vault answered 503 for GET /v1/secret/data/…: upstream unavailable")
}

fn fleet_state(a: &Args, worst: bool) -> State {
    let mut state = State::empty();
    for i in 0..a.portals {
        let ps = state.portals.entry(portal(i)).or_default();
        ps.last_success = Some(NOW - 3600);
        for j in 0..a.services {
            let st = if worst {
                problem(
                    LastResult::Failed,
                    FailureKind::PortalServer,
                    read_error(i, j),
                )
            } else {
                match (i % 100, j) {
                    // 2 %: the portal is down; every service failed.
                    (0 | 1, _) => problem(
                        LastResult::Failed,
                        FailureKind::PortalServer,
                        "HTTP 502 from the portal: Bad Gateway".into(),
                    ),
                    (2..=6, 1) => problem(
                        LastResult::Held,
                        FailureKind::Refused,
                        "the portal refused these very values; they are not pushed again until the source changes".into(),
                    ),
                    (7..=9, 2) => problem(
                        LastResult::Skipped,
                        FailureKind::SecretNotFound,
                        read_error(i, j),
                    ),
                    (10 | 11, 3) => problem(
                        LastResult::Halted,
                        FailureKind::Halted,
                        "rollout halted: portal portal-0002 (wave 1) refused the new values".into(),
                    ),
                    (12, 4) => problem(
                        LastResult::Waiting,
                        FailureKind::Waiting,
                        "the new value waits for an earlier wave".into(),
                    ),
                    _ => ok(),
                }
            };
            *ps.services.entry_or_default(&service(j)) = st;
        }
    }
    state.sources = [(
        "vault",
        SourceRecord {
            ok: !worst,
            error: worst.then(|| read_error(0, 1).into()),
            error_kind: worst.then_some(FailureKind::SourceUnavailable),
            checked_at: NOW,
        },
    )]
    .into_iter()
    .collect();
    state.last_cycle = Some(CycleRecord {
        started: NOW - 10,
        finished: NOW,
        result: if worst { "failed" } else { "partial" }.into(),
    });
    state
}

/// Mean time of `runs` runs of `f`, and its last output's size.
fn time(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut bytes = 0;
    let start = Instant::now();
    for _ in 0..runs {
        bytes = f();
    }
    (start.elapsed() / runs as u32, bytes)
}

fn row(what: &str, (t, bytes): (Duration, usize), target: bool) {
    let verdict = if !target {
        ""
    } else if t < Duration::from_secs(1) && bytes < MIB {
        "  ✓ (< 1 s, < 1 MiB)"
    } else {
        "  ✗ TARGET MISSED (< 1 s, < 1 MiB)"
    };
    println!(
        "  {what:<44} {:>9.2} ms  {:>10} bytes ({:.2} MiB){verdict}",
        t.as_secs_f64() * 1000.0,
        bytes,
        bytes as f64 / MIB as f64
    );
}

fn main() {
    let a = args();
    let config = fleet_config(&a);
    println!(
        "status: {} portals × {} services, mean of {} runs",
        a.portals, a.services, a.runs
    );
    let (default, refresh) = Filter::from_query("").unwrap_or_default();
    let everything = Filter {
        all: true,
        ..Filter::default()
    };
    for (name, worst) in [
        ("mixed states", false),
        ("worst case: everything failing", true),
    ] {
        let state = fleet_state(&a, worst);
        println!("{name}:");
        let mut snapshot = None;
        let build = time(a.runs, || {
            let s = Snapshot::build(&config, &state, None, NOW);
            let n = s.portals.len();
            snapshot = Some(s);
            n
        });
        println!(
            "  {:<44} {:>9.2} ms  (once per cycle in the daemon)",
            "build the snapshot (state + config)",
            build.0.as_secs_f64() * 1000.0
        );
        let Some(snapshot) = snapshot else { return };
        let page = time(a.runs, || {
            html::render(&snapshot.view(&default), &default, refresh).len()
        });
        row("GET /status (default filter)", page, true);
        let json = time(a.runs, || {
            serde_json::to_string(&snapshot.view(&default))
                .map(|s| s.len())
                .unwrap_or(0)
        });
        row("GET /status.json (default filter)", json, true);
        let all_page = time(a.runs, || {
            html::render(&snapshot.view(&everything), &everything, None).len()
        });
        row("GET /status?all=1&limit=0 (everything)", all_page, false);
        let all_json = time(a.runs, || {
            serde_json::to_string(&snapshot.view(&everything))
                .map(|s| s.len())
                .unwrap_or(0)
        });
        row(
            "GET /status.json?all=1&limit=0 (everything)",
            all_json,
            false,
        );
        let cli = time(a.runs, || {
            let s = Snapshot::build(&config, &state, None, NOW);
            authsync::status::text::render(&s.view(&default)).len()
        });
        row("authsync status (build + table)", cli, false);
    }
}
