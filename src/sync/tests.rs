//! The cycle's decisions, against in-memory sources and portals: no servers, each test
//! a few milliseconds. The wire protocols are proven by the end-to-end tests in `tests/`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{CycleOptions, Engine, Mode};
use crate::config::Config;
use crate::failure::FailureKind;
use crate::fingerprint::Fingerprinter;
use crate::mapping::Filter;
use crate::portal::fake::{Call, FakePortal};
use crate::portal::{Portal, PortalError};
use crate::report::{CycleReport, Outcome, Restore};
use crate::resolve::Freshness;
use crate::sources::fake::FakeSource;
use crate::sources::{Source, Sources};
use crate::state::{LastResult, State};

/// An engine over `portals` fakes and one store `kv`, with `extra` config lines.
struct World {
    engine: Engine,
    store: Arc<FakeSource>,
    portals: BTreeMap<String, FakePortal>,
    state: State,
}

const MAPS: &str = r#"
[[map]]
service = "google"
props.googleClientId = "kv:oauth/google#id"
props.googleClientSecret = "kv:oauth/google#secret"

[[map]]
service = "telegram"
props.telegramBotToken = "kv:tg/{portal}#token"
props.telegramBotName = { value = "docs_bot" }
"#;

fn config(portals: &[&str], sync: &str, maps: &str) -> Config {
    let mut text =
        format!("[sync]\n{sync}\n[sources.kv]\nkind = \"files\"\ndir = \"/nonexistent\"\n");
    for p in portals {
        text.push_str(&format!(
            "[portals.{p}]\nurl = \"http://127.0.0.1:1\"\napi_key = \"sk-test\"\n"
        ));
    }
    text.push_str(maps);
    crate::config::parse_valid(&text)
}

impl World {
    fn new(names: &[&str], sync: &str, maps: &str) -> World {
        let portals: BTreeMap<String, FakePortal> = names
            .iter()
            .map(|n| (n.to_string(), FakePortal::new(n)))
            .collect();
        World::with(portals, sync, maps)
    }

    fn with(portals: BTreeMap<String, FakePortal>, sync: &str, maps: &str) -> World {
        let names: Vec<&str> = portals.keys().map(String::as_str).collect();
        let config = Arc::new(config(&names, sync, maps));
        let store = Arc::new(FakeSource::new("fake"));
        store.put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-1")]);
        for n in &names {
            store.put(&format!("tg/{n}"), &[("token", &format!("TG-{n}-1"))]);
        }
        let sources = Sources::from_iter([("kv", store.clone() as Arc<dyn Source>)]);
        let clients: BTreeMap<String, Arc<dyn Portal>> = portals
            .iter()
            .map(|(n, p)| (n.clone(), Arc::new(p.clone()) as Arc<dyn Portal>))
            .collect();
        World {
            engine: Engine::from_parts(config, sources, clients, Fingerprinter::ephemeral()),
            store,
            portals,
            state: State::empty(),
        }
    }

    fn portal(&self, name: &str) -> &FakePortal {
        &self.portals[name]
    }

    async fn run(&mut self, opts: CycleOptions) -> CycleReport {
        self.engine
            .cycle(&Filter::default(), opts, &mut self.state)
            .await
    }

    async fn sync(&mut self) -> CycleReport {
        self.run(CycleOptions::once(Mode::Apply)).await
    }

    fn posts(&self) -> usize {
        self.portals.values().map(FakePortal::posts).sum()
    }

    fn clear_calls(&self) {
        self.portals.values().for_each(FakePortal::clear_calls);
    }
}

fn outcome<'a>(r: &'a CycleReport, portal: &str, service: &str) -> &'a Outcome {
    r.services()
        .find(|(p, s)| *p == portal && s.service == service)
        .map(|(_, s)| &s.outcome)
        .unwrap_or_else(|| panic!("no report for {portal}/{service}"))
}

#[tokio::test]
async fn rotation_pushes_only_the_changed_prop_and_a_quiet_cycle_sends_nothing() {
    let mut w = World::new(&["a", "b"], "", MAPS);
    let r = w.sync().await;
    assert!(r.is_ok(), "{}", crate::report::render(&r, true));
    assert_eq!(w.posts(), 4);
    assert_eq!(
        w.portal("a")
            .value("google", "googleClientSecret")
            .as_deref(),
        Some("SECRET-1")
    );
    assert_eq!(
        w.portal("b")
            .value("telegram", "telegramBotToken")
            .as_deref(),
        Some("TG-b-1")
    );

    w.clear_calls();
    let r = w.sync().await;
    assert!(r.is_ok());
    assert_eq!(w.posts(), 0, "nothing changed: no POST");

    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-2")]);
    let r = w.sync().await;
    assert!(r.is_ok());
    assert_eq!(r.pushed(), 2);
    for p in ["a", "b"] {
        assert_eq!(
            w.portal(p).calls().last(),
            Some(&Call::Get),
            "a read-back after the push"
        );
        let posted: Vec<_> = w
            .portal(p)
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Post { .. }))
            .collect();
        assert_eq!(
            posted,
            vec![Call::Post {
                service: "google".into(),
                props: vec!["googleClientSecret".into()]
            }]
        );
    }
}

