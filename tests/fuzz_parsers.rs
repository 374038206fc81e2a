//! Property-based fuzzing of the parsers that read untrusted text: the config loader,
//! prop references, and the portal response decoders (DocSpace JSON envelopes, the
//! Workspace settings page and AjaxPro answers).
//!
//! Brief by default (256 cases per property, as in CI). A longer run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release --test fuzz_parsers
//! ```

use std::path::Path;

use authsync::config::{self, ConfigError, Diagnostic, SecretRef};
use authsync::portal;
use authsync::portal::{self as workspace, PortalError};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Cases per property: `PROPTEST_CASES`, else 256.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        // Failures print the minimal input; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases())
    }
}

const EXAMPLE: &str = include_str!("../config/authsync.example.toml");

// ------------------------------------------------------------------------------------
// (a) the config loader
// ------------------------------------------------------------------------------------

/// Every diagnostic points inside `text`: line ≥ 1, column ≥ 1, both within the text
/// (one past the end of a line, or a line after a final newline, is the end of input).
fn check_positions(text: &str, diagnostics: &[Diagnostic]) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    for d in diagnostics {
        prop_assert!(d.line >= 1 && d.column >= 1, "{d}");
        prop_assert!(d.line <= lines.len(), "line beyond the text: {d}");
        let width = lines[d.line - 1].chars().count();
        prop_assert!(d.column <= width + 1, "column beyond line {}: {d}", d.line);
        prop_assert!(!d.message.trim().is_empty(), "empty message: {d}");
    }
    Ok(())
}

fn parse_and_check(text: &str) -> Result<(), TestCaseError> {
    match config::parse(text, Path::new("fuzz.toml")) {
        Ok(loaded) => check_positions(text, &loaded.warnings),
        Err(ConfigError::Invalid { diagnostics }) => {
            prop_assert!(
                !diagnostics.is_empty(),
                "an invalid config with no diagnostics"
            );
            check_positions(text, &diagnostics)
        }
        Err(e) => Err(TestCaseError::fail(format!("parse read a file? {e}"))),
    }
}

/// Text that looks like TOML: headers, keys, values of every type, comments, junk.
fn tomlish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "\\[\\[?(sync|server|log|map|sources|portals)(\\.[a-z{}]{0,6})?\\]?\\]?",
        "[a-z_.]{1,12} ?= ?\"[^\"\\n]{0,12}\"?",
        "[a-z_.]{1,12} = [0-9.e+-]{1,6}",
        "[a-z_.]{1,12} = \\{ ?[a-z]{1,6} = \"[a-z:/#{}.]{0,16}\" ?,? ?\\}?",
        "[a-z_.]{1,12} = \\[ ?(\"[a-z]{0,5}\" ?,? ?){0,3}\\]?",
        "(interval|schedule|timeout|jitter) = \"[0-9a-z *\\/]{0,12}\"",
        "props\\.[a-zA-Z]{1,8} = \"[a-z]{0,6}:[a-z/{}]{0,12}#?[a-z{}]{0,6}\"",
        "#[^\\n]{0,10}",
        "'''[^\\n]{0,8}",
        "\"\"\"[^\\n]{0,8}",
        any::<String>().prop_map(|s| s.replace('\n', " ")),
    ];
    prop::collection::vec(line, 0..30).prop_map(|ls| ls.join("\n"))
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    DropLine(usize),
    DupLine(usize),
    SwapLines(usize, usize),
}

fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            '[', ']', '{', '}', '"', '\'', '=', '#', '.', ',', ':', '\n', '\r', ' ', '\t',
            '\\', '0', 'a', '{', '\u{0}', '\u{feff}', 'é', '💥',
        ]),
        1 => any::<char>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<prop::sample::Index>();
    prop_oneof![
        (pos.clone(), interesting_char())
            .prop_map(|(i, c)| Mutation::Insert(i.index(usize::MAX), c)),
        pos.clone()
            .prop_map(|i| Mutation::Delete(i.index(usize::MAX))),
        (pos.clone(), interesting_char())
            .prop_map(|(i, c)| Mutation::Replace(i.index(usize::MAX), c)),
        pos.clone()
            .prop_map(|i| Mutation::DropLine(i.index(usize::MAX))),
        pos.clone()
            .prop_map(|i| Mutation::DupLine(i.index(usize::MAX))),
        (pos.clone(), pos)
            .prop_map(|(a, b)| Mutation::SwapLines(a.index(usize::MAX), b.index(usize::MAX))),
    ]
}

