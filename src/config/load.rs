//! Reading the TOML file into [`Config`], with every problem reported at once.
//!
//! The document is parsed once into a span-carrying tree (`toml::de::DeTable`); each
//! section and each `[sources.*]`, `[portals.*]` and `[[map]]` entry is then deserialized
//! on its own, so a mistake in one entry does not hide the mistakes in the others, and
//! every message carries the file, line and column it is about.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::checks::{insecure_http_host, Checks};
use super::reference::{PropRef, SecretRef};
use super::{
    Config, Flavor, LogConfig, MapConfig, PortalAuth, PortalConfig, ServerConfig, SourceConfig,
    SyncConfig,
};
use crate::catalog;
use crate::secret::{SecretSetting, SecretString};
use crate::sources;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the config file, located by line and column (1-based).
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {level}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (pass -c FILE or set AUTHSYNC_CONFIG)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render(.diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let mut out = format!("the config has {errors} error(s):");
    for d in diagnostics {
        out.push_str("\n  ");
        out.push_str(&d.to_string());
    }
    out
}

/// A valid config and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates the config file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates config text; `file` is only used in messages.
pub fn parse(text: &str, file: &Path) -> Result<Loaded, ConfigError> {
    let mut cx = Cx::new(text, file);
    let (root, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        cx.toml_error(&e, 0..0);
    }
    if cx.has_errors() {
        return Err(cx.into_error());
    }
    let config = cx.document(root.into_inner());
    match config {
        Some(config) if !cx.has_errors() => Ok(Loaded {
            config,
            warnings: cx.diagnostics,
        }),
        _ => Err(cx.into_error()),
    }
}

/// A map entry as written, before references are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    service: Spanned<String>,
    #[serde(default)]
    portals: Option<Spanned<Vec<Spanned<String>>>>,
    props: Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
}

/// A portal as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortal {
    url: Spanned<String>,
    #[serde(default)]
    api_key: Option<SecretSetting>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<SecretSetting>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default)]
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    flavor: Flavor,
    // Last, so the "expected one of" list of an unknown field reads as it always did.
    #[serde(default)]
    allow_insecure_http: bool,
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
    diagnostics: Vec<Diagnostic>,
    /// Every `[sources.NAME]` / `[portals.NAME]` written, valid or not: a reference to
    /// a declared but broken block is not also reported as "unknown" (its own error is).
    declared_sources: Vec<String>,
    declared_portals: Vec<String>,
}

