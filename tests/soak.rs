//! Soak: `authsync run` as a real process, cycling every second (the scheduler's
//! shortest interval: it counts whole seconds, and the config refuses anything shorter)
//! with `drift = "enforce"` against real OpenBao and moto and two portal doubles, for
//! `SOAK_SECS` seconds (default 15). Every few cycles a secret rotates, alternating a
//! Vault KV v2 write and a moto PutSecretValue; every rotation must reach both portals.
//! The daemon's RSS and open file descriptors are sampled every second and must stay
//! flat. A longer run:
//!
//! ```sh
//! SOAK_SECS=600 cargo test --release --test soak -- --nocapture
//! ```

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::*;

/// One sample of the daemon's resources.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: usize,
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample { rss_kib, fds })
}

fn soak_secs() -> u64 {
    std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(15)
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_stays_flat_and_delivers_every_rotation() {
    let secs = soak_secs();
    let w = World::start().await;
    let listen = format!("127.0.0.1:{}", testservers::free_port());
    let text = w
        .config_with(&w.alpha.url(), &w.beta.url(), STANDARD_MAPS)
        .replacen(
            "[sync]\n",
            "[sync]\ninterval = \"1s\"\ndrift = \"enforce\"\n",
            1,
        )
        + &format!("\n[server]\nlisten = \"{listen}\"\n");
    let cfg = w.write("soak.toml", &text);
    let mut d = Daemon::start(&cfg, &w.env, &listen, "soak").await;
    d.wait_ready().await;
    let pid = d.pid();
    // Let start-up allocations settle before the baseline.
    d.wait_cycles(2.0, Duration::from_secs(30)).await;
    let cycles_at_start = d.cycles().await;

    // Sampled every second, independent of the rotations below.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                match sample(pid) {
                    Some(s) => samples.lock().unwrap_or_else(|e| e.into_inner()).push(s),
                    None => return,
                }
            }
        })
    };

    let started = Instant::now();
    let mut rotated: Vec<String> = Vec::new();
    let mut delivered = 0usize;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(secs) {
        // A rotation every 3 cycles.
        d.wait_cycles(3.0, Duration::from_secs(60)).await;
        let n = rotated.len();
        let at = Instant::now();
        if n % 2 == 0 {
            let value = format!("soak-google-secret-PLANTED-{n}");
            w.rotate_google(&value).await;
            d.wait_for(
                &format!("Vault rotation #{n} on both portals"),
                Duration::from_secs(30),
                || async {
                    [&w.alpha, &w.beta].iter().all(|p| {
                        p.value("google", "googleClientSecret").as_deref() == Some(value.as_str())
                    })
                },
            )
            .await;
            rotated.push(value);
        } else {
            let value = format!("soak-s3-secret-PLANTED-{n}");
            w.moto
                .put_secret_value("docspace/backup-s3", &s3_json(S3_ACCESS, &value))
                .await;
            d.wait_for(
                &format!("AWS rotation #{n} on both portals"),
                Duration::from_secs(30),
                || async {
                    [&w.alpha, &w.beta].iter().all(|p| {
                        p.value("s3", "secretaccesskey").as_deref() == Some(value.as_str())
                    })
                },
            )
            .await;
            rotated.push(value);
        }
        delivered += 1;
        slowest = slowest.max(at.elapsed());
    }
    sampler.abort();
    let cycles = d.cycles().await - cycles_at_start;
    let failed_runs = d
        .metric("authsync_sync_runs_total", &[("result", "failed")])
        .await;
    let metrics = d.metrics_text().await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "SIGTERM exits 0:\n{output}");

    // Nothing planted or rotated leaked anywhere.
    let state = std::fs::read_to_string(w.dir.path().join("state.json")).unwrap_or_default();
    for (what, text) in [
        ("daemon output", output.as_str()),
        ("state file", state.as_str()),
        ("/metrics", metrics.as_str()),
    ] {
        for (i, secret) in PLANTED
            .iter()
            .copied()
            .chain(rotated.iter().map(String::as_str))
            .enumerate()
        {
            assert!(
                !text.contains(secret),
                "planted secret #{i} leaked into the {what}"
            );
        }
    }

    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let third = samples.len() / 3;
    assert!(third >= 2, "too few samples: {samples:?}");
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    let fds: Vec<usize> = samples.iter().map(|s| s.fds).collect();
    let (rss_first, rss_last) = (mean(&rss[..third]), mean(&rss[rss.len() - third..]));
    let fd_first = fds[..third].iter().copied().max().unwrap_or(0);
    let fd_last = fds[fds.len() - third..].iter().copied().max().unwrap_or(0);
    let rss_min = rss.iter().copied().fold(f64::INFINITY, f64::min);
    let rss_max = rss.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "soak: {secs} s, {} cycles ({} failed), {delivered} rotations delivered \
         to both portals (slowest {slowest:?}); {} samples; RSS {rss_min:.1}..{rss_max:.1} MiB \
         (first third avg {rss_first:.1}, last third avg {rss_last:.1}); fds {}..{} \
         (first third max {fd_first}, last third max {fd_last})",
        cycles as u64,
        failed_runs as u64,
        samples.len(),
        fds.iter().min().unwrap_or(&0),
        fds.iter().max().unwrap_or(&0),
    );
    assert!(delivered >= 2, "only {delivered} rotations in {secs} s");
    assert!(cycles >= 3.0 * delivered as f64, "{cycles} cycles");
    assert_eq!(failed_runs, 0.0, "no cycle may fail:\n{output}");
    assert!(
        rss_last <= rss_first * 1.2 + 2.0,
        "RSS grows: first third {rss_first:.1} MiB, last third {rss_last:.1} MiB: {rss:?}"
    );
    assert!(
        fd_last <= fd_first + 5,
        "open fds grow: first third max {fd_first}, last third max {fd_last}: {fds:?}"
    );
}
