//! The status page: server-rendered HTML and CSS, no script (it works in any browser,
//! behind any proxy, and a strict Content-Security-Policy costs nothing).
//!
//! A portals × services grid, each cell carrying its state as a class (`state-failed`)
//! and a `data-state` attribute, its times and error in the `title`, and a reference to
//! the error list below the grid: one fleet-wide problem (a store down) is then written
//! once, not once per cell, which keeps the page small. Every text from the state or
//! the config goes through [`escape`].

use std::collections::HashMap;
use std::fmt::Write;

use super::model::{CellState, Filter, ServiceStatus, Status, Timestamp};

/// The shortest `?refresh=` interval honoured (seconds): a forgotten tab must not turn
/// into a load generator.
pub const MIN_REFRESH: u32 = 5;

/// Longest error text repeated in a cell's tooltip; the list below the grid has it whole.
const TITLE_ERROR: usize = 160;

/// `text` with the characters HTML gives meaning to replaced by entities, safe in text
/// and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.meta{color:#555;margin:.2em 0}
.summary{display:flex;flex-wrap:wrap;gap:.5em;padding:0;list-style:none}
.summary li{padding:.25em .7em;border-radius:1em}
form{margin:.8em 0;padding:.6em;background:#f4f4f6;border-radius:6px}
form label{margin-right:.8em;white-space:nowrap}
table{border-collapse:collapse}
th,td{border:1px solid #d0d0d6;padding:.25em .5em;text-align:left;vertical-align:top}
thead th{background:#eceef2;position:sticky;top:0}
td small{display:block;color:#333;font-size:.8em}
td small a{color:inherit}
.state-in_sync{background:#d3f2d9}
.state-pending{background:#dde6f5}
.state-failed{background:#f8c9c9;font-weight:600}
.state-skipped{background:#fbdfb9}
.state-held{background:#e4d3f5}
.state-halted{background:#f3eaa4}
.none{color:#999;text-align:center}
ol.errors li{margin:.2em 0}
code{background:#f0f0f2;padding:0 .2em}
";

/// The whole page for `view`, made with `filter` (for the form and the paging links).
pub fn render(view: &Status<'_>, filter: &Filter, refresh: Option<u32>) -> String {
    let mut out = String::with_capacity(16 * 1024 + view.portals.len() * 24 * 200);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width\">");
    if let Some(n) = refresh {
        let _ = write!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            n.max(MIN_REFRESH)
        );
    }
    out.push_str("<title>authsync status</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n<h1>authsync status</h1>\n");
    header(&mut out, view);
    summary(&mut out, view);
    form(&mut out, filter, refresh);
    grid(&mut out, view, filter, refresh);
    sources(&mut out, view);
    out.push_str("</body></html>\n");
    out
}

fn when(t: Option<&Timestamp>) -> String {
    t.map_or("never".to_string(), Timestamp::rfc3339)
}

fn header(out: &mut String, view: &Status<'_>) {
    let _ = writeln!(
        out,
        "<p class=\"meta\" id=\"generated\">generated {}</p>",
        escape(&view.generated_at.rfc3339())
    );
    out.push_str("<p class=\"meta\" id=\"last-cycle\">last cycle: ");
    match view.last_cycle {
        Some(c) => {
            let _ = write!(
                out,
                "{} → {}, <strong class=\"result-{r}\">{r}</strong>",
                escape(&c.started.rfc3339()),
                escape(&c.finished.rfc3339()),
                r = escape(&c.result)
            );
        }
        None => out.push_str("none yet"),
    }
    out.push_str("</p>\n");
    match view.daemon {
        Some(d) => {
            let _ = write!(
                out,
                "<p class=\"meta\" id=\"next-cycle\">next cycle: {}</p>\n<p class=\"meta\" id=\"events\">events queue: ",
                escape(&when(d.next_cycle.as_ref()))
            );
            if d.events.is_empty() {
                out.push_str("none");
            }
            for (i, q) in d.events.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(
                    out,
                    "{} (<code>{}</code> on {})",
                    escape(&q.source),
                    escape(&q.queue),
                    escape(&q.host)
                );
            }
            out.push_str("</p>\n");
        }
        None => out.push_str("<p class=\"meta\">no daemon: read from the state file</p>\n"),
    }
}

fn summary(out: &mut String, view: &Status<'_>) {
    let s = &view.summary;
    let _ = write!(
        out,
        "<p id=\"totals\">{} portal(s), {} with problems; {} service(s):</p>\n<ul class=\"summary\">",
        s.portals, s.portals_with_problems, s.services
    );
    for state in CellState::ALL {
        let _ = write!(
            out,
            "<li class=\"state-{n}\" data-state=\"{n}\" data-count=\"{c}\">{n}: {c}</li>",
            n = state.as_str(),
            c = s.states.get(state)
        );
    }
    out.push_str("</ul>\n");
}

fn form(out: &mut String, filter: &Filter, refresh: Option<u32>) {
    out.push_str("<form method=\"get\" action=\"status\"><strong>Filter</strong> ");
    for state in CellState::ALL {
        let _ = write!(
            out,
            "<label><input type=\"checkbox\" name=\"state\" value=\"{n}\"{c}> {n}</label>",
            n = state.as_str(),
            c = if filter.states.contains(&state) {
                " checked"
            } else {
                ""
            }
        );
    }
    let _ = write!(
        out,
        "<label>portal <input type=\"text\" name=\"portal\" value=\"{}\" placeholder=\"name or glob, e.g. eu-*\"></label>",
        escape(&filter.portals.join(","))
    );
    let _ = write!(
        out,
        "<label><input type=\"checkbox\" name=\"all\" value=\"1\"{}> list in-sync portals</label>",
        if filter.all { " checked" } else { "" }
    );
    let _ = write!(
        out,
        "<label>refresh every <input type=\"number\" name=\"refresh\" min=\"{MIN_REFRESH}\" value=\"{}\" style=\"width:5em\"> s</label>",
        refresh.map(|r| r.to_string()).unwrap_or_default()
    );
    out.push_str("<button type=\"submit\">apply</button></form>\n");
}

/// A query string for the same filter at another offset.
fn page_query(filter: &Filter, refresh: Option<u32>, offset: usize) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for s in &filter.states {
        q.append_pair("state", s.as_str());
    }
    for p in &filter.portals {
        q.append_pair("portal", p);
    }
    if filter.all {
        q.append_pair("all", "1");
    }
    q.append_pair(
        "limit",
        &filter.limit.map_or("0".to_string(), |l| l.to_string()),
    );
    q.append_pair("offset", &offset.to_string());
    if let Some(r) = refresh {
        q.append_pair("refresh", &r.to_string());
    }
    q.finish()
}

fn grid(out: &mut String, view: &Status<'_>, filter: &Filter, refresh: Option<u32>) {
    out.push_str("<h2>Portals</h2>\n<p id=\"showing\">");
    let first = if view.portals.is_empty() {
        0
    } else {
        filter.offset + 1
    };
    let _ = write!(
        out,
        "showing portals {first}–{} of {} matching",
        filter.offset + view.portals.len(),
        view.portals_matching
    );
    if view.collapsed_in_sync > 0 {
        let mut all = filter.clone();
        all.all = true;
        let _ = write!(
            out,
            "; <span id=\"collapsed\">{} portal(s) with every service in sync not listed</span> (<a href=\"?{}\">list them</a>)",
            view.collapsed_in_sync,
            escape(&page_query(&all, refresh, 0))
        );
    }
    if let Some(next) = view.next_offset {
        let _ = write!(
            out,
            "; <a id=\"next-page\" href=\"?{}\">next page</a>",
            escape(&page_query(filter, refresh, next))
        );
    }
    out.push_str("</p>\n");
    if view.portals.is_empty() {
        out.push_str("<p id=\"empty\">nothing to show</p>\n");
        return;
    }
    out.push_str("<table class=\"grid\" id=\"grid\"><thead><tr><th>portal</th><th>wave</th>");
    for s in &view.services {
        let _ = write!(out, "<th>{}</th>", escape(s));
    }
    out.push_str("</tr></thead><tbody>\n");
    // Distinct error texts, numbered in order of first appearance.
    let mut errors: HashMap<&str, usize> = HashMap::new();
    let mut ordered: Vec<(&str, &ServiceStatus)> = Vec::new();
    for p in &view.portals {
        let _ = write!(
            out,
            "<tr data-portal=\"{n}\"><th class=\"state-{s}\" title=\"last fully in sync: {w}\">{n}</th><td>{wave}</td>",
            n = escape(p.name),
            s = p.state.as_str(),
            w = escape(&when(p.last_success)),
            wave = p.wave.map(|w| w.to_string()).unwrap_or_else(|| "–".into())
        );
        let mut cells = p.services.iter().peekable();
        for column in &view.services {
            let Some(cell) = cells.next_if(|c| &*c.service == *column) else {
                out.push_str("<td class=\"none\">–</td>");
                continue;
            };
            let error_no = cell.last_error.as_deref().map(|e| {
                let next = errors.len() + 1;
                *errors.entry(e).or_insert_with(|| {
                    ordered.push((e, cell));
                    next
                })
            });
            render_cell(out, cell, error_no);
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if !ordered.is_empty() {
        out.push_str("<h2>Errors</h2>\n<ol class=\"errors\" id=\"errors\">");
        for (i, (text, cell)) in ordered.iter().enumerate() {
            let _ = write!(out, "<li id=\"e{}\">", i + 1);
            if let Some(kind) = cell.error_kind {
                let _ = write!(out, "<code>{}</code> ", kind_name(kind));
            }
            push_escaped(out, text);
            out.push_str("</li>");
        }
        out.push_str("</ol>\n");
    }
}

fn kind_name(kind: crate::failure::FailureKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn render_cell(out: &mut String, cell: &ServiceStatus, error_no: Option<usize>) {
    let state = cell.state.as_str();
    let _ = write!(
        out,
        "<td class=\"state-{state}\" data-state=\"{state}\" data-service=\"{}\" title=\"",
        escape(&cell.service)
    );
    if let Some(w) = cell.wave {
        let _ = write!(out, "wave {w}&#10;");
    }
    let _ = write!(
        out,
        "last confirmed: {}&#10;last attempt: {}",
        when(cell.last_confirmed.as_ref()),
        when(cell.last_attempt.as_ref())
    );
    if let Some(e) = &cell.last_error {
        out.push_str("&#10;error: ");
        let cut: String = e.chars().take(TITLE_ERROR).collect();
        push_escaped(out, &cut);
        if cut.len() < e.len() {
            out.push('…');
        }
    }
    let _ = write!(out, "\">{state}");
    match error_no {
        Some(n) => {
            let _ = write!(out, "<small><a href=\"#e{n}\">error {n}</a></small>");
        }
        None => {
            if let Some(t) = &cell.last_confirmed {
                // The date is enough at a glance; the title has the time.
                let text = t.rfc3339();
                let _ = write!(out, "<small>{}</small>", text.get(..10).unwrap_or(""));
            }
        }
    }
    out.push_str("</td>");
}

fn sources(out: &mut String, view: &Status<'_>) {
    out.push_str("<h2>Sources</h2>\n<table id=\"sources\"><thead><tr><th>source</th><th>kind</th><th>health</th><th>checked</th><th>last error</th></tr></thead><tbody>");
    for s in view.sources {
        let (class, label) = match s.ok {
            Some(true) => ("state-in_sync", "ok"),
            Some(false) => ("state-failed", "error"),
            None => ("state-pending", "not checked yet"),
        };
        let _ = write!(
            out,
            "<tr data-source=\"{n}\"><th>{n}</th><td>{k}</td><td class=\"{class}\">{label}</td><td>{c}</td><td>",
            n = escape(&s.name),
            k = escape(&s.kind),
            c = escape(&when(s.checked_at.as_ref()))
        );
        if let Some(e) = &s.last_error {
            if let Some(kind) = s.error_kind {
                let _ = write!(out, "<code>{}</code> ", kind_name(kind));
            }
            push_escaped(out, e);
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::{PortalStatus, Snapshot};

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn cells_carry_state_classes_and_hostile_texts_are_escaped() {
        let cell = |service: &str, state, error: Option<&str>| ServiceStatus {
            service: service.into(),
            state,
            wave: Some(2),
            last_confirmed: None,
            last_push: None,
            last_attempt: Some(Timestamp::at(1_700_000_000)),
            last_error: error.map(String::from),
            error_kind: None,
        };
        let snap = Snapshot {
            generated_at: Timestamp::at(1_700_000_000),
            portals: vec![PortalStatus {
                name: "<b>p</b>".into(),
                wave: Some(2),
                state: CellState::Failed,
                last_success: None,
                services: vec![
                    cell(
                        "google",
                        CellState::Failed,
                        Some("<img src=x onerror=alert(1)>"),
                    ),
                    cell("s3", CellState::Held, Some("\"quoted\" & 'single'")),
                ],
            }],
            sources: Vec::new(),
            last_cycle: None,
            daemon: None,
        };
        let (filter, _) = Filter::from_query("portal=%3Cb%3E*&refresh=1").unwrap_or_default();
        let html = render(&snap.view(&filter), &filter, Some(1));
        assert!(html.contains("class=\"state-failed\" data-state=\"failed\""));
        assert!(html.contains("class=\"state-held\" data-state=\"held\""));
        assert!(!html.contains("<img") && !html.contains("<b>p"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("value=\"&lt;b&gt;*\""));
        assert!(html.contains("content=\"5\""), "refresh is clamped");
        assert!(!html.contains("<script"));
    }
}
