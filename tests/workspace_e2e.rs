//! Workspace (Community Server) portals, best effort: login, the settings page as the
//! read side, the AjaxPro `SaveAuthKeys` call as the write side, against the portal
//! double's Workspace dialect, side by side with a DocSpace portal.

mod common;

use common::*;
use portal_double::{DoubleConfig, User};

const SAVE: &str = portal_double::WORKSPACE_SAVE_PATH;

fn workspace_double() -> DoubleConfig {
    DoubleConfig {
        users: vec![User {
            email: "admin@example.com".into(),
            password: "ws-pw-PLANTED".into(),
            admin: true,
            tfa: false,
        }],
        ..DoubleConfig::workspace()
    }
}

fn workspace_config(w: &World, maps: &str) -> String {
    w.config_with(&w.alpha.url(), &w.beta.url(), maps).replace(
        "api_key = { env = \"ALPHA_KEY\" }",
        "flavor = \"workspace\"\nuser = \"admin@example.com\"\npassword = { env = \"WS_PASSWORD\" }",
    )
}

fn saves(w: &World) -> Vec<(String, Vec<String>)> {
    posted(&w.alpha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_portal_is_synced_next_to_a_docspace_one() {
    let w = World::start_with(workspace_double(), double_config(BETA_KEY)).await;
    let cfg = w.write("ws.toml", &workspace_config(&w, STANDARD_MAPS));
    let mut env = w.env.clone();
    env.push(("WS_PASSWORD".into(), "ws-pw-PLANTED".into()));

    let run = authsync(&cfg, &["sync"], &env).await;
    run.assert_no_secrets(&["ws-pw-PLANTED"]);
    assert_eq!(run.code, 0, "{}", run.output());
    // Workspace names are capitalised; the [[map]] blocks use DocSpace names.
    assert_eq!(
        w.alpha.value("Google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET)
    );
    assert_eq!(
        w.alpha.value("Telegram", "telegramBotToken").as_deref(),
        Some(TG_ALPHA)
    );
    assert_eq!(
        w.alpha.value("S3", "secretaccesskey").as_deref(),
        Some(S3_SECRET)
    );
    assert_eq!(
        w.alpha.value("GoogleCloud", "json").as_deref(),
        Some(GCS_JSON)
    );
    assert_eq!(
        w.beta.value("google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET)
    );
    assert_eq!(w.alpha.count("POST", SAVE), 4);
    assert_eq!(
        w.alpha.login_count(),
        1,
        "one login for the page reads and the saves"
    );

    // In sync: no save at all.
    w.alpha.clear_requests();
    let again = authsync(&cfg, &["sync"], &env).await;
    assert_eq!(again.code, 0, "{}", again.output());
    assert_eq!(w.alpha.count("POST", SAVE), 0);

    // A rotation: one save for Google, carrying every prop of the service.
    w.rotate_google(GOOGLE_SECRET_2).await;
    w.alpha.clear_requests();
    let rotated = authsync(&cfg, &["sync"], &env).await;
    rotated.assert_no_secrets(&["ws-pw-PLANTED"]);
    assert_eq!(rotated.code, 0, "{}", rotated.output());
    assert_eq!(
        saves(&w),
        vec![(
            "Google".to_string(),
            vec![
                "googleClientId".to_string(),
                "googleClientSecret".to_string()
            ]
        )]
    );
    assert_eq!(
        w.alpha.value("Google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET_2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_workspace_service_is_refused_before_sending() {
    let w = World::start_with(workspace_double(), double_config(BETA_KEY)).await;
    let maps = r#"
[[map]]
service = "twilio"
portals = ["alpha"]
props.twilioAccountSid = { value = "AC-sid" }
"#;
    let cfg = w.write("partial.toml", &workspace_config(&w, maps));
    let mut env = w.env.clone();
    env.push(("WS_PASSWORD".into(), "ws-pw-PLANTED".into()));
    let run = authsync(&cfg, &["sync"], &env).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout
            .contains("Workspace saves every prop of `Twilio` together"),
        "{}",
        run.output()
    );
    assert_eq!(w.alpha.count("POST", SAVE), 0, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_needs_a_login_not_an_api_key() {
    let w = World::start_with(workspace_double(), double_config(BETA_KEY)).await;
    let text = w.standard_config().replace(
        "api_key = { env = \"ALPHA_KEY\" }",
        "api_key = { env = \"ALPHA_KEY\" }\nflavor = \"workspace\"",
    );
    let cfg = w.write("key.toml", &text);
    let run = authsync(&cfg, &["check"], &w.env).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stderr.contains("Workspace portals have no API keys"),
        "{}",
        run.output()
    );
}