#[tokio::test]
async fn a_missing_secret_skips_only_its_service_and_sends_nothing_for_it() {
    let mut w = World::new(&["a"], "", MAPS);
    w.portal("a")
        .set_value("telegram", "telegramBotToken", "KEEP");
    w.store.remove("tg/a");
    let r = w.sync().await;
    assert!(
        matches!(outcome(&r, "a", "telegram"), Outcome::Skipped(p) if p[0].kind == FailureKind::SecretNotFound)
    );
    assert!(matches!(outcome(&r, "a", "google"), Outcome::Pushed { .. }));
    assert_eq!(
        w.portal("a")
            .value("telegram", "telegramBotToken")
            .as_deref(),
        Some("KEEP")
    );
    assert_eq!(w.portal("a").posts(), 1);
    assert_eq!(
        w.state.service("a", "telegram").map(|s| s.result),
        Some(LastResult::Skipped)
    );
    // A missing secret is its service's problem; the store itself answered.
    assert_eq!(w.state.sources.get("kv").map(|s| s.ok), Some(true));

    // A store that is down is recorded as such (the status page's source health).
    w.store.fail(Some(crate::sources::SourceError::Unavailable(
        "connection refused".into(),
    )));
    w.sync().await;
    let kv = w.state.sources.get("kv").cloned().unwrap_or_default();
    assert!(!kv.ok);
    assert_eq!(kv.error_kind, Some(FailureKind::SourceUnavailable));
}

#[tokio::test]
async fn clearing_one_prop_carries_the_others_so_the_post_is_never_all_empty() {
    let maps = r#"
[[map]]
service = "google"
props.googleClientId = "kv:oauth/google#id"
props.googleClientSecret = { value = "" }
"#;
    let mut w = World::new(&["a"], "", maps);
    w.portal("a").set_value("google", "googleClientId", "ID-1");
    w.portal("a")
        .set_value("google", "googleClientSecret", "OLD");
    let r = w.sync().await;
    assert!(r.is_ok(), "{}", crate::report::render(&r, true));
    let posted = w.portal("a").calls();
    assert!(
        posted.contains(&Call::Post {
            service: "google".into(),
            props: vec!["googleClientSecret".into(), "googleClientId".into()]
        }),
        "{posted:?}"
    );
    assert_eq!(
        w.portal("a").value("google", "googleClientId").as_deref(),
        Some("ID-1")
    );
    assert_eq!(
        w.portal("a")
            .value("google", "googleClientSecret")
            .as_deref(),
        Some("")
    );
}

#[tokio::test]
async fn a_refusal_is_restored_held_everywhere_and_retried_only_on_purpose() {
    let mut w = World::new(&["a", "b"], "", MAPS);
    assert!(w.sync().await.is_ok());
    // The third party refuses the rotated token on portal a: the portal wipes the service.
    w.portal("a").refuse("telegram", "TG-a-2");
    w.store.put("tg/a", &[("token", "TG-a-2")]);
    w.clear_calls();
    let r = w.sync().await;
    match outcome(&r, "a", "telegram") {
        Outcome::Refused {
            restore, failure, ..
        } => {
            assert_eq!(*restore, Restore::Restored, "{failure}");
            assert_eq!(failure.kind, FailureKind::Refused);
        }
        other => panic!("{other:?}"),
    }
    // The previous values are back within the same cycle.
    assert_eq!(
        w.portal("a")
            .value("telegram", "telegramBotToken")
            .as_deref(),
        Some("TG-a-1")
    );
    assert_eq!(
        w.portal("a")
            .value("telegram", "telegramBotName")
            .as_deref(),
        Some("docs_bot")
    );
    assert_eq!(w.portal("a").posts(), 2, "the push and one restore");
    assert_eq!(
        w.state.service("a", "telegram").map(|s| s.result),
        Some(LastResult::Held)
    );

    // Held by every later cycle, whatever the mode — no portal request at all.
    w.clear_calls();
    for _ in 0..10 {
        let r = w.sync().await;
        assert!(matches!(outcome(&r, "a", "telegram"), Outcome::Held(_)));
    }
    let r = w.run(CycleOptions::once(Mode::Plan)).await;
    assert!(matches!(outcome(&r, "a", "telegram"), Outcome::Held(_)));
    assert_eq!(w.portal("a").posts(), 0);

    // A retry asked for on purpose tries once.
    let r = w
        .run(CycleOptions {
            retry_refused: true,
            ..CycleOptions::once(Mode::Apply)
        })
        .await;
    assert!(matches!(
        outcome(&r, "a", "telegram"),
        Outcome::Refused { .. }
    ));
    assert_eq!(w.portal("a").posts(), 2);

    // A fixed source value goes through.
    w.store.put("tg/a", &[("token", "TG-a-3")]);
    let r = w.sync().await;
    assert!(matches!(
        outcome(&r, "a", "telegram"),
        Outcome::Pushed { .. }
    ));
    assert_eq!(
        w.state.service("a", "telegram").map(|s| s.held.is_empty()),
        Some(true)
    );
}

