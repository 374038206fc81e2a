//! Real portals (issue 11): what the DocSpace server actually does, through the real
//! binary against real OpenBao/moto and the portal double in several languages and
//! versions — `appleid`'s two names, refusals recognised in any language, every error
//! shape of API doc §1, version-aware value limits, older portals that store nothing,
//! and self-hosted portals that share one key store.

mod common;

use common::*;
use portal_double::{
    ApiKey, DoubleConfig, Fault, FaultKind, Language, PortalDouble, PortalState, Version,
};

const BAD_TG: &str = "not-a-telegram-token-PLANTED-refused";
const APPLE_KEY: &str = "-----BEGIN PRIVATE KEY-----apple-PLANTED-4242";

fn portal(key: &str, version: Version, language: Language) -> DoubleConfig {
    DoubleConfig {
        version,
        language,
        ..double_config(key)
    }
}

async fn world(version: Version, language: Language) -> World {
    World::start_with(
        portal(ALPHA_KEY, version, language),
        portal(BETA_KEY, version, language),
    )
    .await
}

fn telegram_posts(d: &PortalDouble) -> usize {
    posted(d).iter().filter(|(s, _)| s == "telegram").count()
}

const APPLE_MAP: &str = r#"
[[map]]
service = "appleid"
props.appleIdClientId = { value = "com.example.docs" }
props.appleIdPrivateKey = "vault:secret/apple#private_key"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appleid_is_pushed_by_its_configuration_key_and_read_back_in_every_version() {
    for version in [Version::V3_5, Version::V3_7] {
        let w = world(version, Language::De).await;
        w.bao
            .kv2_put("secret", "apple", &[("private_key", APPLE_KEY)])
            .await;
        let cfg = w.write(
            "a.toml",
            &w.config_with(&w.alpha.url(), &w.beta.url(), APPLE_MAP),
        );
        let run = w.run(&cfg, &["sync"]).await;
        run.assert_no_secrets(&[APPLE_KEY]);
        assert_eq!(run.code, 0, "{version:?}: {}", run.output());
        for d in [&w.alpha, &w.beta] {
            assert_eq!(
                posted(d),
                vec![(
                    "appleid".to_string(),
                    vec!["appleIdClientId".into(), "appleIdPrivateKey".into()]
                )],
                "{version:?}"
            );
            assert_eq!(
                d.value("appleid", "appleIdPrivateKey").as_deref(),
                Some(APPLE_KEY)
            );
        }
        // A second run finds everything in sync: the listed name `appleID` is matched.
        let run = w.run(&cfg, &["sync"]).await;
        assert_eq!(run.code, 0, "{}", run.output());
        assert_eq!(w.posts(), 2, "{version:?}: nothing pushed again");
        // `services` and `check --online` show both names.
        let services = w.run(&cfg, &["services", "--portal", "alpha"]).await;
        assert!(
            services.stdout.contains("appleid") && services.stdout.contains("listed as appleID"),
            "{}",
            services.output()
        );
        let check = w.run(&cfg, &["check", "--online"]).await;
        check.assert_no_secrets(&[APPLE_KEY]);
        assert_eq!(check.code, 0, "{}", check.output());
        assert!(
            check
                .stdout
                .contains("listed as `appleID`; authsync writes `appleid`"),
            "{}",
            check.output()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_an_incident_in_any_language_and_is_pushed_once() {
    for (version, language) in [
        (Version::V3_7, Language::De),
        (Version::V3_7, Language::En),
        (Version::V3_5, Language::De),
        (Version::V3_5, Language::Ru),
    ] {
        let w = world(version, language).await;
        let cfg = w.write("a.toml", &w.standard_config());
        let run = w.run(&cfg, &["sync"]).await;
        assert_eq!(run.code, 0, "{}", run.output());
        // The token is rotated to one Telegram refuses: the portal wipes the service.
        w.bao
            .kv1_put("kv1", "telegram/alpha", &[("token", BAD_TG)])
            .await;
        let run = w.run(&cfg, &["sync"]).await;
        run.assert_no_secrets(&[BAD_TG]);
        let what = format!("{version:?}/{language:?}: {}", run.output());
        assert_eq!(run.code, 1, "{what}");
        assert!(
            run.stdout.contains("telegram REFUSED by the portal"),
            "{what}"
        );
        assert!(
            run.stdout.contains("the previous values were restored"),
            "{what}"
        );
        assert_eq!(
            run.stderr
                .matches("INCIDENT: the portal refused the values")
                .count(),
            1,
            "{what}"
        );
        // Restored within the same run: the token that worked is back.
        assert_eq!(
            w.alpha.value("telegram", "telegramBotToken").as_deref(),
            Some(TG_ALPHA),
            "{what}"
        );
        assert_eq!(telegram_posts(&w.alpha), 3, "push, refused push, restore");
        // Later runs hold the refused value: nothing sent, still reported.
        for _ in 0..3 {
            let run = w.run(&cfg, &["sync"]).await;
            assert_eq!(run.code, 1, "{}", run.output());
            assert!(run.stdout.contains("telegram HELD"), "{}", run.output());
        }
        assert_eq!(
            telegram_posts(&w.alpha),
            3,
            "{what}: held, not pushed again"
        );
        assert_eq!(telegram_posts(&w.beta), 1);
        // On purpose, once more.
        let run = w.run(&cfg, &["sync", "--retry-refused"]).await;
        assert_eq!(run.code, 1, "{}", run.output());
        assert_eq!(telegram_posts(&w.alpha), 5, "the retry and its restore");
    }
}

/// One error shape of API doc §1: how to make the double answer it, and the words
/// authsync's report must carry for it.
struct Shape {
    name: &'static str,
    setup: fn(&PortalDouble),
    says: &'static str,
    /// Requests to the authservice endpoint: (GET, POST).
    requests: (usize, usize),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_shape_is_reported_distinctly_and_never_retried() {
    let shapes = [
        Shape {
            name: "portal being moved",
            setup: |d| d.set_portal_state(PortalState::Moving),
            says: "403 Forbidden with an empty body",
            requests: (1, 0),
        },
        Shape {
            name: "portal suspended",
            setup: |d| d.set_portal_state(PortalState::Suspended),
            says: "404 Not Found: the portal is suspended or the URL is wrong",
            requests: (1, 0),
        },
        Shape {
            name: "IP restriction",
            setup: |d| d.set_ip_restricted(true),
            says: "403 Forbidden by the portal's IP restriction",
            requests: (1, 0),
        },
        Shape {
            name: "tenant not paid",
            setup: |d| d.set_tenant_paid(false),
            says: "402 Payment Required with an empty body: the portal's tenant is not paid",
            requests: (1, 0),
        },
        Shape {
            name: "paid service on a plan without it",
            setup: |d| d.set_paid_allowed(false),
            says: "402 Payment Required (",
            requests: (2, 4),
        },
        Shape {
            name: "415 on a write",
            setup: |d| d.inject(Fault::once(FaultKind::EmptyBody(415)).with_method("POST")),
            says: "415 Unsupported Media Type",
            requests: (2, 4),
        },
        Shape {
            name: "key without write scope",
            setup: |d| d.inject(Fault::once(FaultKind::EmptyBody(403)).with_method("POST")),
            says: "403 Forbidden with an empty body: the API key lacks the *:write scope",
            requests: (2, 4),
        },
    ];
    for shape in shapes {
        let w = World::start().await;
        (shape.setup)(&w.alpha);
        let cfg = w.write("a.toml", &w.standard_config());
        let run = w.run(&cfg, &["sync"]).await;
        let what = format!("{}: {}", shape.name, run.output());
        assert_eq!(run.code, 1, "{what}");
        assert!(run.stdout.contains(shape.says), "{what}");
        assert_eq!(
            (
                w.alpha.count("GET", AUTHSERVICE),
                w.alpha.count("POST", AUTHSERVICE)
            ),
            shape.requests,
            "{what}: one attempt each, nothing retried"
        );
        // The other portal is untouched by alpha's problem.
        assert_eq!(w.beta.count("POST", AUTHSERVICE), 3, "{what}");
        for (other, _) in [
            ("403 Forbidden with an empty body", 0),
            ("404 Not Found", 0),
            ("IP restriction", 0),
            ("402 Payment Required with an empty body", 0),
            ("415 Unsupported", 0),
        ] {
            if !shape.says.contains(other) {
                assert!(!run.stdout.contains(other), "{what}: also says `{other}`");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_problem_is_a_refusal_that_changed_nothing() {
    // A portal stricter than its fields say (the double's limit lowered to 60).
    let strict = DoubleConfig {
        max_value_len: 60,
        ..double_config(ALPHA_KEY)
    };
    let w = World::start_with(strict, double_config(BETA_KEY)).await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w.run(&cfg, &["sync", "--service", "googlecloud"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout
            .contains("400 Bad Request, validation failed (Props[0].Value"),
        "{}",
        run.output()
    );
    assert!(run.stdout.contains("the service kept its previous values"));
    assert_eq!(w.alpha.count("POST", AUTHSERVICE), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_value_for_an_older_portal_is_refused_before_sending() {
    let w = world(Version::V3_5, Language::En).await;
    // A service-account JSON longer than the 255 characters portals before v3.7.1 keep.
    let long = format!(
        r#"{{"type":"service_account","private_key":"{}PLANTED-7777"}}"#,
        "k".repeat(300)
    );
    w.moto.put_secret_value("docspace/gcs", &long).await;
    let cfg = w.write("a.toml", &w.standard_config());
    let check = w.run(&cfg, &["check", "--online"]).await;
    assert_eq!(check.code, 1, "{}", check.output());
    assert!(
        check.stdout.contains("this portal stores at most 255")
            && check
                .stdout
                .contains("longest value it stores: 255 characters"),
        "{}",
        check.output()
    );
    let run = w.run(&cfg, &["sync"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout.contains("googlecloud FAILED: prop `json` is")
            && run
                .stdout
                .contains("accepts at most 255 (nothing was sent)"),
        "{}",
        run.output()
    );
    assert!(
        !posted(&w.alpha).iter().any(|(s, _)| s == "googlecloud"),
        "nothing sent"
    );
    // The same value fits a current portal.
    let w = world(Version::V3_7, Language::En).await;
    w.moto.put_secret_value("docspace/gcs", &long).await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w.run(&cfg, &["sync"]).await;
    assert_eq!(run.code, 0, "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_portal_that_stores_nothing_gets_a_clear_error_not_a_loop() {
    let w = world(Version::V3_5, Language::De).await;
    let cfg = w.write("a.toml", &w.standard_config());
    assert_eq!(w.run(&cfg, &["sync"]).await.code, 0);
    // The admin fixes google's keys in the server's config file: GET still lists the
    // service (authsync already read it), and a v3.5 POST answers `true`, storing nothing.
    w.alpha.set_default_consumers(true);
    w.rotate_google(GOOGLE_SECRET_2).await;
    let run = w.run(&cfg, &["sync", "--portal", "alpha"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout.contains("google REFUSED by the portal"),
        "{}",
        run.output()
    );
    let posts = w.alpha.count("POST", AUTHSERVICE);
    let run = w.run(&cfg, &["sync", "--portal", "alpha"]).await;
    assert!(run.stdout.contains("google HELD"), "{}", run.output());
    assert_eq!(
        w.alpha.count("POST", AUTHSERVICE),
        posts,
        "not pushed again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_sharing_keys_are_reported_not_flip_flopped() {
    let (bao, moto) = tokio::join!(testservers::OpenBao::start(), testservers::Moto::start());
    let alpha = PortalDouble::start(double_config(ALPHA_KEY))
        .await
        .expect("alpha");
    let beta = PortalDouble::start_sharing(
        DoubleConfig {
            api_keys: vec![ApiKey {
                key: BETA_KEY.into(),
                write: true,
                admin: true,
            }],
            ..DoubleConfig::default()
        },
        &alpha,
    )
    .await
    .expect("beta");
    assert!(alpha.shares_keys_with(&beta));
    let w = World::from_parts(bao, moto, alpha, beta).await;
    let cfg = w.write("a.toml", &w.standard_config());
    // telegram's token is per portal, so the maps give the one store two values.
    // The first sync pushes both portals at once: whether it already notices depends on
    // which read-back comes first (either way one of the two values is left).
    let first = w.run(&cfg, &["sync"]).await;
    assert!(first.code <= 1, "{}", first.output());
    let posts = w.posts();
    for _ in 0..3 {
        let run = w.run(&cfg, &["sync"]).await;
        assert_eq!(run.code, 1);
        assert!(
            run.stdout
                .contains("share their keys (one self-hosted installation)"),
            "{}",
            run.output()
        );
    }
    assert_eq!(w.posts(), posts, "no flip-flop: nothing pushed again");
    let check = w.run(&cfg, &["check", "--online"]).await;
    assert!(
        check
            .stdout
            .contains("portals alpha and beta hold exactly the same keys"),
        "{}",
        check.output()
    );
}