impl<'a> Cx<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        Cx {
            text,
            file,
            diagnostics: Vec::new(),
            declared_sources: Vec::new(),
            declared_portals: Vec::new(),
        }
    }

    fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    fn into_error(mut self) -> ConfigError {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        ConfigError::Invalid {
            diagnostics: self.diagnostics,
        }
    }

    fn push(&mut self, severity: Severity, span: Range<usize>, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        });
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(Severity::Error, span, message.into());
    }

    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(Severity::Warning, span, message.into());
    }

    fn toml_error(&mut self, e: &toml::de::Error, fallback: Range<usize>) {
        let span = e.span().unwrap_or(fallback);
        self.error(span, e.message().trim().to_string());
    }

    /// Deserializes one value, recording its error (with the innermost span) on failure.
    fn de<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>, what: &str) -> Option<T> {
        self.de_with(value, what, |d| T::deserialize(d))
    }

    /// [`Cx::de`] through a given deserializing function.
    fn de_with<T>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        what: &str,
        parse: impl FnOnce(ValueDeserializer<'_>) -> Result<T, toml::de::Error>,
    ) -> Option<T> {
        let span = value.span();
        match parse(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(span);
                self.error(span, format!("in {what}: {}", e.message().trim()));
                None
            }
        }
    }

    fn document(&mut self, root: DeTable<'_>) -> Option<Config> {
        let mut sync = SyncConfig::default();
        let mut server = ServerConfig::default();
        let mut log = LogConfig::default();
        let mut sources = BTreeMap::new();
        let mut raw_portals = Vec::new();
        let mut raw_maps = Vec::new();
        let mut ok = true;
        for (key, value) in root {
            let key_span = key.span();
            match key.get_ref().as_ref() {
                "sync" => match self.de::<SyncConfig>(value, "[sync]") {
                    Some(s) => sync = s,
                    None => ok = false,
                },
                "server" => match self.de::<ServerConfig>(value, "[server]") {
                    Some(s) => server = s,
                    None => ok = false,
                },
                "log" => match self.de::<LogConfig>(value, "[log]") {
                    Some(l) => log = l,
                    None => ok = false,
                },
                "sources" => {
                    for (name, entry) in self.table_entries(value, "sources") {
                        self.declared_sources.push(name.get_ref().clone());
                        match self.source(&name, entry) {
                            Some(s) => {
                                sources.insert(name.into_inner(), s);
                            }
                            None => ok = false,
                        }
                    }
                }
                "portals" => {
                    for (name, entry) in self.table_entries(value, "portals") {
                        self.declared_portals.push(name.get_ref().clone());
                        let what = format!("[portals.{}]", name.get_ref());
                        match self.de::<RawPortal>(entry, &what) {
                            Some(p) => raw_portals.push((name, p)),
                            None => ok = false,
                        }
                    }
                }
                "map" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Array(items) => {
                            for (i, item) in items.into_iter().enumerate() {
                                match self.de::<RawMap>(item, &format!("[[map]] #{}", i + 1)) {
                                    Some(m) => raw_maps.push(m),
                                    None => ok = false,
                                }
                            }
                        }
                        _ => self.error(
                            span,
                            "`map` must be an array of tables: write each block as [[map]]",
                        ),
                    }
                }
                other => {
                    let hint = catalog::hint(
                        other,
                        ["sync", "server", "log", "sources", "portals", "map"],
                    );
                    self.error(key_span, format!("unknown section `{other}`{hint}"));
                }
            }
        }

        self.check_sync(&sync);
        let portals = self.portals(raw_portals);
        self.check_rollout(&sync, &portals);
        let maps = self.maps(raw_maps, &sources, &portals);
        if self.declared_portals.is_empty() && ok {
            self.error(
                0..0,
                "no portals configured: add at least one [portals.NAME] block",
            );
        }
        if maps.is_empty() && ok && !self.has_errors() {
            self.warn(0..0, "no [[map]] blocks: nothing will be synced");
        }
        if !ok {
            return None;
        }
        Some(Config {
            file: self.file.to_path_buf(),
            sync,
            server,
            log,
            sources,
            portals,
            maps,
        })
    }

    /// The entries of a `[sources]` / `[portals]` table.
    fn table_entries<'i>(
        &mut self,
        value: Spanned<DeValue<'i>>,
        section: &str,
    ) -> Vec<(Spanned<String>, Spanned<DeValue<'i>>)> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(t) => t
                .into_iter()
                .map(|(k, v)| {
                    let span = k.span();
                    (Spanned::new(span, k.into_inner().into_owned()), v)
                })
                .collect(),
            _ => {
                self.error(
                    span,
                    format!("`{section}` must be a table of named blocks: [{section}.NAME]"),
                );
                Vec::new()
            }
        }
    }

    /// One `[sources.NAME]` block: its kind from the registry, parsed and checked by the
    /// store's own config type.
    fn source(
        &mut self,
        name: &Spanned<String>,
        entry: Spanned<DeValue<'_>>,
    ) -> Option<SourceConfig> {
        let what = format!("[sources.{}]", name.get_ref());
        // Where each field's value is written, for the checks made after serde.
        let (kind, field_spans): (_, HashMap<String, Range<usize>>) = match entry.get_ref() {
            DeValue::Table(t) => (
                t.get("kind")
                    .map(|k| (k.get_ref().as_str().map(str::to_string), k.span())),
                t.iter()
                    .map(|(k, v)| (k.get_ref().to_string(), v.span()))
                    .collect(),
            ),
            _ => {
                self.error(entry.span(), format!("{what} must be a table"));
                return None;
            }
        };
        let (k, kind_span) = match kind {
            None => {
                self.error(
                    name.span(),
                    format!("{what} has no `kind`: set kind = {}", sources::kind_list()),
                );
                return None;
            }
            Some((k, span)) => (k.unwrap_or_default(), span),
        };
        let Some(store) = sources::kind(&k) else {
            let hint = catalog::hint(&k, sources::KINDS.iter().map(|k| k.name));
            self.error(
                kind_span,
                format!(
                    "{what}: unknown kind `{k}`: expected {}{hint}",
                    sources::kind_list()
                ),
            );
            return None;
        };
        let config = self.de_with(entry, &what, |d| store.parse(d))?;
        let mut checks = Checks::new(&what);
        config.check(&mut checks);
        let errors = checks.into_errors();
        if errors.is_empty() {
            return Some(config);
        }
        for (field, message) in errors {
            let span = field
                .and_then(|f| field_spans.get(f).cloned())
                .unwrap_or_else(|| name.span());
            self.error(span, message);
        }
        None
    }

    fn check_sync(&mut self, sync: &SyncConfig) {
        if sync.schedule.is_some() && sync.interval.is_some() {
            let span = self.find_key_span("schedule");
            self.error(
                span,
                "[sync]: set exactly one of `schedule` and `interval`, not both",
            );
        }
        if let Some(cron) = &sync.schedule {
            let parsed = super::cron_parser().parse(cron);
            if let Err(e) = parsed {
                let span = self.find_key_span("schedule");
                let fields = cron.split_whitespace().count();
                self.error(span, format!("[sync]: schedule `{cron}` is not a valid cron expression ({e}); authsync expects 6 fields (sec min hour day month weekday, UTC), e.g. \"0 */5 * * * *\" — it has {fields}"));
            }
        }
        if sync.interval.is_some_and(|d| d.is_zero()) {
            let span = self.find_key_span("interval");
            self.error(span, "[sync]: interval must be longer than 0s");
        } else if sync
            .interval
            .is_some_and(|d| d < Duration::from_secs(1) || d.subsec_nanos() != 0)
        {
            // The scheduler counts whole seconds: 100ms would run once and then never
            // again, 1500ms every second.
            let span = self.find_key_span("interval");
            self.error(
                span,
                "[sync]: interval must be a whole number of seconds, at least 1s (the scheduler has a 1-second resolution)",
            );
        }
        if sync.concurrency == 0 {
            let span = self.find_key_span("concurrency");
            self.error(span, "[sync]: concurrency must be at least 1");
        }
    }

    fn check_rollout(&mut self, sync: &SyncConfig, portals: &BTreeMap<String, PortalConfig>) {
        if sync.cycle_timeout < Duration::from_secs(1) {
            let span = self.find_key_span("cycle_timeout");
            self.error(span, "[sync]: cycle_timeout must be at least 1s");
        }
        let Some(waves) = &sync.rollout else { return };
        let span = self.find_key_span("rollout");
        if waves.is_empty() || waves.iter().any(Vec::is_empty) {
            self.error(
                span.clone(),
                "[sync]: rollout is a list of non-empty waves, e.g. [[\"staging\"], [\"*\"]]",
            );
            return;
        }
        for pattern in waves.iter().flatten() {
            if let Err(e) = glob::Pattern::new(pattern) {
                self.error(
                    span.clone(),
                    format!("[sync]: rollout pattern `{pattern}` is not a valid glob ({e})"),
                );
            }
        }
        let stray: Vec<&str> = portals
            .keys()
            .filter(|p| sync.wave_of(p) >= waves.len())
            .map(String::as_str)
            .collect();
        if !stray.is_empty() {
            self.error(
                span,
                format!(
                    "[sync]: portal(s) {} are in no rollout wave; add them to a wave, or end the list with [\"*\"]",
                    stray.join(", ")
                ),
            );
        }
    }

    /// Best-effort location of `key =` for checks made after deserialization.
    fn find_key_span(&self, key: &str) -> Range<usize> {
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed.starts_with(key) && trimmed[key.len()..].trim_start().starts_with('=') {
                let start = offset + (line.len() - trimmed.len());
                return start..start + key.len();
            }
            offset += line.len();
        }
        0..0
    }

    fn portals(
        &mut self,
        raw: Vec<(Spanned<String>, RawPortal)>,
    ) -> BTreeMap<String, PortalConfig> {
        let mut out = BTreeMap::new();
        for (name, p) in raw {
            let what = format!("[portals.{}]", name.get_ref());
            let url = match url::Url::parse(p.url.get_ref()) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                    if let Some(host) = insecure_http_host(&u, p.allow_insecure_http) {
                        self.error(
                            p.url.span(),
                            format!("{what}: url uses plain http:// to {host}, which sends the API key or password and every pushed value in clear text; use https://, or set allow_insecure_http = true on this portal if the network is trusted"),
                        );
                        continue;
                    }
                    u
                }
                Ok(u) => {
                    self.error(
                        p.url.span(),
                        format!("{what}: url must be http(s), not `{}`", u.scheme()),
                    );
                    continue;
                }
                Err(e) => {
                    self.error(
                        p.url.span(),
                        format!("{what}: url `{}` is not a valid URL: {e}", p.url.get_ref()),
                    );
                    continue;
                }
            };
            let auth = match (p.api_key, p.user, p.password) {
                (Some(key), None, None) => PortalAuth::ApiKey(key),
                (None, Some(user), Some(password)) => PortalAuth::Login { user, password },
                (Some(_), _, _) => {
                    self.error(
                        name.span(),
                        format!("{what}: set either `api_key` or `user` + `password`, not both"),
                    );
                    continue;
                }
                (None, Some(_), None) | (None, None, Some(_)) => {
                    self.error(
                        name.span(),
                        format!("{what}: `user` and `password` go together"),
                    );
                    continue;
                }
                (None, None, None) => {
                    self.error(name.span(), format!("{what}: no credentials: set `api_key` (recommended) or `user` + `password`"));
                    continue;
                }
            };
            if p.flavor == Flavor::Workspace && matches!(auth, PortalAuth::ApiKey(_)) {
                self.error(
                    name.span(),
                    format!("{what}: Workspace portals have no API keys; set `user` + `password` of an administrator"),
                );
                continue;
            }
            let timeout = p.timeout.unwrap_or(Duration::from_secs(15));
            if timeout.is_zero() {
                self.error(
                    name.span(),
                    format!("{what}: timeout must be longer than 0s"),
                );
                continue;
            }
            out.insert(
                name.into_inner(),
                PortalConfig {
                    url,
                    flavor: p.flavor,
                    auth,
                    timeout,
                    ca_cert: p.ca_cert,
                },
            );
        }
        out
    }

    fn maps(
        &mut self,
        raw: Vec<RawMap>,
        sources: &BTreeMap<String, SourceConfig>,
        portals: &BTreeMap<String, PortalConfig>,
    ) -> Vec<MapConfig> {
        let mut out = Vec::new();
        // (portal, service) → line of the block that maps it, to catch double mappings.
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for m in raw {
            let service_span = m.service.span();
            let (line, _) = line_col(self.text, service_span.start);
            let service = m.service.into_inner();
            let known = catalog::service(&service);
            if service.is_empty() {
                self.error(service_span, "[[map]]: service is empty");
                continue;
            }
            if known.is_none() {
                let hint = catalog::hint(&service, catalog::SERVICES.iter().map(|s| s.name));
                self.warn(service_span.clone(), format!("service `{service}` is not in the built-in catalogue (older or newer portals may have it; `check --online` asks the portals){hint}"));
            }
            let mut portal_list = None;
            if let Some(list) = m.portals {
                if list.get_ref().is_empty() {
                    self.error(
                        list.span(),
                        format!(
                            "[[map]] {service}: `portals` is empty; remove it to mean every portal"
                        ),
                    );
                }
                let mut names = Vec::new();
                for p in list.into_inner() {
                    if !portals.contains_key(p.get_ref())
                        && !self.declared_portals.contains(p.get_ref())
                    {
                        let hint = catalog::hint(
                            p.get_ref(),
                            self.declared_portals.iter().map(String::as_str),
                        );
                        self.error(
                            p.span(),
                            format!("[[map]] {service}: unknown portal `{}`{hint}", p.get_ref()),
                        );
                    }
                    names.push(p.into_inner());
                }
                portal_list = Some(names);
            }
            let props_span = m.props.span();
            let raw_props = m.props.into_inner();
            if raw_props.is_empty() {
                self.error(
                    props_span.clone(),
                    format!("[[map]] {service}: no props mapped"),
                );
            }
            let mut props = BTreeMap::new();
            for (prop, value) in raw_props {
                if let Some(info) = known {
                    if !info.props.contains(&prop.get_ref().as_str()) {
                        let hint = catalog::hint(prop.get_ref(), info.props.iter().copied());
                        self.warn(prop.span(), format!("service `{service}` has no prop `{}` in the catalogue (a portal silently drops unknown props){hint}", prop.get_ref()));
                    }
                }
                let value_span = value.span();
                match prop_ref(value.into_inner()) {
                    Ok(PropRef::Secret(r)) => {
                        if let Some(src) = sources.get(&r.source) {
                            if let Err(why) = src.check_path(&r.path) {
                                self.error(value_span.clone(), format!("`{r}`: {why}"));
                            }
                        } else if !self.declared_sources.contains(&r.source) {
                            let hint = catalog::hint(
                                &r.source,
                                self.declared_sources.iter().map(String::as_str),
                            );
                            let known_list = if self.declared_sources.is_empty() {
                                "none configured".to_string()
                            } else {
                                self.declared_sources.join(", ")
                            };
                            self.error(
                                value_span.clone(),
                                format!(
                                    "prop `{}`: unknown source `{}` (sources: {known_list}){hint}",
                                    prop.get_ref(),
                                    r.source
                                ),
                            );
                        }
                        props.insert(prop.into_inner(), PropRef::Secret(r));
                    }
                    Ok(lit) => {
                        props.insert(prop.into_inner(), lit);
                    }
                    Err(msg) => self.error(value_span, format!("prop `{}`: {msg}", prop.get_ref())),
                }
            }
            if !props.is_empty() && props.values().all(PropRef::is_empty_literal) {
                self.error(props_span, format!("[[map]] {service}: every prop is an empty literal; the portal would clear the whole service, which authsync never does"));
            }
            for portal in portals.keys() {
                let applies = portal_list
                    .as_ref()
                    .is_none_or(|l: &Vec<String>| l.contains(portal));
                if !applies {
                    continue;
                }
                if let Some(first) = seen.insert((portal.clone(), service.clone()), line) {
                    self.error(service_span.clone(), format!("service `{service}` is mapped twice for portal `{portal}` (first at line {first}); merge the blocks or narrow them with `portals`"));
                }
            }
            out.push(MapConfig {
                service,
                portals: portal_list,
                props,
                line,
            });
        }
        out
    }
}