/// Applies mutations to `text` (positions taken modulo the current length).
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in mutations {
        match *m {
            Mutation::Insert(i, c) => {
                let at = i % (chars.len() + 1);
                chars.insert(at, c);
            }
            Mutation::Delete(i) if !chars.is_empty() => {
                let at = i % chars.len();
                chars.remove(at);
            }
            Mutation::Replace(i, c) if !chars.is_empty() => {
                let at = i % chars.len();
                chars[at] = c;
            }
            Mutation::DropLine(i) | Mutation::DupLine(i) | Mutation::SwapLines(i, _) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.split('\n').collect();
                let a = i % lines.len();
                match *m {
                    Mutation::DropLine(_) => {
                        lines.remove(a);
                    }
                    Mutation::DupLine(_) => lines.insert(a, lines[a]),
                    Mutation::SwapLines(_, j) => {
                        let b = j % lines.len();
                        lines.swap(a, b);
                    }
                    _ => {}
                }
                chars = lines.join("\n").chars().collect();
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

#[test]
fn the_example_config_is_valid() {
    // The mutation property below starts from a valid document.
    let loaded = config::parse(EXAMPLE, Path::new("authsync.example.toml"));
    assert!(loaded.is_ok(), "{:?}", loaded.err().map(|e| e.to_string()));
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn config_parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        parse_and_check(&text)?;
    }

    #[test]
    fn config_parse_never_panics_on_tomlish_text(text in tomlish()) {
        parse_and_check(&text)?;
    }

    #[test]
    fn config_parse_never_panics_on_mutated_example(
        mutations in prop::collection::vec(mutation(), 1..8)
    ) {
        parse_and_check(&mutate(EXAMPLE, &mutations))?;
    }
}

// ------------------------------------------------------------------------------------
// (b) prop references
// ------------------------------------------------------------------------------------

/// The parts of a valid reference, as a config would write them.
fn ref_parts() -> impl Strategy<Value = (String, String, Option<String>)> {
    let source = "[a-zA-Z_][a-zA-Z0-9_-]{0,10}";
    // Paths: store path characters (Vault paths, AWS names and ARNs, file names),
    // optionally with `{portal}` somewhere.
    let path = (
        "[a-zA-Z0-9/_.+=@:#-]{1,30}",
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(p, at, placeholder)| {
            if placeholder {
                let chars: Vec<char> = p.chars().collect();
                let i = at.index(chars.len() + 1);
                let mut s: String = chars[..i].iter().collect();
                s.push_str("{portal}");
                s.extend(&chars[i..]);
                s
            } else {
                p
            }
        });
    let key = prop::option::of("[a-zA-Z0-9_.:/ -]{0,14}[a-zA-Z0-9_]");
    (source, path, key)
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn reference_parse_never_panics_and_is_stable(text in any::<String>()) {
        // Whatever parses prints back to text that parses to the same reference.
        if let Ok(r) = SecretRef::parse(&text) {
            let again = SecretRef::parse(&r.to_string());
            prop_assert_eq!(again.as_ref(), Ok(&r), "{}", r);
        }
    }

    #[test]
    fn reference_parse_never_panics_on_reference_like_text(
        text in "[a-z{} ]{0,6}:?[a-z/{}# .:]{0,20}#?[a-z{}#]{0,8}"
    ) {
        if let Ok(r) = SecretRef::parse(&text) {
            prop_assert_eq!(SecretRef::parse(&r.to_string()), Ok(r));
        }
    }

    #[test]
    fn valid_references_round_trip((source, path, key) in ref_parts()) {
        // The short form splits KEY at the last `#`: a path with `#` needs a key (the
        // long form can say `{ path = "a#b" }`, which prints as `a#b`, read back as key b).
        let path = if key.is_some() { path } else { path.replace('#', "_") };
        let r = SecretRef::from_parts(&source, &path, key.as_deref())
            .map_err(TestCaseError::fail)?;
        let text = r.to_string();
        prop_assert_eq!(SecretRef::parse(&text), Ok(r.clone()), "{}", text);
        // Expanding `{portal}` leaves a reference without placeholders.
        let expanded = r.for_portal("prod");
        prop_assert!(
            !expanded.path.contains(authsync::config::reference::PORTAL_PLACEHOLDER),
            "{}",
            expanded
        );
        prop_assert_eq!(SecretRef::parse(&expanded.to_string()), Ok(expanded));
    }
}

// ------------------------------------------------------------------------------------
// (c) portal response parsers
// ------------------------------------------------------------------------------------

const MARKER: &str = "MARKER-s3cr3t-7f3a";

/// A JSON value some of whose strings (and keys) carry the marker.
fn json_with_marker() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::String(MARKER.into())),
        "[a-z]{0,6}".prop_map(|s| Value::String(format!("{s}{MARKER}{s}"))),
        "[a-zA-Z0-9 ]{0,8}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("name".to_string()),
                        Just("value".to_string()),
                        Just("props".to_string()),
                        Just("title".to_string()),
                        Just("canSet".to_string()),
                        Just(MARKER.to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A portal-like services list: the right shape, with marked values and names, and
/// sometimes a wrong type in some field.
fn services_list() -> impl Strategy<Value = serde_json::Value> {
    let prop = (
        "[a-zA-Z]{1,10}",
        prop_oneof![
            3 => Just(serde_json::Value::String(format!("v-{MARKER}"))),
            1 => json_with_marker(),
        ],
    )
        .prop_map(|(name, value)| serde_json::json!({ "name": name, "value": value }));
    let service = (
        prop_oneof![
            3 => "[a-z]{1,10}".prop_map(serde_json::Value::String),
            1 => json_with_marker(),
        ],
        any::<bool>(),
        prop::collection::vec(prop, 0..4),
    )
        .prop_map(|(name, can_set, props)| {
            serde_json::json!({ "name": name, "title": MARKER, "canSet": can_set, "props": props })
        });
    prop::collection::vec(service, 0..5).prop_map(serde_json::Value::Array)
}

/// A DocSpace envelope around `response`, with an error message that never holds the
/// marker (the portal's own message is shown on purpose, cut short).
fn envelope() -> impl Strategy<Value = Vec<u8>> {
    let response = prop_oneof![
        3 => services_list(),
        1 => json_with_marker(),
        1 => any::<bool>().prop_map(serde_json::Value::Bool),
    ];
    (
        response,
        prop::option::of(prop_oneof![Just(0i64), any::<i64>()]),
        prop::option::of("[a-zA-Z ]{0,20}"),
        any::<bool>(),
    )
        .prop_map(|(response, status, message, with_response)| {
            let mut env = serde_json::Map::new();
            if with_response {
                env.insert("response".into(), response);
            }
            if let Some(s) = status {
                env.insert("status".into(), s.into());
            }
            if let Some(m) = message {
                env.insert("error".into(), serde_json::json!({ "message": m }));
            }
            serde_json::to_vec(&serde_json::Value::Object(env)).unwrap_or_default()
        })
}

/// Bytes damaged after encoding: truncated, a byte flipped, junk spliced in.
fn damaged(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        valid,
        any::<prop::sample::Index>(),
        any::<u8>(),
        0u8..4,
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(mut bytes, at, byte, how, junk)| {
            let i = at.index(bytes.len() + 1);
            match how {
                0 => bytes.truncate(i),
                1 if i < bytes.len() => bytes[i] = byte,
                2 => {
                    let tail = bytes.split_off(i);
                    bytes.extend(junk);
                    bytes.extend(tail);
                }
                _ => {}
            }
            bytes
        })
}

