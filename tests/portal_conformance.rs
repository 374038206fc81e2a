//! One set of portal tests, run against every [`Portal`] implementation: the DocSpace
//! dialect on the portal double (v3.7 and v3.5), the Workspace dialect on the double's
//! Workspace flavor, and the in-memory fake the engine's unit tests use. What the engine
//! relies on must hold for each: the listing (contract names, what to write, limits), a
//! partial update, `false` when nothing changed, a read-back that proves what was
//! stored, a refusal that wipes the service, and errors that never quote a value.

use std::sync::Arc;
use std::time::Duration;

use authsync::config::{Flavor, PortalAuth, PortalConfig};
use authsync::portal::fake::FakePortal;
use authsync::portal::{Payload, Portal, PortalError, Retry};
use authsync::secret::{SecretSetting, SecretString};
use portal_double::{DoubleConfig, PortalDouble, User, Version};

const ID: &str = "client-id-PLANTED-conformance-1";
const SECRET: &str = "client-secret-PLANTED-conformance-2";
const ROTATED: &str = "client-secret-PLANTED-conformance-3";
const REFUSED: &str = "client-secret-PLANTED-refused-4";

/// The store behind a portal, as a test drives it (an admin's UI, the third party).
trait Backend {
    fn value(&self, service: &str, prop: &str) -> Option<String>;
    fn refuse(&self, service: &str, value: &str);
}

/// A double, addressed by the contract name (Workspace's double names services its way).
struct Double {
    double: PortalDouble,
    workspace: bool,
}

impl Double {
    fn name<'a>(&self, service: &'a str) -> &'a str {
        match (self.workspace, service) {
            (true, "google") => "Google",
            (_, s) => s,
        }
    }
}

impl Backend for Double {
    fn value(&self, service: &str, prop: &str) -> Option<String> {
        self.double.value(self.name(service), prop)
    }
    fn refuse(&self, service: &str, value: &str) {
        self.double.refuse(self.name(service), value);
    }
}

impl Backend for FakePortal {
    fn value(&self, service: &str, prop: &str) -> Option<String> {
        FakePortal::value(self, service, prop)
    }
    fn refuse(&self, service: &str, value: &str) {
        FakePortal::refuse(self, service, value);
    }
}

fn s(v: &str) -> SecretString {
    SecretString::from(v.to_string())
}

