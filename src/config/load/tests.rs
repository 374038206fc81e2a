use super::*;

const GOOD: &str = r#"
[sync]
interval = "30s"
drift = "ignore"
state_file = "/tmp/x/state.json"

[sources.vault]
kind = "vault"
address = "http://127.0.0.1:8200"
auth = { method = "token", token = { env = "VAULT_TOKEN" } }

[sources.aws]
kind = "aws"
region = "eu-west-1"

[portals.prod]
url = "https://docs.example.com"
api_key = { env = "PROD_KEY" }

[portals.staging]
url = "https://staging.example.com"
user = "admin@example.com"
password = { file = "/run/secrets/pw" }
timeout = "5s"

[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
props.googleClientSecret = { source = "vault", path = "secret/oauth/google", key = "client_secret" }

[[map]]
service = "telegram"
portals = ["prod"]
props.telegramBotToken = "vault:secret/portals/{portal}/telegram#token"
props.telegramBotName = { value = "acme_docs_bot" }
"#;

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text, Path::new("t.toml")) {
        Ok(l) => panic!(
            "expected errors, got a config with warnings {:?}",
            l.warnings
        ),
        Err(ConfigError::Invalid { diagnostics }) => diagnostics,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn good_config_loads() {
    let loaded = parse(GOOD, Path::new("t.toml")).expect("valid");
    let c = loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(c.sources.len(), 2);
    assert_eq!(c.portals.len(), 2);
    assert_eq!(c.maps.len(), 2);
    assert_eq!(
        c.sync.schedule(),
        super::super::Schedule::Interval(Duration::from_secs(30))
    );
    assert!(matches!(
        c.portals["staging"].auth,
        PortalAuth::Login { .. }
    ));
    assert_eq!(c.portals["staging"].timeout, Duration::from_secs(5));
    assert!(c.maps[1].applies_to("prod") && !c.maps[1].applies_to("staging"));
}

#[test]
fn all_errors_reported_with_lines() {
    let text = GOOD
        .replace("drift = \"ignore\"", "drift = \"ignore\"\nbogus = 1")
        .replace(
            "region = \"eu-west-1\"",
            "region = \"eu-west-1\"\nregoin = \"x\"",
        )
        .replace(
            "\"vault:secret/oauth/google#client_id\"",
            "\"valut:secret/oauth/google#client_id\"",
        )
        .replace("portals = [\"prod\"]", "portals = [\"prd\"]");
    let d = errors(&text);
    let msgs: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    let joined = msgs.join("\n");
    assert!(
        joined.contains("t.toml:5:1: error:") && joined.contains("bogus"),
        "{joined}"
    );
    assert!(joined.contains("regoin"), "{joined}");
    assert!(
        joined.contains("unknown source `valut`") && joined.contains("did you mean `vault`"),
        "{joined}"
    );
    assert!(
        joined.contains("unknown portal `prd`") && joined.contains("did you mean `prod`"),
        "{joined}"
    );
    assert!(d.len() >= 4, "{joined}");
}

#[test]
fn unknown_service_and_prop_are_warnings_with_hints() {
    let text = GOOD
        .replace("service = \"google\"", "service = \"Google\"")
        .replace("props.telegramBotName", "props.telegramBotNmae");
    let loaded = parse(&text, Path::new("t.toml")).expect("warnings only");
    let w: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    assert!(
        w.iter()
            .any(|m| m.contains("`Google`") && m.contains("did you mean `google`")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("telegramBotNmae") && m.contains("did you mean `telegramBotName`")),
        "{w:?}"
    );
}

#[test]
fn syntax_error_located() {
    let d = errors("[sync]\ninterval = \n");
    assert_eq!(d[0].line, 2, "{:?}", d);
}

#[test]
fn structural_rules() {
    let both = GOOD.replace(
        "interval = \"30s\"",
        "interval = \"30s\"\nschedule = \"0 */5 * * * *\"",
    );
    assert!(errors(&both)
        .iter()
        .any(|d| d.message.contains("exactly one")));
    let five = GOOD.replace("interval = \"30s\"", "schedule = \"*/5 * * * *\"");
    assert!(errors(&five).iter().any(|d| d.message.contains("6")));
    let twice = format!(
        "{GOOD}\n[[map]]\nservice = \"google\"\nprops.googleClientId = {{ value = \"x\" }}\n"
    );
    assert!(errors(&twice)
        .iter()
        .any(|d| d.message.contains("mapped twice")));
    let nokind = GOOD.replace("kind = \"aws\"\n", "");
    assert!(errors(&nokind)
        .iter()
        .any(|d| d.message.contains("no `kind`")));
    let badkind = GOOD.replace("kind = \"aws\"", "kind = \"awss\"");
    assert!(errors(&badkind)
        .iter()
        .any(|d| d.message.contains("did you mean `aws`")));
    let nocreds = GOOD.replace("api_key = { env = \"PROD_KEY\" }\n", "");
    assert!(errors(&nocreds)
        .iter()
        .any(|d| d.message.contains("no credentials")));
    let allempty = GOOD
        .replace(
            "props.telegramBotToken = \"vault:secret/portals/{portal}/telegram#token\"\n",
            "",
        )
        .replace("\"acme_docs_bot\"", "\"\"");
    assert!(errors(&allempty)
        .iter()
        .any(|d| d.message.contains("clear the whole service")));
    let badref = GOOD.replace(
        "\"vault:secret/oauth/google#client_id\"",
        "\"just-a-string\"",
    );
    assert!(errors(&badref)
        .iter()
        .any(|d| d.message.contains("not a reference")));
}

#[test]
fn literal_values_never_debug_printed() {
    let loaded = parse(GOOD, Path::new("t.toml")).expect("valid");
    let dump = format!("{:?}", loaded.config);
    assert!(!dump.contains("acme_docs_bot"), "{dump}");
}

#[test]
fn a_broken_block_is_reported_once_not_again_where_it_is_used() {
    // The vault source and the prod portal are declared but invalid: their own errors
    // are reported, not "unknown source" / "unknown portal" / "no portals" as well.
    let text = GOOD
        .replace("kind = \"vault\"", "kind = \"vault\"\nkv_version = 3")
        .replace(
            "url = \"https://docs.example.com\"",
            "url = \"ftp://docs.example.com\"",
        )
        .replace(
            "url = \"https://staging.example.com\"",
            "url = \"staging.example.com\"",
        );
    let d = errors(&text);
    let joined: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    assert_eq!(d.len(), 3, "{joined:#?}");
    assert!(
        !joined
            .iter()
            .any(|m| m.contains("unknown") || m.contains("no portals")),
        "{joined:#?}"
    );
}

#[test]
fn intervals_are_whole_seconds_and_store_urls_http() {
    for bad in ["100ms", "1500ms", "999ms"] {
        let text = GOOD.replace("interval = \"30s\"", &format!("interval = \"{bad}\""));
        assert!(
            errors(&text)
                .iter()
                .any(|d| d.message.contains("whole number of seconds")),
            "{bad}"
        );
    }
    let one = GOOD.replace("interval = \"30s\"", "interval = \"1s\"");
    assert!(parse(&one, Path::new("t.toml")).is_ok());
    let no_scheme = GOOD.replace("http://127.0.0.1:8200", "vault.example.com:8200");
    let d = errors(&no_scheme);
    assert!(
        d.iter()
            .any(|d| d.message.contains("address must be an http(s) URL") && d.line == 9),
        "{d:?}"
    );
    let endpoint = GOOD.replace(
        "region = \"eu-west-1\"",
        "region = \"eu-west-1\"\nendpoint_url = \"localhost:4566\"",
    );
    assert!(errors(&endpoint)
        .iter()
        .any(|d| d.message.contains("endpoint_url must be an http(s) URL")));
}

#[test]
fn a_pasted_secret_is_not_quoted_back() {
    let text = GOOD.replace(
        "\"vault:secret/oauth/google#client_id\"",
        "\"GOCSPX-pasted-secret-value\"",
    );
    let d = errors(&text);
    assert!(d.iter().all(|d| !d.to_string().contains("GOCSPX")), "{d:?}");
}
