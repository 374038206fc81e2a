//! DocSpace versions: GET's fields, the value limit, the catalogue and what a POST to an unknown
//! or config-fixed service gets (authservice-api.md §3–§4).

mod common;

use common::*;
use portal_double::{docspace_catalogue_for, DoubleConfig, PortalDouble, Version};
use serde_json::{json, Value};

const VERSIONS: [Version; 3] = [Version::V3_5, Version::V3_6, Version::V3_7];

async fn start_version(version: Version) -> PortalDouble {
    PortalDouble::start(DoubleConfig {
        version,
        ..config()
    })
    .await
    .unwrap()
}

fn find<'a>(services: &'a [Value], name: &str) -> &'a Value {
    services
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn get_fields_follow_the_version() {
    for version in VERSIONS {
        let portal = start_version(version).await;
        assert_eq!(portal.version(), version);
        let listed = services(&portal).await;
        let google = find(&listed, "google");
        let prop = &google["props"][0];
        let has_paid = google.get("paid").is_some();
        let has_type = prop.get("type").is_some();
        match version {
            Version::V3_5 => assert!(!has_paid && !has_type, "{google}"),
            Version::V3_6 => {
                assert!(has_paid && !has_type, "{google}");
                assert_eq!(find(&listed, "s3")["paid"], true);
            }
            Version::V3_7 => {
                assert!(has_paid && has_type, "{google}");
                assert!(listed
                    .iter()
                    .filter(|s| s["name"] != "externaldb")
                    .flat_map(|s| s["props"].as_array().unwrap())
                    .all(|p| p["type"] == "text"));
            }
        }
        // Every version lists the service the same otherwise.
        for field in ["name", "title", "description", "instruction", "canSet"] {
            assert!(google.get(field).is_some(), "{version:?} {field}");
        }
        assert_eq!(find(&listed, "appleID")["canSet"], true, "{version:?}");
    }
}