#[tokio::test]
async fn a_refused_restore_is_reported_and_not_retried() {
    let mut w = World::new(&["a"], "", MAPS);
    assert!(w.sync().await.is_ok());
    w.portal("a").refuse("telegram", "TG-a-2");
    w.portal("a").refuse("telegram", "TG-a-1");
    w.store.put("tg/a", &[("token", "TG-a-2")]);
    w.clear_calls();
    let r = w.sync().await;
    assert!(matches!(
        outcome(&r, "a", "telegram"),
        Outcome::Refused {
            restore: Restore::Failed(_),
            ..
        }
    ));
    assert_eq!(w.portal("a").posts(), 2, "one push, one restore, no loop");
    assert_eq!(
        w.portal("a")
            .value("telegram", "telegramBotToken")
            .as_deref(),
        Some("")
    );
}

#[tokio::test]
async fn any_4xx_that_changed_the_service_is_a_refusal_and_a_lost_answer_is_read_back() {
    let mut w = World::new(&["a"], "", MAPS);
    assert!(w.sync().await.is_ok());
    // The answer to the POST is lost, but the values were stored: confirmed by read-back.
    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-2")]);
    w.portal("a")
        .fail_next_post_after_storing(PortalError::Timeout(std::time::Duration::from_secs(1)));
    let r = w.sync().await;
    assert!(matches!(outcome(&r, "a", "google"), Outcome::Pushed { .. }));

    // A 403 after the service changed anyway: a refusal that wiped it, restored.
    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-9")]);
    w.portal("a").refuse("google", "SECRET-9");
    w.portal("a")
        .fail_next_post_after_storing(PortalError::AccessDenied("Access denied".into()));
    let r = w.sync().await;
    assert!(
        matches!(
            outcome(&r, "a", "google"),
            Outcome::Refused {
                restore: Restore::Restored,
                ..
            }
        ),
        "{:?}",
        outcome(&r, "a", "google")
    );

    // A 403 that changed nothing is its own failure, not a refusal.
    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-3")]);
    w.portal("a")
        .fail_next_post(PortalError::ScopeOrPortalState);
    let r = w.sync().await;
    assert!(matches!(
        outcome(&r, "a", "google"),
        Outcome::Failed { failure, sent: true, .. } if failure.kind == FailureKind::PortalScopeOrState
    ));
}

#[tokio::test]
async fn a_portal_that_says_true_but_stores_nothing_is_refused_and_held() {
    let mut w = World::new(&["a"], "", MAPS);
    // Keys fixed in the server config after authsync read the list: `true`, nothing stored.
    assert!(w.sync().await.is_ok());
    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-2")]);
    w.portal("a")
        .fail_next_post(PortalError::BadRequest("Chiavi danneggiate".into()));
    let r = w.sync().await;
    match outcome(&r, "a", "google") {
        Outcome::Refused { restore, .. } => assert_eq!(*restore, Restore::NotNeeded),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.portal("a")
            .value("google", "googleClientSecret")
            .as_deref(),
        Some("SECRET-1")
    );
    let r = w.sync().await;
    assert!(matches!(outcome(&r, "a", "google"), Outcome::Held(_)));
}

#[tokio::test]
async fn appleid_is_read_as_listed_and_written_by_its_configuration_key() {
    let maps = r#"
[[map]]
service = "appleid"
props.appleIdClientId = { value = "com.example.docs" }
"#;
    let mut w = World::new(&["a"], "", maps);
    let r = w.sync().await;
    assert!(r.is_ok(), "{}", crate::report::render(&r, true));
    assert!(w.portal("a").calls().contains(&Call::Post {
        service: "appleid".into(),
        props: vec!["appleIdClientId".into()]
    }));
    assert_eq!(
        w.portal("a").value("appleid", "appleIdClientId").as_deref(),
        Some("com.example.docs")
    );
}

