//! Every shipped config example passes `authsync check` cleanly, and every portal service
//! of the authservice API (DocSpace v3.7, `docs/authservice-api.md` §5 of the project's
//! shared documents) has an example under `config/services/` mapping exactly its props.
//!
//! Runs the real binary: `authsync -c FILE check` must exit 0 with no diagnostic on
//! stderr (unknown service or prop names are warnings there, as `file:line:col: warning:`).
//! Notes about unset environment variables or missing secret files ("needed at run time",
//! on stdout) are expected: the examples point at secrets of a real installation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// §5 of the authservice API document: every service and its exact prop names.
const SERVICES: &[(&str, &[&str])] = &[
    (
        "appleid",
        &[
            "appleIdClientId",
            "appleIdClientIdMobile",
            "appleIdTeamId",
            "appleIdKeyId",
            "appleIdPrivateKey",
        ],
    ),
    ("box", &["boxClientId", "boxClientSecret"]),
    ("dropbox", &["dropboxClientId", "dropboxClientSecret"]),
    ("facebook", &["facebookClientId", "facebookClientSecret"]),
    ("twitter", &["twitterKey", "twitterSecret"]),
    (
        "firebase",
        &[
            "firebase_apiKey",
            "firebase_projectId",
            "firebase_messagingSenderId",
            "firebase_authorization",
        ],
    ),
    ("google", &["googleClientId", "googleClientSecret"]),
    ("linkedin", &["linkedInKey", "linkedInSecret"]),
    ("skydrive", &["skydriveappkey", "skydriveappsecret"]),
    ("microsoft", &["microsoftClientId", "microsoftClientSecret"]),
    (
        "twilio",
        &["twilioAccountSid", "twilioAuthToken", "twiliosender"],
    ),
    ("s3", &["acesskey", "secretaccesskey"]),
    ("googlecloud", &["json"]),
    ("rackspace", &["username", "apiKey"]),
    ("zoom", &["zoomClientId", "zoomClientSecret"]),
    ("telegram", &["telegramBotToken", "telegramBotName"]),
    ("weixin", &["weixinClientId", "weixinClientSecret"]),
    (
        "externaldb",
        &[
            "databaseType",
            "dbHost",
            "dbPort",
            "dbName",
            "dbUser",
            "dbPassword",
            "dbSsl",
            "sqliteFilePath",
        ],
    ),
    (
        "nextcloud",
        &[
            "nextcloudBaseUrl",
            "nextcloudClientId",
            "nextcloudClientSecret",
        ],
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// Every config the repository ships: `config/`, `config/services/`, and the configs the
/// Kubernetes base and the systemd units install.
fn shipped_configs() -> Vec<PathBuf> {
    let root = repo();
    let mut files = toml_files(&root.join("config"));
    files.extend(toml_files(&root.join("config/services")));
    files.push(root.join("deploy/kubernetes/authsync.toml"));
    files.push(root.join("deploy/systemd/authsync.toml"));
    files
}

fn check(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authsync"))
        .arg("-c")
        .arg(file)
        .arg("check")
        .env_remove("AUTHSYNC_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run authsync")
}

/// Lines of stderr that are diagnostics (`file:line:col: warning: …`, `error: …`).
fn diagnostics(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("warning:") || l.contains("error:") || l.contains("error(s)"))
        .collect()
}

#[test]
fn every_shipped_config_passes_check_without_warnings() {
    let files = shipped_configs();
    assert!(
        files.len() >= SERVICES.len() + 3,
        "expected the example configs, found {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let out = check(file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = file.strip_prefix(repo()).unwrap_or(file).display();
        if !out.status.success() {
            failures.push(format!(
                "{name}: exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status.code()
            ));
            continue;
        }
        let diags = diagnostics(&stderr);
        if !diags.is_empty() {
            failures.push(format!(
                "{name}: diagnostics on stderr:\n{}",
                diags.join("\n")
            ));
        }
        // The only notes allowed on stdout are secrets that are not on this machine.
        for line in stdout.lines().filter(|l| l.starts_with("warning:")) {
            if !line.ends_with("(needed at run time)") {
                failures.push(format!("{name}: unexpected warning: {line}"));
            }
        }
        if !stdout.contains(" 0 error(s)") {
            failures.push(format!("{name}: no clean summary line:\n{stdout}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Guards the test above against a silent change of the warning format: a misspelt prop
/// and an unknown service must show up as diagnostics on stderr.
#[test]
fn misspelt_names_are_reported_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    let text = std::fs::read_to_string(repo().join("config/services/google.toml"))
        .unwrap()
        .replace("props.googleClientSecret ", "props.googleClientSecrt ")
        + "\n[[map]]\nservice = \"gogle\"\nprops.googleClientId = { value = \"x\" }\n";
    std::fs::write(&file, text).unwrap();
    let out = check(&file);
    assert!(out.status.success(), "warnings alone must not fail check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let diags = diagnostics(&stderr);
    assert!(
        diags
            .iter()
            .any(|l| l.contains("has no prop") && l.contains("googleClientSecrt")),
        "no prop warning in {stderr}"
    );
    assert!(
        diags
            .iter()
            .any(|l| l.contains("not in the built-in catalogue") && l.contains("gogle")),
        "no service warning in {stderr}"
    );
}

#[test]
fn every_service_has_an_example_with_exactly_its_props() {
    let dir = repo().join("config/services");
    let mut problems = Vec::new();
    for (service, props) in SERVICES {
        let file = dir.join(format!("{service}.toml"));
        let Ok(text) = std::fs::read_to_string(&file) else {
            problems.push(format!("{service}: no example {}", file.display()));
            continue;
        };
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let maps = table
            .get("map")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        let blocks: Vec<_> = maps
            .iter()
            .filter(|m| m.get("service").and_then(|s| s.as_str()) == Some(service))
            .collect();
        if blocks.len() != 1 {
            problems.push(format!(
                "{service}: expected one [[map]] for it, found {}",
                blocks.len()
            ));
            continue;
        }
        let mapped: BTreeSet<&str> = blocks[0]
            .get("props")
            .and_then(|p| p.as_table())
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let wanted: BTreeSet<&str> = props.iter().copied().collect();
        if mapped != wanted {
            problems.push(format!(
                "{service}: maps {mapped:?}, the API document lists {wanted:?}"
            ));
        }
        let portals = table.get("portals").and_then(|p| p.as_table());
        if portals.map_or(0, |p| p.len()) != 1 {
            problems.push(format!("{service}: expected exactly one portal"));
        }
    }
    // No stray examples for services the document does not list.
    let known: BTreeSet<&str> = SERVICES.iter().map(|(s, _)| *s).collect();
    for file in toml_files(&dir) {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        if !known.contains(stem.as_str()) {
            problems.push(format!(
                "{}: not a service of the API document",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The table above is §5 of the API document. Where the shared documents sit beside the
/// repository (developers' machines and CI), compare them so the two cannot drift apart.
#[test]
fn service_table_matches_the_api_document() {
    let doc = repo().join("../shared/docs/authservice-api.md");
    let Ok(text) = std::fs::read_to_string(&doc) else {
        eprintln!("{} not found: comparison skipped", doc.display());
        return;
    };
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("5."))
        .expect("section 5 in the API document");
    let mut from_doc: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in section.lines() {
        // | `name` | propA, propB | notes |
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') || cells[2] == "props" {
            continue; // not a row, or the header row
        }
        let name = cells[1].trim_matches('`').to_string();
        let props = cells[2]
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        from_doc.insert(name, props);
    }
    let ours: BTreeMap<String, BTreeSet<String>> = SERVICES
        .iter()
        .map(|(s, props)| (s.to_string(), props.iter().map(|p| p.to_string()).collect()))
        .collect();
    assert_eq!(
        ours,
        from_doc,
        "SERVICES differs from §5 of {}",
        doc.display()
    );
}
