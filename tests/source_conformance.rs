//! One set of source tests, run against every store: Vault KV v2 and KV v1 (OpenBao),
//! AWS Secrets Manager (moto), a files directory and the in-memory fake.
//!
//! [`conformance`] is the contract the engine relies on: a found secret and a missing
//! one are told apart (`NotFound` is no other error); fields are picked the same way
//! everywhere; versions move on a write and stay put without one, and agree between
//! `versions` and `read`; `read_many` answers exactly what `read` answers; a version
//! carries its creation time where the store has one; "denied" and "unavailable" are
//! distinct errors (where the store can be made to deny); no error text ever holds a
//! secret value. Each store only says how to write a secret ([`Seeder`]).
//!
//! Stores are built from config text through `Sources::connect`, as the binary does.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use authsync::secret::ExposeSecret;
use authsync::sources::{
    fake::FakeSource, Content, Secret, Source, SourceError, Sources, ValueError,
};
use testservers::{Moto, OpenBao};

/// Planted in every secret written here; no error text may contain it.
const PLANTED: &str = "PLANTED-conformance";

/// How a test writes to one store, and what the store is expected to offer.
#[async_trait]
trait Seeder: Sync {
    /// The store's path for a logical secret name.
    fn path(&self, name: &str) -> String;
    /// Writes a new version of `name` holding these fields (a JSON object in stores
    /// whose secrets are one text).
    async fn put(&self, name: &str, fields: &[(&str, &str)]);
    /// Whether secrets come as named fields (Vault) rather than one text (AWS, files).
    fn fields_native(&self) -> bool;
    /// Whether versions are cheap (`versions` answers `Some`).
    fn versioned(&self) -> bool;
    /// Whether a read carries the version's creation time.
    fn created_on_read(&self) -> bool;
    /// Whether `version_info` carries it too.
    fn created_in_metadata(&self) -> bool;
}