#[tokio::test]
async fn a_value_over_the_portals_limit_is_refused_before_sending() {
    let maps = r#"
[[map]]
service = "googlecloud"
props.json = "kv:gcs#json"
"#;
    let portals = BTreeMap::from([("a".to_string(), FakePortal::new("a").with_limit(Some(255)))]);
    let mut w = World::with(portals, "", maps);
    w.store.put("gcs", &[("json", &"x".repeat(300))]);
    let r = w.sync().await;
    assert!(matches!(
        outcome(&r, "a", "googlecloud"),
        Outcome::Failed { failure, sent: false, .. } if failure.kind == FailureKind::ValueTooLong && failure.message.contains("at most 255")
    ));
    assert_eq!(w.portal("a").posts(), 0);
}

#[tokio::test]
async fn drift_is_corrected_in_enforce_and_not_even_read_in_ignore() {
    let mut w = World::new(&["a"], "", MAPS);
    assert!(w.sync().await.is_ok());
    w.portal("a")
        .set_value("google", "googleClientId", "EDITED");
    let r = w.sync().await;
    assert!(matches!(
        outcome(&r, "a", "google"),
        Outcome::Pushed { drift: true, .. }
    ));

    let mut w = World::new(&["a"], "drift = \"ignore\"", MAPS);
    assert!(w.sync().await.is_ok());
    w.portal("a")
        .set_value("google", "googleClientId", "EDITED");
    w.clear_calls();
    let r = w
        .run(CycleOptions {
            freshness: Freshness::Versioned,
            ..CycleOptions::once(Mode::Apply)
        })
        .await;
    assert!(r.is_ok());
    assert!(
        w.portal("a").calls().is_empty(),
        "no portal request in a quiet ignore cycle"
    );
}

#[tokio::test]
async fn portals_sharing_one_key_store_are_reported_not_flip_flopped() {
    let a = FakePortal::new("a");
    let b = a.sharing("b");
    let portals = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
    // telegram's token is per portal, so the two maps disagree on a shared store.
    let mut w = World::with(portals, "", MAPS);
    w.sync().await;
    w.clear_calls();
    let mut reports = Vec::new();
    for _ in 0..3 {
        reports.push(w.sync().await);
    }
    assert_eq!(w.posts(), 0, "no flip-flop");
    let last = &reports[2];
    let shared = last
        .services()
        .filter(|(_, s)| s.service == "telegram")
        .filter(|(_, s)| matches!(&s.outcome, Outcome::Failed { failure, .. } if failure.kind == FailureKind::SharedKeys))
        .count();
    assert_eq!(shared, 1, "{}", crate::report::render(last, true));
    // google maps the same values to both: in sync on both.
    assert!(matches!(outcome(last, "a", "google"), Outcome::InSync));
    assert!(matches!(outcome(last, "b", "google"), Outcome::InSync));
}

const WAVES: &str = "rollout = [[\"w1\"], [\"w2-*\"], [\"*\"]]";

#[tokio::test]
async fn a_rollout_goes_wave_by_wave_and_a_refusal_halts_the_later_waves() {
    let names = ["w1", "w2-a", "w2-b", "w3-a", "w3-b"];
    let mut w = World::new(&names, WAVES, MAPS);
    assert!(w.sync().await.is_ok());
    // A good rotation reaches every wave within one one-shot cycle.
    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-2")]);
    let r = w.sync().await;
    assert_eq!(r.pushed(), 5, "{}", crate::report::render(&r, true));
    assert!(r
        .portals
        .iter()
        .all(|p| p.wave == crate::config::SyncConfig::default().wave_of(&p.portal) || p.wave <= 2));

    // A refused one touches wave 1 only, is restored there, and halts the others.
    w.portal("w1").refuse("google", "SECRET-3");
    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-3")]);
    w.clear_calls();
    let r = w.sync().await;
    assert!(matches!(
        outcome(&r, "w1", "google"),
        Outcome::Refused {
            restore: Restore::Restored,
            ..
        }
    ));
    for p in &names[1..] {
        assert!(
            matches!(outcome(&r, p, "google"), Outcome::Halted(_)),
            "{p}"
        );
        assert_eq!(w.portal(p).posts(), 0);
        assert_eq!(
            w.portal(p).value("google", "googleClientSecret").as_deref(),
            Some("SECRET-2")
        );
    }
    assert!(w.state.halts.get("google").is_some());
    // Still halted on the next cycles; telegram is unaffected.
    let r = w.sync().await;
    assert!(matches!(outcome(&r, "w3-b", "google"), Outcome::Halted(_)));
    assert!(matches!(outcome(&r, "w3-b", "telegram"), Outcome::InSync));

    // The source changes: the halt lifts and the new value goes wave by wave.
    w.store
        .put("oauth/google", &[("id", "ID-1"), ("secret", "SECRET-4")]);
    let r = w.sync().await;
    assert!(r.is_ok(), "{}", crate::report::render(&r, true));
    assert!(w.state.halts.is_empty());
    for p in names {
        assert_eq!(
            w.portal(p).value("google", "googleClientSecret").as_deref(),
            Some("SECRET-4")
        );
    }
}

