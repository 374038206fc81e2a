//! Doubles of one self-hosted installation share their keys (authservice-api.md §3), and every
//! recorded request carries a process-wide sequence number for ordering across doubles.

mod common;

use common::*;
use portal_double::{last_seq, ApiKey, DoubleConfig, Flavor, Language, PortalDouble};
use serde_json::json;

const OTHER_KEY: &str = "sk-other-admin";

fn other_config() -> DoubleConfig {
    DoubleConfig {
        api_keys: vec![ApiKey {
            key: OTHER_KEY.into(),
            write: true,
            admin: true,
        }],
        ..DoubleConfig::default()
    }
}

fn google(id: &str) -> serde_json::Value {
    json!({"name": "google", "props": [{"name": "googleClientId", "value": id}]})
}

#[tokio::test]
async fn shared_doubles_read_and_write_one_key_store() {
    let first = start().await;
    let second = PortalDouble::start_sharing(other_config(), &first)
        .await
        .unwrap();
    assert!(first.shares_keys_with(&second) && second.shares_keys_with(&first));
    assert_ne!(first.url(), second.url());

    assert_eq!(save(&first, google("from-first")).await.response(), true);
    assert_eq!(
        second.value("google", "googleClientId").unwrap(),
        "from-first"
    );
    let listed = get(&second, AUTHSERVICE, Auth::Key(OTHER_KEY))
        .await
        .response();
    let google_listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "google")
        .unwrap()
        .clone();
    assert_eq!(google_listed["props"][0]["value"], "from-first");

    // A client mapping another value to the second portal flips the first one too.
    let reply = post(
        &second,
        AUTHSERVICE,
        Auth::Key(OTHER_KEY),
        &google("from-second"),
    )
    .await;
    assert_eq!(reply.response(), true);
    assert_eq!(
        first.value("google", "googleClientId").unwrap(),
        "from-second"
    );
    assert_eq!(
        save(&first, google("from-first")).await.response(),
        true,
        "flip"
    );
    second.set_value("zoom", "zoomClientId", "z");
    assert_eq!(first.value("zoom", "zoomClientId").unwrap(), "z");
}

#[tokio::test]
async fn shared_doubles_keep_their_own_accounts_logs_and_settings() {
    let first = start().await;
    let second = PortalDouble::start_sharing(
        DoubleConfig {
            language: Language::De,
            ..other_config()
        },
        &first,
    )
    .await
    .unwrap();
    // Own accounts: each portal knows only its own key.
    get(&second, AUTHSERVICE, Auth::Key(ADMIN_KEY))
        .await
        .assert_empty(401);
    get(&first, AUTHSERVICE, Auth::Key(OTHER_KEY))
        .await
        .assert_empty(401);
    // Own request logs.
    assert_eq!(first.requests().len(), 1);
    assert_eq!(second.requests().len(), 1);
    assert_eq!(first.count("GET", AUTHSERVICE), 1);
    // Own faults and states.
    second.set_tenant_paid(false);
    assert_eq!(save(&first, google("x")).await.response(), true);
    post(&second, AUTHSERVICE, Auth::Key(OTHER_KEY), &google("y"))
        .await
        .assert_empty(402);
    second.set_tenant_paid(true);
    // Shared refusals, answered in each portal's language; the wipe is seen by both.
    first.refuse("google", "bad");
    let reply = post(&second, AUTHSERVICE, Auth::Key(OTHER_KEY), &google("bad")).await;
    assert_eq!(reply.error_message(400), "Schlechte Tasten");
    assert_eq!(first.value("google", "googleClientId").unwrap(), "");
    assert_eq!(
        save(&first, google("bad")).await.error_message(400),
        "Bad keys"
    );
    second.accept_all("google");
    assert_eq!(save(&first, google("bad")).await.response(), true);
}

#[tokio::test]
async fn sharing_is_transitive_and_needs_one_flavor() {
    let first = start().await;
    let second = PortalDouble::start_sharing(other_config(), &first)
        .await
        .unwrap();
    let third = PortalDouble::start_sharing(other_config(), &second)
        .await
        .unwrap();
    assert!(third.shares_keys_with(&first));
    third.set_value("box", "boxClientId", "b");
    assert_eq!(first.value("box", "boxClientId").unwrap(), "b");
    let alone = start().await;
    assert!(!alone.shares_keys_with(&first));
    assert_eq!(alone.value("box", "boxClientId").unwrap(), "");

    let error = PortalDouble::start_sharing(DoubleConfig::workspace(), &first)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let ws = PortalDouble::start(DoubleConfig::workspace())
        .await
        .unwrap();
    let ws2 = PortalDouble::start_sharing(DoubleConfig::workspace(), &ws)
        .await
        .unwrap();
    assert_eq!(ws2.flavor(), Flavor::Workspace);
    ws.set_value("Google", "googleClientId", "g");
    assert_eq!(ws2.value("Google", "googleClientId").unwrap(), "g");
}

#[tokio::test]
async fn requests_carry_a_process_wide_sequence_across_doubles() {
    let wave1 = [start().await, start().await];
    let wave2 = [start().await, start().await];
    let mark = last_seq();
    for portal in &wave1 {
        save(portal, google("v2")).await.response();
        get(portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await;
    }
    for portal in &wave2 {
        save(portal, google("v2")).await.response();
    }
    let posts = |portals: &[PortalDouble]| -> Vec<portal_double::RecordedRequest> {
        portals
            .iter()
            .flat_map(|p| p.requests())
            .filter(|r| r.method == "POST")
            .collect()
    };
    let (first, second) = (posts(&wave1), posts(&wave2));
    assert_eq!((first.len(), second.len()), (2, 2));
    let last_of_first = first.iter().map(|r| r.seq).max().unwrap();
    let first_of_second = second.iter().map(|r| r.seq).min().unwrap();
    assert!(last_of_first < first_of_second);
    assert!(first.iter().chain(&second).all(|r| r.seq > mark));
    let latest_first = first.iter().map(|r| r.at).max().unwrap();
    assert!(second.iter().all(|r| r.at >= latest_first));
    assert!(last_seq() >= first_of_second);

    // Within a double the log is in sequence order.
    let log = wave1[0].requests();
    assert!(log
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
}

#[tokio::test]
async fn concurrent_requests_to_several_doubles_get_unique_sequence_numbers() {
    let portals = [start().await, start().await, start().await];
    let mut tasks = tokio::task::JoinSet::new();
    for portal in &portals {
        for i in 0..5 {
            let request = client()
                .post(format!("{}{AUTHSERVICE}", portal.url()))
                .header("Authorization", format!("Bearer {ADMIN_KEY}"))
                .json(&google(&format!("v{i}")));
            tasks.spawn(async move { request.send().await.unwrap().status().as_u16() });
        }
    }
    let statuses = tasks.join_all().await;
    assert_eq!(statuses, vec![200; 15]);
    let mut seqs: Vec<u64> = portals
        .iter()
        .flat_map(|p| p.requests())
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs.len(), 15);
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 15, "unique");
}