fn json_of(fields: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Every error text seen, to scan for planted values at the end.
#[derive(Default)]
struct Errors(Mutex<Vec<String>>);

impl Errors {
    fn note(&self, e: &dyn std::fmt::Display) -> String {
        let text = e.to_string();
        self.0.lock().unwrap().push(text.clone());
        text
    }
}

fn value_of(s: &Secret, key: Option<&str>) -> Result<String, ValueError> {
    s.value(key).map(|v| v.expose_secret().to_string())
}

/// The contract, against `store` (written through `seed`). `denied` and `unavailable`
/// are the same kind of store made to refuse authsync / unreachable, where possible.
async fn conformance(
    store: &dyn Source,
    seed: &dyn Seeder,
    denied: Option<&dyn Source>,
    unavailable: Option<&dyn Source>,
) {
    let errors = Errors::default();
    let started = SystemTime::now() - Duration::from_secs(2);
    let secret_value = format!("secret-{PLANTED}-1");
    let (pair, single, missing) = (seed.path("pair"), seed.path("single"), seed.path("nope"));
    seed.put("pair", &[("id", "ID-1"), ("secret", &secret_value)])
        .await;
    seed.put("single", &[("only", &format!("only-{PLANTED}"))])
        .await;

    // Found and missing are told apart.
    let read = store.read(&pair).await.expect("read a written secret");
    assert_eq!(value_of(&read, Some("id")).as_deref(), Ok("ID-1"));
    assert_eq!(
        value_of(&read, Some("secret")).as_deref(),
        Ok(secret_value.as_str())
    );
    match store.read(&missing).await {
        Err(SourceError::NotFound) => {}
        Err(other) => panic!("a missing secret is NotFound, not: {}", errors.note(&other)),
        Ok(_) => panic!("a missing secret was read"),
    }

    // Fields versus the whole value.
    let key_err = value_of(&read, Some("nope")).expect_err("no such key");
    assert!(
        matches!(key_err, ValueError::NoKey { .. }),
        "{}",
        errors.note(&key_err)
    );
    let one = store.read(&single).await.expect("read single");
    let whole = value_of(&one, None).expect("the whole value of a one-field secret");
    if seed.fields_native() {
        assert!(matches!(one.content, Content::Fields(_)));
        assert_eq!(
            whole,
            format!("only-{PLANTED}"),
            "a field secret's only field"
        );
        let two = value_of(&read, None).expect_err("two fields: which one?");
        assert_eq!(two, ValueError::Ambiguous(2), "{}", errors.note(&two));
    } else {
        assert!(matches!(one.content, Content::Text(_)));
        let parsed: serde_json::Value = serde_json::from_str(&whole).expect("the text itself");
        assert_eq!(parsed["only"], format!("only-{PLANTED}"));
    }

    // Versions: agree with reads, move on a write, stay without one.
    let paths = vec![pair.clone(), missing.clone()];
    let v1 = store.versions(&paths).await;
    let first = v1.get(&pair).cloned().expect("an answer per path");
    let first = first.unwrap_or_else(|e| panic!("versions: {}", errors.note(&e)));
    if seed.versioned() {
        assert!(first.is_some(), "a versioned store reports a version");
        assert_eq!(first, read.version, "versions and read agree");
    } else {
        assert_eq!(first, None, "no cheap version: None, so the caller reads");
        assert_eq!(read.version, None);
    }
    assert!(
        matches!(
            v1.get(&missing),
            Some(Ok(None)) | Some(Err(SourceError::NotFound))
        ),
        "a missing secret has no version"
    );
    let again = store.versions(&paths).await;
    assert_eq!(
        again.get(&pair).cloned().and_then(Result::ok),
        Some(first.clone()),
        "no write, no new version"
    );
    seed.put(
        "pair",
        &[
            ("id", "ID-2-longer"),
            ("secret", &format!("{secret_value}-2")),
        ],
    )
    .await;
    let reread = store.read(&pair).await.expect("read after a write");
    assert_eq!(value_of(&reread, Some("id")).as_deref(), Ok("ID-2-longer"));
    if seed.versioned() {
        let moved = store.versions(&paths).await;
        let moved = moved.get(&pair).cloned().and_then(Result::ok).flatten();
        assert!(
            moved.is_some() && moved != first,
            "a write moves the version"
        );
        assert_eq!(
            moved, reread.version,
            "versions and read agree after a write"
        );
        assert_ne!(reread.version, read.version);
    }

    // Creation times, where the store keeps them.
    if seed.created_on_read() {
        let created = reread
            .created
            .expect("a read carries its version's creation time");
        assert!(
            created >= started && created <= SystemTime::now() + Duration::from_secs(2),
            "created {created:?} is the write's time"
        );
    } else {
        assert_eq!(reread.created, None);
    }
    let info = store.version_info(std::slice::from_ref(&pair)).await;
    let info = info.get(&pair).cloned().and_then(Result::ok).flatten();
    if seed.created_in_metadata() {
        let info = info.expect("version info");
        assert_eq!(Some(info.id), reread.version);
        assert_eq!(info.created, reread.created, "metadata and read agree");
    }

    // read_many answers what read answers, path by path.
    let many_paths = vec![pair.clone(), single.clone(), missing.clone()];
    let many = store.read_many(&many_paths).await;
    assert_eq!(many.len(), many_paths.len(), "one answer per path");
    for p in &many_paths {
        let one = store.read(p).await;
        match (many.get(p), &one) {
            (Some(Ok(a)), Ok(b)) => {
                assert_eq!(a.version, b.version, "{p}");
                assert_eq!(a.created, b.created, "{p}");
                for key in ["id", "secret", "only"] {
                    assert_eq!(value_of(a, Some(key)), value_of(b, Some(key)), "{p}#{key}");
                }
            }
            (Some(Err(a)), Err(b)) => assert_eq!(a, b, "{p}"),
            _ => panic!("read_many and read disagree on {p}"),
        }
    }

    // Not JSON where a text store is asked for a field: the text is never quoted.
    if !seed.fields_native() {
        let text = format!("not json {PLANTED}");
        seed.put("plain", &[("", &text)]).await;
        if let Ok(s) = store.read(&seed.path("plain")).await {
            if let Err(e) = s.value(Some("k")) {
                errors.note(&e);
            }
        }
    }

    // Denied and unavailable are distinct, and neither is "not found".
    if let Some(denied) = denied {
        match denied.read(&pair).await {
            Err(e @ SourceError::Denied(_)) => {
                errors.note(&e);
            }
            Err(other) => panic!("expected Denied, got: {}", errors.note(&other)),
            Ok(_) => panic!("a store that denies authsync answered"),
        }
    }
    if let Some(down) = unavailable {
        match down.read(&pair).await {
            Err(e @ SourceError::Unavailable(_)) => {
                errors.note(&e);
            }
            Err(other) => panic!("expected Unavailable, got: {}", errors.note(&other)),
            Ok(_) => panic!("an unreachable store answered"),
        }
        let versions = down.versions(std::slice::from_ref(&pair)).await;
        if let Some(Err(e)) = versions.get(&pair) {
            assert!(!matches!(e, SourceError::NotFound), "{}", errors.note(e));
            errors.note(e);
        }
    }

    // No secret value in any error text.
    for text in errors.0.lock().unwrap().iter() {
        assert!(!text.contains(PLANTED), "an error quotes a secret: {text}");
    }
}

// ------------------------------------------------------------------------------------
// Stores
// ------------------------------------------------------------------------------------

/// The AWS SDK reads credentials from the environment. Every test sets them first, once
/// per process, before it starts anything that reads the environment.
fn aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(k, v);
        }
        for k in [
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        ] {
            std::env::remove_var(k);
        }
    });
}

