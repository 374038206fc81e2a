//! Scrubbing error texts for the status outputs.
//!
//! The state file keeps each error as the logs show it, and those quote secret paths
//! (`vault:secret/oauth/google does not exist`) and, for a read-back mismatch, keyed
//! fingerprints. The status page is meant to be shared more widely than the logs (a
//! dashboard link, a screenshot in a ticket), so both are cut out here: every path a
//! `[[map]]` references (with `{portal}` expanded, and the KV v2 API forms
//! `mount/data/…`, `mount/metadata/…` that HTTP errors quote) becomes
//! [`PATH_MARK`], every `fp:` fingerprint becomes `fp:…`.

use std::collections::BTreeSet;

use crate::config::reference::PORTAL_PLACEHOLDER;
use crate::config::{Config, PropRef};

/// What a secret path is replaced by.
pub const PATH_MARK: &str = "[secret path]";

/// The secret paths of one config, ready to cut out of texts.
#[derive(Debug, Default, Clone)]
pub struct Scrubber {
    /// Paths without `{portal}`, longest first (so a path that contains another is cut
    /// whole).
    global: Vec<String>,
    /// Paths with `{portal}`, expanded per portal when a text of that portal is scrubbed.
    templates: Vec<String>,
}

impl Scrubber {
    pub fn new(config: &Config) -> Scrubber {
        let mut global = BTreeSet::new();
        let mut templates = BTreeSet::new();
        for map in &config.maps {
            for r in map.props.values() {
                let PropRef::Secret(s) = r else { continue };
                if s.path.is_empty() {
                    continue;
                }
                if s.path.contains(PORTAL_PLACEHOLDER) {
                    templates.insert(s.path.clone());
                } else {
                    global.extend(variants(&s.path));
                }
            }
        }
        let mut global: Vec<String> = global.into_iter().collect();
        longest_first(&mut global);
        Scrubber {
            global,
            templates: templates.into_iter().collect(),
        }
    }

    /// `text` without secret paths (of `portal`'s maps, when given) and fingerprints.
    pub fn scrub(&self, text: &str, portal: Option<&str>) -> String {
        match portal {
            Some(p) => self.for_portal(p).scrub(text),
            None => {
                let mut out = self.cut(cut_fingerprints(text), &[]);
                // A text not tied to one portal (a source's error): cut any expansion,
                // by the template's fixed text around `{portal}`.
                for t in &self.templates {
                    out = cut_template(&out, t);
                }
                out
            }
        }
    }

    /// A scrubber for the texts of one portal, its `{portal}` paths expanded once (a
    /// portal has a text per service).
    pub fn for_portal(&self, portal: &str) -> PortalScrubber<'_> {
        let mut expanded: Vec<String> = self
            .templates
            .iter()
            .flat_map(|t| variants(&t.replace(PORTAL_PLACEHOLDER, portal)))
            .collect();
        longest_first(&mut expanded);
        PortalScrubber {
            scrubber: self,
            expanded,
        }
    }

    fn cut(&self, mut text: String, first: &[String]) -> String {
        for path in first.iter().chain(&self.global) {
            if text.contains(path.as_str()) {
                text = text.replace(path.as_str(), PATH_MARK);
            }
        }
        text
    }
}

/// [`Scrubber`] for one portal's texts.
pub struct PortalScrubber<'a> {
    scrubber: &'a Scrubber,
    /// The portal's expansions of the `{portal}` paths, longest first.
    expanded: Vec<String>,
}

impl PortalScrubber<'_> {
    pub fn scrub(&self, text: &str) -> String {
        self.scrubber.cut(cut_fingerprints(text), &self.expanded)
    }
}

/// A path and the forms a KV v2 HTTP error quotes it in.
fn variants(path: &str) -> Vec<String> {
    let mut v = vec![path.to_string()];
    if let Some((mount, rest)) = path.split_once('/') {
        if !mount.is_empty() && !rest.is_empty() {
            v.push(format!("{mount}/data/{rest}"));
            v.push(format!("{mount}/metadata/{rest}"));
        }
    }
    v
}

fn longest_first(v: &mut [String]) {
    v.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
}

/// Cuts every occurrence of `template` with any portal name in place of `{portal}`
/// (a run of characters portal names use).
fn cut_template(text: &str, template: &str) -> String {
    let Some((prefix, suffix)) = template.split_once(PORTAL_PLACEHOLDER) else {
        return text.to_string();
    };
    if prefix.is_empty() {
        // Nothing fixed to anchor on before the name: cut the suffix if it is specific.
        return if suffix.len() > 1 {
            text.replace(suffix, PATH_MARK)
        } else {
            text.to_string()
        };
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        let after = &rest[i + prefix.len()..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(after.len());
        let tail = &after[name_len..];
        let tail = tail.strip_prefix(suffix).unwrap_or(tail);
        out.push_str(PATH_MARK);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `fp:` followed by hex digits (a keyed fingerprint) → `fp:…`.
fn cut_fingerprints(text: &str) -> String {
    if !text.contains("fp:") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("fp:") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let hex = after
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(after.len());
        if hex > 0 {
            out.push('…');
        }
        rest = &after[hex..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[sources.vault]
kind = "vault"
address = "http://127.0.0.1:8200"
auth = { method = "token", token = "t" }
[portals.alpha]
url = "http://127.0.0.1:1"
api_key = "sk"
[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
[[map]]
service = "telegram"
props.telegramBotToken = "vault:kv1/telegram/{portal}#token"
"#;
        crate::config::parse_valid(text)
    }

    #[test]
    fn paths_their_kv2_forms_and_fingerprints_are_cut() {
        let s = Scrubber::new(&config());
        let text = "prop `googleClientId` ← vault:secret/oauth/google#client_id: reading vault:secret/oauth/google failed: GET /v1/secret/data/oauth/google: 403; prop holds fp:0a1b2c3d4e5f instead of fp:ffffffffffff";
        let out = s.scrub(text, Some("alpha"));
        assert!(!out.contains("oauth/google"), "{out}");
        assert!(!out.contains("0a1b2c3d4e5f") && !out.contains("ffffffffffff"));
        assert!(out.contains("vault:[secret path]#client_id"), "{out}");
        assert!(out.contains("fp:… instead of fp:…"), "{out}");
    }

    #[test]
    fn portal_templates_are_cut_per_portal_and_in_texts_of_no_portal() {
        let s = Scrubber::new(&config());
        let text = "reading vault:kv1/telegram/alpha failed";
        assert_eq!(
            s.scrub(text, Some("alpha")),
            "reading vault:[secret path] failed"
        );
        assert_eq!(s.scrub(text, None), "reading vault:[secret path] failed");
        let other = "reading vault:kv1/telegram/some-other.portal#token failed";
        assert!(!s.scrub(other, None).contains("some-other"));
        assert_eq!(s.scrub("nothing secret", None), "nothing secret");
    }
}