/// Arbitrary bytes with the marker somewhere inside.
fn raw_with_marker() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(mut a, b)| {
            a.extend_from_slice(MARKER.as_bytes());
            a.extend(b);
            a
        })
}

/// The error-message field of a JSON answer, which parsers pass on on purpose.
fn error_message_field(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let e = v.get("error")?;
    e.get("message")
        .or_else(|| e.get("Message"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
}

/// The error does not quote the input (except the portal's own error message).
fn no_echo(bytes: &[u8], err: &PortalError) -> Result<(), TestCaseError> {
    let text = err.to_string();
    if text.contains(MARKER) {
        let allowed = matches!(
            err,
            PortalError::BadRequest(_)
                | PortalError::AccessDenied(_)
                | PortalError::Validation(_)
                | PortalError::PaymentRequired(_)
        ) && error_message_field(bytes).is_some_and(|m| m.contains(MARKER));
        prop_assert!(allowed, "the error quotes the input: {}", text);
    }
    prop_assert!(
        text.chars().count() < 1000,
        "an overlong error: {} chars",
        text.len()
    );
    Ok(())
}

fn all_parsers(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = portal::parse_services_response(bytes) {
        no_echo(bytes, &e)?;
    }
    if let Err(e) = portal::parse_set_response(bytes) {
        no_echo(bytes, &e)?;
    }
    if let Err(e) = workspace::parse_save_answer(bytes, |m| m) {
        no_echo(bytes, &e)?;
    }
    if let Err(e) = workspace::parse_settings_page(&String::from_utf8_lossy(bytes)) {
        no_echo(bytes, &e)?;
    }
    Ok(())
}

/// A Workspace settings page with marked values, sometimes damaged.
fn settings_page() -> impl Strategy<Value = String> {
    let input = ("[a-zA-Z]{1,10}", "[a-z<>\"'&;= ]{0,6}").prop_map(|(id, junk)| {
        format!("<input type=\"text\" class=\"textEdit\" id=\"{id}\" value=\"{MARKER}{junk}\" />")
    });
    let item = (
        "[A-Za-z]{1,10}",
        prop::collection::vec(input, 0..4),
        any::<bool>(),
    )
        .prop_map(|(name, inputs, can_set)| {
            format!(
                "<div class=\"auth-service-item\" data-service=\"{name}\" data-can-set=\"{can_set}\"><span class=\"auth-service-title\">{MARKER}</span>{}</div>",
                inputs.join("\n")
            )
        });
    prop::collection::vec(item, 0..5)
        .prop_map(|items| format!("<html><body>{}</body></html>", items.join("\n")))
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn portal_parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        all_parsers(&bytes)?;
    }

    #[test]
    fn portal_parsers_never_echo_raw_input(bytes in raw_with_marker()) {
        all_parsers(&bytes)?;
    }

    #[test]
    fn portal_parsers_never_echo_envelopes(bytes in prop_oneof![envelope(), damaged(envelope())]) {
        all_parsers(&bytes)?;
    }

    #[test]
    fn ajaxpro_answers_never_echo(
        value in json_with_marker(),
        kind in prop_oneof![
            Just("System.UnauthorizedAccessException".to_string()),
            Just("System.Security.SecurityException".to_string()),
            Just("ASC.Core.Billing.BillingException".to_string()),
            "[A-Za-z.]{0,20}",
        ],
        message in prop::option::of("[a-zA-Z ]{0,20}"),
        damage in any::<bool>(),
    ) {
        let mut answer = serde_json::Map::new();
        answer.insert("value".into(), value);
        if let Some(m) = message {
            answer.insert("error".into(), serde_json::json!({ "Message": m, "Type": kind }));
        }
        let mut bytes = serde_json::to_vec(&serde_json::Value::Object(answer)).unwrap_or_default();
        if damage {
            bytes.truncate(bytes.len() / 2);
        }
        all_parsers(&bytes)?;
    }

    #[test]
    fn settings_pages_parse_without_panics_or_echo(page in settings_page(), cut in any::<prop::sample::Index>()) {
        // Whole pages parse to one service per item, values intact.
        if let Ok(services) = workspace::parse_settings_page(&page) {
            prop_assert!(!services.is_empty());
        }
        all_parsers(page.as_bytes())?;
        // A page cut anywhere never panics.
        let at = cut.index(page.len() + 1);
        let at = (0..=at).rev().find(|i| page.is_char_boundary(*i)).unwrap_or(0);
        all_parsers(&page.as_bytes()[..at])?;
    }
}

/// The marker and the check work: the portal's own error message is passed on (and
/// that is the only place input is quoted).
#[test]
fn the_portal_error_message_is_the_only_echo() {
    let body = format!(r#"{{"status":1,"error":{{"message":"{MARKER}"}}}}"#);
    let err = portal::parse_set_response(body.as_bytes()).expect_err("an error envelope");
    assert!(err.to_string().contains(MARKER));
    let body = format!(
        r#"{{"response":[{{"name":"x","props":[{{"name":"p","value":7}}]}}],"title":"{MARKER}"}}"#
    );
    let err = portal::parse_services_response(body.as_bytes()).expect_err("wrong shape");
    assert!(!err.to_string().contains(MARKER), "{err}");
    let body = format!(
        r#"{{"response":[{{"name":"x","props":[{{"name":"p","value":{{"k":"{MARKER}"}}}}]}}]}}"#
    );
    let err = portal::parse_services_response(body.as_bytes()).expect_err("wrong shape");
    assert!(!err.to_string().contains(MARKER), "{err}");
}