/// Sources built from `[sources.*]` blocks (plus the minimum a config needs).
async fn connect(sources_toml: &str) -> Sources {
    let text = format!(
        "{sources_toml}\n[portals.p]\nurl = \"https://docs.example.com\"\napi_key = \"k\"\n"
    );
    let loaded = authsync::config::parse(&text, Path::new("conformance.toml"))
        .unwrap_or_else(|e| panic!("config: {e}"));
    let (sources, failed) = Sources::connect(&loaded.config).await;
    assert!(
        failed.is_empty(),
        "{:?}",
        failed
            .iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect::<Vec<_>>()
    );
    sources
}

fn get(sources: &Sources, name: &str) -> Arc<dyn Source> {
    sources.get(name).cloned().expect("source built")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    testservers::free_port()
}

struct Kv2<'a>(&'a OpenBao);

#[async_trait]
impl Seeder for Kv2<'_> {
    fn path(&self, name: &str) -> String {
        format!("secret/conf/{name}")
    }
    async fn put(&self, name: &str, fields: &[(&str, &str)]) {
        self.0
            .kv2_put("secret", &format!("conf/{name}"), fields)
            .await;
    }
    fn fields_native(&self) -> bool {
        true
    }
    fn versioned(&self) -> bool {
        true
    }
    fn created_on_read(&self) -> bool {
        true
    }
    fn created_in_metadata(&self) -> bool {
        true
    }
}

struct Kv1<'a>(&'a OpenBao);

#[async_trait]
impl Seeder for Kv1<'_> {
    fn path(&self, name: &str) -> String {
        format!("kv1/conf/{name}")
    }
    async fn put(&self, name: &str, fields: &[(&str, &str)]) {
        self.0.kv1_put("kv1", &format!("conf/{name}"), fields).await;
    }
    fn fields_native(&self) -> bool {
        true
    }
    fn versioned(&self) -> bool {
        false
    }
    fn created_on_read(&self) -> bool {
        false
    }
    fn created_in_metadata(&self) -> bool {
        false
    }
}