#[tokio::test]
async fn the_daemon_soaks_a_wave_before_the_next_and_drift_is_not_staged() {
    let mut w = World::new(
        &["w1", "w2-a"],
        &format!("{WAVES}\nrollout_soak = \"1h\""),
        MAPS,
    );
    let daemon = CycleOptions {
        soak: true,
        ..CycleOptions::once(Mode::Apply)
    };
    // First start: everything is new, wave 2 waits for wave 1's soak.
    let r = w.run(daemon).await;
    assert!(matches!(
        outcome(&r, "w1", "google"),
        Outcome::Pushed { .. }
    ));
    match outcome(&r, "w2-a", "google") {
        Outcome::Waiting { ready_at, .. } => assert!(ready_at.is_some()),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.portal("w2-a").posts(), 0);
    // A one-shot sync does not soak.
    let r = w.sync().await;
    assert!(matches!(
        outcome(&r, "w2-a", "google"),
        Outcome::Pushed { .. }
    ));
    // A UI edit on wave 2 is corrected at once: drift back to confirmed values is not staged.
    w.portal("w2-a")
        .set_value("google", "googleClientId", "EDITED");
    let r = w.run(daemon).await;
    assert!(matches!(
        outcome(&r, "w2-a", "google"),
        Outcome::Pushed { drift: true, .. }
    ));
}

#[tokio::test]
async fn restart_from_the_state_file_pushes_nothing_in_sync_and_keeps_holds() {
    let mut w = World::new(&["a"], "drift = \"ignore\"", MAPS);
    assert!(w.sync().await.is_ok());
    w.portal("a").refuse("telegram", "TG-a-2");
    w.store.put("tg/a", &[("token", "TG-a-2")]);
    w.sync().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("state.json");
    w.state.save(&path).unwrap_or_else(|e| panic!("{e}"));
    // A new process: a fresh engine over the same portal, the state read back.
    let (state, problem) = State::load(&path);
    assert!(problem.is_none());
    let fp = w.engine.fingerprints.clone();
    let portals = w.portals.clone();
    let mut again = World::with(portals, "drift = \"ignore\"", MAPS);
    again.engine.fingerprints = fp;
    again.store.put("tg/a", &[("token", "TG-a-2")]);
    again.state = state;
    again.clear_calls();
    let r = again.sync().await;
    assert!(matches!(outcome(&r, "a", "telegram"), Outcome::Held(_)));
    assert!(matches!(outcome(&r, "a", "google"), Outcome::InSync));
    assert_eq!(again.posts(), 0);
}

#[tokio::test]
async fn filters_limit_the_cycle_to_the_chosen_targets() {
    let mut w = World::new(&["a", "b"], "", MAPS);
    let filter = Filter {
        portals: vec!["b".into()],
        services: vec!["google".into()],
        only: None,
    };
    let r = w
        .engine
        .cycle(&filter, CycleOptions::once(Mode::Apply), &mut w.state)
        .await;
    assert_eq!(r.services().count(), 1);
    assert_eq!(w.portal("a").calls().len(), 0);
    assert_eq!(w.portal("b").posts(), 1);
}

#[tokio::test]
async fn a_failing_portal_fails_alone() {
    let mut w = World::new(&["a", "b"], "", MAPS);
    w.portal("a").fail_next(PortalError::NotPaid);
    let r = w.sync().await;
    let a = r
        .portals
        .iter()
        .find(|p| p.portal == "a")
        .map(|p| p.failure.clone());
    assert_eq!(
        a.flatten().map(|f| f.kind),
        Some(FailureKind::PortalNotPaid)
    );
    assert!(r
        .portals
        .iter()
        .find(|p| p.portal == "b")
        .is_some_and(|p| p.is_ok()));
    assert_eq!(r.result(), "partial");
}