#[tokio::test]
async fn externaldb_props_carry_form_metadata_on_v3_7() {
    let listed = services(&start_version(Version::V3_7).await).await;
    let props = find(&listed, "externaldb")["props"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(props.len(), 8);
    let prop = |name: &str| props.iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(prop("databaseType")["type"], "select");
    assert_eq!(prop("databaseType")["options"], json!(["mysql", "sqlite"]));
    assert_eq!(prop("dbPassword")["type"], "password");
    assert_eq!(prop("dbHost")["dependsOn"], "databaseType");
    assert_eq!(prop("dbHost")["dependsOnValue"], "mysql");
    assert_eq!(prop("sqliteFilePath")["dependsOnValue"], "sqlite");
    assert!(props.iter().all(|p| p["value"] == ""));
}

#[tokio::test]
async fn catalogue_follows_the_version() {
    for version in VERSIONS {
        let listed = services(&start_version(version).await).await;
        let names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
        let v3_7_1 = version == Version::V3_7;
        assert_eq!(names.contains(&"externaldb"), v3_7_1, "{version:?}");
        assert_eq!(names.contains(&"nextcloud"), v3_7_1, "{version:?}");
        assert!(names.contains(&"telegram") && names.contains(&"weixin"));
        assert_eq!(names.len(), if v3_7_1 { 19 } else { 17 });
    }
    // The constructor sets both.
    let cfg = DoubleConfig::docspace(Version::V3_6);
    assert_eq!(cfg.version, Version::V3_6);
    assert_eq!(cfg.services, docspace_catalogue_for(Version::V3_6));
    assert_eq!(cfg.effective_max_value_len(), 255);
    assert_eq!(DoubleConfig::default().effective_max_value_len(), 4000);
}

#[tokio::test]
async fn value_limit_follows_the_version_unless_overridden() {
    for version in VERSIONS {
        let portal = start_version(version).await;
        let limit = version.max_value_len();
        let body = |n: usize| json!({"name": "googlecloud", "props": [{"name": "json", "value": "j".repeat(n)}]});
        assert_eq!(
            save(&portal, body(limit)).await.response(),
            true,
            "{version:?}"
        );
        let errors = save(&portal, body(limit + 1)).await.validation_errors();
        assert!(
            errors["Props[0].Value"][0]
                .as_str()
                .unwrap()
                .contains(&limit.to_string()),
            "{version:?}: {errors}"
        );
        assert_eq!(portal.value("googlecloud", "json").unwrap().len(), limit);
    }
    assert_eq!(Version::V3_5.max_value_len(), 255);
    assert_eq!(Version::V3_7.max_value_len(), 4000);
    // An explicit limit wins over the version's.
    let portal = PortalDouble::start(DoubleConfig {
        version: Version::V3_5,
        max_value_len: 300,
        ..config()
    })
    .await
    .unwrap();
    let body =
        json!({"name": "google", "props": [{"name": "googleClientId", "value": "i".repeat(300)}]});
    assert_eq!(save(&portal, body).await.response(), true);
}

#[tokio::test]
async fn appleid_is_listed_as_apple_id_and_posted_as_appleid_on_every_version() {
    for version in VERSIONS {
        let portal = start_version(version).await;
        assert!(services(&portal)
            .await
            .iter()
            .any(|s| s["name"] == "appleID"));
        let props = json!([{"name": "appleIdTeamId", "value": "team"}]);
        let reply = save(&portal, json!({"name": "appleid", "props": props})).await;
        assert_eq!(reply.response(), true, "{version:?}");
        assert_eq!(portal.value("appleid", "appleIdTeamId").unwrap(), "team");
    }
}

#[tokio::test]
async fn v3_6_and_later_refuse_unknown_and_fixed_services_with_403() {
    for version in [Version::V3_6, Version::V3_7] {
        let portal = start_version(version).await;
        for body in [
            json!({"name": "appleID", "props": [{"name": "appleIdTeamId", "value": "team"}]}),
            json!({"name": "nope", "props": [{"name": "x", "value": "y"}]}),
            json!({"name": "nope", "props": []}),
        ] {
            assert_eq!(
                save(&portal, body).await.error_message(403),
                "Access denied",
                "{version:?}"
            );
        }
        assert_eq!(portal.value("appleid", "appleIdTeamId").unwrap(), "");
    }
}

#[tokio::test]
async fn v3_5_answers_true_to_an_unknown_service_and_stores_nothing() {
    let portal = start_version(Version::V3_5).await;
    for name in ["appleID", "nope", "Google"] {
        let body = json!({"name": name, "props": [{"name": "appleIdTeamId", "value": "team"}]});
        assert_eq!(save(&portal, body).await.response(), true, "{name}");
    }
    assert_eq!(portal.value("appleid", "appleIdTeamId").unwrap(), "");
    assert!(portal.values("google").values().all(String::is_empty));
    // A null next to a value: the null matches the unknown prop's null, the value changes it.
    let body = json!({"name": "nope", "props": [{"name": "a", "value": null}, {"name": "b", "value": "x"}]});
    assert_eq!(save(&portal, body).await.response(), true);
}

#[tokio::test]
async fn v3_5_all_empty_to_an_unknown_service_is_415_read_only() {
    let portal = start_version(Version::V3_5).await;
    for props in [json!([]), json!([{"name": "appleIdTeamId", "value": ""}])] {
        let reply = save(&portal, json!({"name": "appleID", "props": props})).await;
        assert_eq!(reply.error_message(415), "Key for read only. Consumer ");
        assert_eq!(
            reply.json()["error"]["type"],
            "System.NotSupportedException"
        );
    }
    // `props` is read before the service: missing, it is the 400 even for an unknown name.
    let reply = save(&portal, json!({"name": "nope"})).await;
    assert!(reply.error_message(400).contains("props"));
}

#[tokio::test]
async fn v3_5_fixed_service_rules() {
    let mut cfg = DoubleConfig {
        version: Version::V3_5,
        ..config()
    };
    let google = cfg
        .services
        .iter_mut()
        .find(|s| s.name == "google")
        .unwrap();
    google.can_set = false;
    google.props[0].1 = "from-config".into();
    let portal = PortalDouble::start(cfg).await.unwrap();
    let listed = services(&portal).await;
    assert!(find(&listed, "google").get("props").is_none());

    // Clearing it: 415 naming the consumer.
    let reply = save(&portal, json!({"name": "google", "props": []})).await;
    assert_eq!(
        reply.error_message(415),
        "Key for read only. Consumer google"
    );
    // Changing a prop it manages: 415 naming the key (the consumer's setter throws).
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "other"}]});
    let reply = save(&portal, body).await;
    assert_eq!(
        reply.error_message(415),
        "Key for read only. Key googleClientId"
    );
    // Its configured value again: nothing differs.
    let body =
        json!({"name": "google", "props": [{"name": "googleClientId", "value": "from-config"}]});
    assert_eq!(save(&portal, body).await.response(), false);
    // A prop it does not manage: `true`, nothing stored.
    let body = json!({"name": "google", "props": [{"name": "extra", "value": "x"}]});
    assert_eq!(save(&portal, body).await.response(), true);
    assert_eq!(
        portal.values("google"),
        [
            ("googleClientId".to_owned(), "from-config".to_owned()),
            ("googleClientSecret".to_owned(), String::new())
        ]
        .into()
    );
}

#[tokio::test]
async fn a_default_catalogue_becomes_the_versions() {
    // `..DoubleConfig::default()` with an older version gets that version's catalogue.
    let portal = start_version(Version::V3_5).await;
    assert!(portal.values("externaldb").is_empty());
    assert!(!portal.values("telegram").is_empty());
    // A custom catalogue is kept as given, whatever the version.
    let portal = PortalDouble::start(DoubleConfig {
        version: Version::V3_6,
        services: vec![portal_double::ServiceSpec::new(
            "nextcloud",
            "Nextcloud",
            &["nextcloudBaseUrl"],
        )],
        ..config()
    })
    .await
    .unwrap();
    assert_eq!(portal.values("nextcloud").len(), 1);
}