/// Vault sources on `bao`: the root token, a token whose policy grants nothing, and an
/// address nobody listens on.
async fn vault_sources(bao: &OpenBao) -> Sources {
    bao.put_policy("nothing", "path \"other/*\" { capabilities = [\"read\"] }")
        .await;
    let weak = bao.create_token(&["nothing"], "1h").await;
    connect(&format!(
        r#"
[sources.vault]
kind = "vault"
address = "{addr}"
auth = {{ method = "token", token = "{root}" }}

[sources.denied]
kind = "vault"
address = "{addr}"
auth = {{ method = "token", token = "{weak}" }}

[sources.down]
kind = "vault"
address = "http://127.0.0.1:{port}"
timeout = "2s"
auth = {{ method = "token", token = "{root}" }}
"#,
        addr = bao.addr(),
        root = bao.root_token(),
        port = closed_port(),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_kv2_conforms() {
    aws_env();
    let bao = OpenBao::start().await;
    let s = vault_sources(&bao).await;
    let (denied, down) = (get(&s, "denied"), get(&s, "down"));
    conformance(
        get(&s, "vault").as_ref(),
        &Kv2(&bao),
        Some(denied.as_ref()),
        Some(down.as_ref()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_kv1_conforms() {
    aws_env();
    let bao = OpenBao::start().await;
    bao.enable_kv1("kv1").await;
    let s = vault_sources(&bao).await;
    let (denied, down) = (get(&s, "denied"), get(&s, "down"));
    conformance(
        get(&s, "vault").as_ref(),
        &Kv1(&bao),
        Some(denied.as_ref()),
        Some(down.as_ref()),
    )
    .await;
}

struct Aws<'a> {
    moto: &'a Moto,
    created: Mutex<HashSet<String>>,
}

#[async_trait]
impl Seeder for Aws<'_> {
    fn path(&self, name: &str) -> String {
        format!("conf/{name}")
    }
    async fn put(&self, name: &str, fields: &[(&str, &str)]) {
        let text = match fields {
            [("", text)] => text.to_string(),
            _ => json_of(fields),
        };
        let path = self.path(name);
        let new = self.created.lock().unwrap().insert(path.clone());
        if new {
            self.moto.create_secret(&path, &text).await;
        } else {
            self.moto.put_secret_value(&path, &text).await;
        }
    }
    fn fields_native(&self) -> bool {
        false
    }
    fn versioned(&self) -> bool {
        true
    }
    fn created_on_read(&self) -> bool {
        true
    }
    fn created_in_metadata(&self) -> bool {
        // ListSecrets has no version dates.
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_secrets_manager_conforms() {
    aws_env();
    let moto = Moto::start().await;
    let s = connect(&format!(
        r#"
[sources.aws]
kind = "aws"
region = "us-east-1"
endpoint_url = "{endpoint}"

[sources.down]
kind = "aws"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{port}"
timeout = "2s"
"#,
        endpoint = moto.endpoint(),
        port = closed_port(),
    ))
    .await;
    let seed = Aws {
        moto: &moto,
        created: Mutex::default(),
    };
    // moto grants every request: there is no way to make it deny.
    let down = get(&s, "down");
    conformance(get(&s, "aws").as_ref(), &seed, None, Some(down.as_ref())).await;
}

struct Files(PathBuf);

#[async_trait]
impl Seeder for Files {
    fn path(&self, name: &str) -> String {
        format!("{name}.json")
    }
    async fn put(&self, name: &str, fields: &[(&str, &str)]) {
        let text = match fields {
            [("", text)] => text.to_string(),
            _ => json_of(fields),
        };
        // Written beside and renamed, as Kubernetes swaps a Secret's files.
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, format!("{text}\n")).unwrap();
        std::fs::rename(&tmp, self.0.join(self.path(name))).unwrap();
    }
    fn fields_native(&self) -> bool {
        false
    }
    fn versioned(&self) -> bool {
        true
    }
    fn created_on_read(&self) -> bool {
        true
    }
    fn created_in_metadata(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_conform() {
    aws_env();
    let dir = tempfile::tempdir().unwrap();
    let s = connect(&format!(
        "[sources.files]\nkind = \"files\"\ndir = \"{}\"\n",
        dir.path().display()
    ))
    .await;
    // Tests run as root here, so a file mode cannot deny a read; a directory has no
    // "down" state either.
    conformance(
        get(&s, "files").as_ref(),
        &Files(dir.path().to_path_buf()),
        None,
        None,
    )
    .await;
}

struct Fake(Arc<FakeSource>);

#[async_trait]
impl Seeder for Fake {
    fn path(&self, name: &str) -> String {
        format!("secret/conf/{name}")
    }
    async fn put(&self, name: &str, fields: &[(&str, &str)]) {
        self.0.put(&self.path(name), fields);
    }
    fn fields_native(&self) -> bool {
        true
    }
    fn versioned(&self) -> bool {
        true
    }
    fn created_on_read(&self) -> bool {
        true
    }
    fn created_in_metadata(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_conforms() {
    let fake = Arc::new(FakeSource::new("vault"));
    let denied = FakeSource::new("vault");
    denied.fail(Some(SourceError::Denied("permission denied".into())));
    let down = FakeSource::new("vault");
    down.fail(Some(SourceError::Unavailable("cannot connect".into())));
    let sources = Sources::from_iter([("vault", fake.clone() as Arc<dyn Source>)]);
    let store = sources.get("vault").cloned().expect("inserted");
    conformance(
        store.as_ref(),
        &Fake(fake.clone()),
        Some(&denied),
        Some(&down),
    )
    .await;
    assert!(fake.reads() > 0 && fake.version_checks() > 0);
}