/// The suite. `expected_limit` is the value limit the listing must announce.
async fn conformance(
    what: &str,
    portal: &dyn Portal,
    backend: &dyn Backend,
    expected_limit: Option<usize>,
) {
    // The listing: contract names, what to write, the limit.
    let listing = portal
        .services(Retry::Normal)
        .await
        .unwrap_or_else(|e| panic!("{what}: list: {e}"));
    assert_eq!(listing.value_limit, expected_limit, "{what}");
    let google = listing
        .service("google")
        .unwrap_or_else(|| panic!("{what}: google is listed"))
        .clone();
    assert!(google.can_set, "{what}");
    assert!(
        google.prop("googleClientId").is_some() && google.prop("googleClientSecret").is_some(),
        "{what}"
    );
    if let Some(apple) = listing.service("appleid") {
        assert_eq!(
            apple.key, "appleid",
            "{what}: appleid is written by its configuration key"
        );
    }

    // Set both props: read back holds them, and so does the store.
    let both = Payload::new(
        "google",
        vec![
            ("googleClientId".into(), s(ID)),
            ("googleClientSecret".into(), s(SECRET)),
        ],
        listing.value_limit,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let changed = portal
        .set(&google, &both)
        .await
        .unwrap_or_else(|e| panic!("{what}: set: {e}"));
    assert!(changed, "{what}: a change answers true");
    let after = portal
        .services(Retry::Normal)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let now = after.service("google").unwrap_or_else(|| panic!("{what}"));
    assert!(
        both.held_by(now),
        "{what}: the read-back holds what was sent"
    );
    assert_eq!(
        backend.value("google", "googleClientSecret").as_deref(),
        Some(SECRET),
        "{what}"
    );

    // The same values again: `false`.
    let again = portal
        .set(now, &both)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(!again, "{what}: nothing changed answers false");

    // A partial update keeps the other prop.
    let one = Payload::new(
        "google",
        vec![("googleClientSecret".into(), s(ROTATED))],
        listing.value_limit,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    portal
        .set(now, &one)
        .await
        .unwrap_or_else(|e| panic!("{what}: partial: {e}"));
    assert_eq!(
        backend.value("google", "googleClientId").as_deref(),
        Some(ID),
        "{what}"
    );
    assert_eq!(
        backend.value("google", "googleClientSecret").as_deref(),
        Some(ROTATED),
        "{what}"
    );

    // A refused value: a 400-class refusal that never quotes the value, and the portal
    // wiped the service (what the engine's restore is for).
    backend.refuse("google", REFUSED);
    let bad = Payload::new(
        "google",
        vec![("googleClientSecret".into(), s(REFUSED))],
        listing.value_limit,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let err = portal.set(now, &bad).await.expect_err("refused");
    assert!(err.is_bad_request(), "{what}: {err}");
    let text = err.to_string();
    for v in [ID, SECRET, ROTATED, REFUSED] {
        assert!(
            !text.contains(v),
            "{what}: the error quotes a value: {text}"
        );
    }
    let wiped = portal
        .services(Retry::Normal)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        wiped.service("google").is_some_and(|g| g.is_empty()),
        "{what}: wiped"
    );

    // A value over the announced limit never leaves the process.
    if let Some(limit) = expected_limit {
        let long = "x".repeat(limit + 1);
        let err = Payload::new(
            "google",
            vec![("googleClientId".into(), s(&long))],
            listing.value_limit,
        )
        .expect_err("too long");
        assert!(matches!(err, PortalError::ValueTooLong { .. }), "{what}");
    }
}

fn docspace_config(url: &str, key: &str) -> PortalConfig {
    PortalConfig {
        url: url.parse().unwrap_or_else(|e| panic!("{e}")),
        flavor: Flavor::Docspace,
        auth: PortalAuth::ApiKey(SecretSetting::Literal(s(key))),
        timeout: Duration::from_secs(5),
        ca_cert: None,
    }
}

#[tokio::test]
async fn docspace_dialect_on_a_current_portal() {
    let double = PortalDouble::start(DoubleConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let portal = authsync::portal::connect("p", &docspace_config(&double.url(), "sk-test-admin"))
        .unwrap_or_else(|e| panic!("{e}"));
    let backend = Double {
        double,
        workspace: false,
    };
    conformance("DocSpace v3.7", portal.as_ref(), &backend, Some(4000)).await;
}

#[tokio::test]
async fn docspace_dialect_on_an_older_portal() {
    let double = PortalDouble::start(DoubleConfig::docspace(Version::V3_5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let portal = authsync::portal::connect("p", &docspace_config(&double.url(), "sk-test-admin"))
        .unwrap_or_else(|e| panic!("{e}"));
    let backend = Double {
        double,
        workspace: false,
    };
    conformance("DocSpace v3.5", portal.as_ref(), &backend, Some(255)).await;
}

#[tokio::test]
async fn workspace_dialect() {
    let double = PortalDouble::start(DoubleConfig {
        users: vec![User {
            email: "admin@example.com".into(),
            password: "pw-PLANTED".into(),
            admin: true,
            tfa: false,
        }],
        ..DoubleConfig::workspace()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = PortalConfig {
        flavor: Flavor::Workspace,
        auth: PortalAuth::Login {
            user: "admin@example.com".into(),
            password: SecretSetting::Literal(s("pw-PLANTED")),
        },
        ..docspace_config(&double.url(), "unused")
    };
    let portal = authsync::portal::connect("w", &cfg).unwrap_or_else(|e| panic!("{e}"));
    let backend = Double {
        double,
        workspace: true,
    };
    conformance("Workspace", portal.as_ref(), &backend, None).await;
}

#[tokio::test]
async fn the_in_memory_fake() {
    let fake = FakePortal::new("f");
    let portal: Arc<dyn Portal> = Arc::new(fake.clone());
    conformance("fake", portal.as_ref(), &fake, Some(4000)).await;
}
