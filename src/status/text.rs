//! `authsync status` for a terminal: the summary, then one line per cell shown —
//! portal, service, state, wave, last confirmed, last error — then the sources.

use std::fmt::Write;

use super::model::{CellState, Status};

/// Longest error shown on a line; `--json` has them whole.
const ERROR_WIDTH: usize = 120;

pub fn render(view: &Status<'_>) -> String {
    let mut out = String::new();
    let s = &view.summary;
    let _ = write!(
        out,
        "{} portal(s), {} with problems; {} service(s):",
        s.portals, s.portals_with_problems, s.services
    );
    for state in CellState::ALL {
        let _ = write!(out, " {} {}", state.as_str(), s.states.get(state));
    }
    out.push('\n');
    match view.last_cycle {
        Some(c) => {
            let _ = writeln!(
                out,
                "last cycle: {} → {} ({})",
                c.started.rfc3339(),
                c.finished.rfc3339(),
                c.result
            );
        }
        None => out.push_str("last cycle: none recorded\n"),
    }
    if let Some(d) = view.daemon {
        let _ = writeln!(
            out,
            "next cycle: {}",
            d.next_cycle
                .as_ref()
                .map_or("unknown".to_string(), |t| t.rfc3339())
        );
    }
    out.push('\n');
    let rows: Vec<[String; 6]> = view
        .portals
        .iter()
        .flat_map(|p| {
            p.services.iter().map(move |c| {
                [
                    p.name.to_string(),
                    c.service.to_string(),
                    c.state.as_str().to_string(),
                    c.wave.map_or("-".to_string(), |w| w.to_string()),
                    c.last_confirmed
                        .as_ref()
                        .map_or("never".to_string(), |t| t.rfc3339()),
                    c.last_error.as_deref().map_or(String::new(), one_line),
                ]
            })
        })
        .collect();
    let header = [
        "PORTAL",
        "SERVICE",
        "STATE",
        "WAVE",
        "LAST CONFIRMED",
        "LAST ERROR",
    ];
    let mut widths: [usize; 5] = [0; 5];
    for (i, w) in widths.iter_mut().enumerate() {
        *w = rows
            .iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0);
    }
    let line = |out: &mut String, cols: [&str; 6]| {
        for (i, w) in widths.iter().enumerate() {
            let _ = write!(out, "{:<w$}  ", cols[i], w = *w);
        }
        out.push_str(cols[5]);
        // Trailing spaces of an empty last column help nobody.
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    };
    if rows.is_empty() {
        out.push_str("nothing to show\n");
    } else {
        line(&mut out, header);
        for r in &rows {
            line(
                &mut out,
                [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]].map(String::as_str),
            );
        }
    }
    if view.collapsed_in_sync > 0 {
        let _ = writeln!(
            out,
            "({} portal(s) with every service in sync not listed; --all lists them)",
            view.collapsed_in_sync
        );
    }
    if !view.sources.is_empty() {
        let width = view
            .sources
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("SOURCE".len());
        let _ = writeln!(out, "\n{:<width$}  HEALTH", "SOURCE");
        for src in view.sources {
            let health = match (src.ok, &src.last_error) {
                (Some(true), _) => "ok".to_string(),
                (Some(false), Some(e)) => format!("error: {}", one_line(e)),
                (Some(false), None) => "error".to_string(),
                (None, _) => "not checked yet".to_string(),
            };
            let _ = writeln!(out, "{:<width$}  {health}", src.name);
        }
    }
    out
}

/// An error on one line, cut to [`ERROR_WIDTH`] characters.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > ERROR_WIDTH {
        let cut: String = flat.chars().take(ERROR_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}