/// A prop's value as written: a string reference, a long-form table or a literal.
fn prop_ref(value: toml::Value) -> Result<PropRef, String> {
    match value {
        toml::Value::String(s) => SecretRef::parse(&s).map(PropRef::Secret),
        toml::Value::Table(t) => {
            if let Some(v) = t.get("value") {
                if t.len() > 1 {
                    return Err("a literal is written { value = \"…\" } with no other keys".into());
                }
                return match v {
                    toml::Value::String(s) => Ok(PropRef::Literal(SecretString::from(s.clone()))),
                    other => Err(format!("`value` must be a string, not {}", other.type_str())),
                };
            }
            for k in t.keys() {
                if !["source", "path", "key"].contains(&k.as_str()) {
                    let hint = catalog::hint(k, ["source", "path", "key", "value"]);
                    return Err(format!("unknown field `{k}`: expected source, path, key or value{hint}"));
                }
            }
            let field = |name: &str| -> Result<Option<String>, String> {
                match t.get(name) {
                    None => Ok(None),
                    Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => Err(format!("`{name}` must be a string, not {}", other.type_str())),
                }
            };
            let source = field("source")?.ok_or("the long form needs `source` and `path`")?;
            let path = field("path")?.ok_or("the long form needs `source` and `path`")?;
            SecretRef::from_parts(&source, &path, field("key")?.as_deref()).map(PropRef::Secret)
        }
        other => Err(format!(
            "expected \"SOURCE:PATH#KEY\", {{ source, path, key }} or {{ value = \"…\" }}, found {}",
            other.type_str()
        )),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

/// A config that must be valid, for unit tests: the errors are the panic message.
#[cfg(test)]
pub fn parse_valid(text: &str) -> Config {
    match parse(text, Path::new("test.toml")) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests;
