//! The MongoDB backend against a real server (`SATCHEL_MONGODB_URL`, default
//! `mongodb://127.0.0.1:27017`; `SATCHEL_SKIP_MONGODB=1` skips).
//!
//! The conformance suite shares one database per test process (`satchel_test_<random>`; keys are
//! unique per case, so cases do not collide). Every other test uses a database of its own and
//! drops it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use satchel_core::{Backend, ConfigError, SessionConfig, SessionId, testkit};
use satchel_mongodb::MongoBackend;
use satchel_mongodb::mongodb::bson::spec::BinarySubtype;
use satchel_mongodb::mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use satchel_mongodb::mongodb::options::{ClientOptions, IndexOptions};
use satchel_mongodb::mongodb::{Client, Collection, Database, IndexModel};

const LONG: Duration = Duration::from_secs(300);

fn url() -> String {
    std::env::var("SATCHEL_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

fn random_db_name() -> String {
    let id = SessionId::generate(32).unwrap();
    format!("satchel_test_{}", &id.as_str()[..16])
}

/// One database for the whole conformance suite in this process.
fn suite_db() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(random_db_name)
}

fn config(db: &str) -> SessionConfig {
    let mut config = SessionConfig::default();
    config.mongodb = Some(url());
    config.mongodb_db = db.to_owned();
    // The test server is a Python process sharing two cores with the whole parallel test run;
    // 500 concurrent sessions can queue past the 5 s production default there. Tests that are
    // about timeouts set their own.
    config.operation_timeout = Duration::from_secs(60);
    config
}

async fn connect(db: &str) -> MongoBackend {
    MongoBackend::connect(&config(db))
        .await
        .unwrap_or_else(|e| panic!("MongoDB backend at {} did not start: {e}", url()))
}

satchel_core::conformance_suite!("MONGODB", connect(suite_db()));

/// Runs `body` with a fresh database name unless the backend is skipped, then drops that database.
fn with_db<F, Fut>(body: F)
where
    F: FnOnce(String, Database) -> Fut,
    Fut: Future<Output = ()>,
{
    if testkit::skipped("MONGODB") {
        return;
    }
    testkit::run(async {
        let name = random_db_name();
        let raw = raw_client().await.database(&name);
        body(name, raw.clone()).await;
        raw.drop().await.expect("drop the test database");
    });
}

/// A driver client of the test's own, to look at what the backend wrote.
async fn raw_client() -> Client {
    let mut options = ClientOptions::parse(url())
        .await
        .expect("SATCHEL_MONGODB_URL parses");
    options.server_selection_timeout = Some(Duration::from_secs(5));
    Client::with_options(options).expect("a raw client")
}

fn sessions(db: &Database) -> Collection<Document> {
    db.collection("sessions")
}

async fn raw_find(db: &Database, key: &str) -> Option<Document> {
    sessions(db)
        .find_one(doc! { "id": key })
        .await
        .expect("raw find")
}

async fn indexes(db: &Database) -> Vec<Document> {
    let mut cursor = sessions(db)
        .list_indexes()
        .await
        .expect("list indexes")
        .with_type::<Document>();
    let mut all = Vec::new();
    while cursor.advance().await.expect("next index") {
        all.push(cursor.deserialize_current().expect("index document"));
    }
    all
}

fn ago(seconds: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() - seconds * 1000)
}

fn generic(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

#[test]
fn documents_have_flask_sessions_field_names_and_bson_types() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        for (how, key) in [
            ("store", testkit::fresh_key()),
            ("insert", testkit::fresh_key()),
        ] {
            let before = DateTime::now().timestamp_millis();
            if how == "store" {
                backend
                    .store(&key, b"\x81\xa1a\x00\xff", LONG)
                    .await
                    .unwrap();
            } else {
                assert!(
                    backend
                        .insert(&key, b"\x81\xa1a\x00\xff", LONG)
                        .await
                        .unwrap()
                );
            }
            let after = DateTime::now().timestamp_millis();

            let document = raw_find(&db, &key).await.expect("the document is there");
            assert_eq!(
                document.get("id"),
                Some(&Bson::String(key.clone())),
                "{how}: id"
            );
            match document.get("val") {
                Some(Bson::Binary(Binary {
                    subtype: BinarySubtype::Generic,
                    bytes,
                })) => {
                    assert_eq!(bytes, b"\x81\xa1a\x00\xff", "{how}: val bytes")
                }
                other => panic!("{how}: val is not binary subtype 0: {other:?}"),
            }
            let expiration = document
                .get_datetime("expiration")
                .expect("expiration is a date");
            let ttl = LONG.as_millis() as i64;
            assert!(
                (before + ttl..=after + ttl).contains(&expiration.timestamp_millis()),
                "{how}: expiration {expiration} is not now + {LONG:?}"
            );
            let fields: Vec<&str> = document.keys().map(String::as_str).collect();
            assert_eq!(
                fields.len(),
                4,
                "{how}: only _id, id, val, expiration: {fields:?}"
            );
            assert!(
                document.get_object_id("_id").is_ok(),
                "{how}: _id is an ObjectId"
            );
        }
    });
}

#[test]
fn ttl_and_unique_indexes_are_created_with_the_right_options() {
    with_db(|name, db| async move {
        connect(&name).await;
        let all = indexes(&db).await;
        let by_name = |wanted: &str| {
            all.iter()
                .find(|i| i.get_str("name") == Ok(wanted))
                .unwrap_or_else(|| panic!("no index {wanted} in {all:?}"))
        };
        let ttl = by_name("expiration_1");
        assert_eq!(ttl.get_document("key").unwrap(), &doc! { "expiration": 1 });
        let after = ttl.get("expireAfterSeconds").expect("a TTL index");
        assert!(matches!(after, Bson::Int32(0) | Bson::Int64(0)) || after == &Bson::Double(0.0));
        assert!(!ttl.get_bool("unique").unwrap_or(false));

        let id = by_name("id_1");
        assert_eq!(id.get_document("key").unwrap(), &doc! { "id": 1 });
        assert_eq!(id.get_bool("unique"), Ok(true));
        assert!(id.get("expireAfterSeconds").is_none());

        // Starting again over the same collection is fine and changes nothing.
        connect(&name).await;
        assert_eq!(indexes(&db).await.len(), all.len());
    });
}

#[test]
fn unique_index_is_enforced_by_the_server() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        let key = testkit::fresh_key();
        backend.store(&key, b"v", LONG).await.unwrap();
        let copy = doc! { "id": &key, "val": generic(b"w"), "expiration": DateTime::now() };
        let refused = sessions(&db).insert_one(copy).await;
        assert!(
            refused.is_err(),
            "a second document with one id was accepted"
        );
    });
}

#[test]
fn connect_completes_a_collection_that_flask_session_created() {
    with_db(|name, db| async move {
        // What Flask-Session leaves: its TTL index, no index on id, a session it wrote.
        let ttl = IndexModel::builder()
            .keys(doc! { "expiration": 1 })
            .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
            .build();
        sessions(&db).create_index(ttl).await.unwrap();
        let key = testkit::fresh_key();
        let later = DateTime::from_millis(DateTime::now().timestamp_millis() + 60_000);
        sessions(&db)
            .insert_one(doc! { "id": &key, "val": generic(b"\x81\xa1k\xa1v"), "expiration": later })
            .await
            .unwrap();

        let backend = connect(&name).await;
        assert_eq!(
            backend.load(&key).await.unwrap(),
            Some(b"\x81\xa1k\xa1v".to_vec())
        );
        let names: Vec<String> = indexes(&db)
            .await
            .iter()
            .map(|i| i.get_str("name").unwrap().to_owned())
            .collect();
        assert!(names.contains(&"id_1".to_owned()), "{names:?}");
        assert_eq!(names.len(), 3, "_id_, expiration_1, id_1: {names:?}");
    });
}

#[test]
fn a_non_unique_index_on_id_is_refused_with_advice() {
    with_db(|name, db| async move {
        let plain = IndexModel::builder().keys(doc! { "id": 1 }).build();
        sessions(&db).create_index(plain).await.unwrap();
        let err = MongoBackend::connect(&config(&name))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not unique") && err.contains(&name), "{err}");
    });
}

#[test]
fn duplicate_ids_left_by_flask_session_are_reported_at_start() {
    with_db(|name, db| async move {
        let later = DateTime::from_millis(DateTime::now().timestamp_millis() + 60_000);
        for val in [b"a", b"b"] {
            sessions(&db)
                .insert_one(
                    doc! { "id": "session:twice", "val": generic(val), "expiration": later },
                )
                .await
                .unwrap();
        }
        let err = MongoBackend::connect(&config(&name))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("share one `id`"), "{err}");
        assert!(
            !err.contains("session:twice"),
            "the key leaked into the error: {err}"
        );
    });
}

#[test]
fn expired_document_not_yet_swept_is_not_returned() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        let key = testkit::fresh_key();
        let expired = ago(30);
        sessions(&db)
            .insert_one(doc! { "id": &key, "val": generic(b"old"), "expiration": expired })
            .await
            .unwrap();
        // The TTL monitor runs about once a minute: the document is still there.
        assert!(
            raw_find(&db, &key).await.is_some(),
            "swept already; the test proves nothing"
        );

        assert_eq!(backend.load(&key).await.unwrap(), None);
        assert_eq!(backend.load_and_touch(&key, LONG).await.unwrap(), None);
        assert!(!backend.touch(&key, LONG).await.unwrap());
        if let Some(document) = raw_find(&db, &key).await {
            assert_eq!(
                document.get_datetime("expiration").unwrap(),
                &expired,
                "revived"
            );
        }

        // The key is free for a new session, which takes the old document's place.
        assert!(backend.insert(&key, b"new", LONG).await.unwrap());
        assert_eq!(backend.load(&key).await.unwrap(), Some(b"new".to_vec()));
        let count = sessions(&db)
            .count_documents(doc! { "id": &key })
            .await
            .unwrap();
        assert_eq!(count, 1);
    });
}

/// Log lines written while the guard lives, on this thread (where the test body runs).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buffer);
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Sink(Arc::clone(&sink)))
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn documents_with_missing_or_mistyped_fields_read_as_no_session() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        let (logs, _guard) = capture_logs();
        let later = DateTime::from_millis(DateTime::now().timestamp_millis() + 60_000);
        let uuid = Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![7; 16],
        });
        let shapes = [
            (
                "val is a string",
                doc! { "val": "text", "expiration": later },
            ),
            ("val is missing", doc! { "expiration": later }),
            ("val is a UUID", doc! { "val": uuid, "expiration": later }),
            ("expiration is missing", doc! { "val": generic(b"v") }),
            (
                "expiration is a string",
                doc! { "val": generic(b"v"), "expiration": "2099-01-01" },
            ),
            (
                "expiration is null",
                doc! { "val": generic(b"v"), "expiration": Bson::Null },
            ),
            (
                "expiration is a number",
                doc! { "val": generic(b"v"), "expiration": 4_102_444_800_i64 },
            ),
        ];
        for (shape, mut document) in shapes {
            let key = testkit::fresh_key();
            document.insert("id", &key);
            sessions(&db).insert_one(document).await.unwrap();
            logs.lock().unwrap().clear();
            assert_eq!(backend.load(&key).await.unwrap(), None, "load: {shape}");
            let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
            assert!(
                logged.contains("WARN") && logged.contains("wrong type"),
                "{shape}: {logged:?}"
            );
            assert!(
                !logged.contains(&key[13..]),
                "{shape}: the session id was logged: {logged}"
            );
            assert_eq!(
                backend.load_and_touch(&key, LONG).await.unwrap(),
                None,
                "load_and_touch: {shape}"
            );
        }
        // A malformed expiration is no live session, so the key can be taken for a new one.
        let key = testkit::fresh_key();
        sessions(&db)
            .insert_one(doc! { "id": &key, "val": generic(b"v") })
            .await
            .unwrap();
        assert!(backend.insert(&key, b"mine", LONG).await.unwrap());
        assert_eq!(backend.load(&key).await.unwrap(), Some(b"mine".to_vec()));
    });
}

#[test]
fn purge_removes_expired_documents_and_keeps_live_ones() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        let (live, expired) = (testkit::fresh_key(), testkit::fresh_key());
        backend.store(&live, b"live", LONG).await.unwrap();
        sessions(&db)
            .insert_one(doc! { "id": &expired, "val": generic(b"old"), "expiration": ago(30) })
            .await
            .unwrap();
        assert_eq!(backend.purge_expired().await.unwrap(), 1);
        assert!(raw_find(&db, &expired).await.is_none());
        assert_eq!(backend.load(&live).await.unwrap(), Some(b"live".to_vec()));
    });
}

/// A port on loopback that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn nothing_listening_fails_at_connect_with_a_clear_error_without_the_password() {
    // No server is needed: this runs even when SATCHEL_SKIP_MONGODB is set.
    testkit::run(async {
        let port = closed_port();
        let mut config = config("flask_session");
        config.mongodb = Some(format!(
            "mongodb://alice:hunter2@127.0.0.1:{port}/?authSource=admin"
        ));
        config.connect_timeout = Duration::from_secs(1);
        // Bounded well below the driver's own 30 s server selection, which must not apply.
        let attempt = tokio::time::timeout(Duration::from_secs(20), MongoBackend::connect(&config));
        let err = attempt
            .await
            .expect("connect gave up by itself")
            .unwrap_err();
        assert!(matches!(err, ConfigError::Backend(_)), "{err:?}");
        let text = err.to_string();
        eprintln!("connect error: {text}");
        assert!(
            text.contains(&format!("mongodb://alice:***@127.0.0.1:{port}/?…")),
            "{text}"
        );
        assert!(text.contains("mongodb connect failed"), "{text}");
        assert!(
            !text.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
            "{text}"
        );
    });
}

#[test]
fn malformed_settings_are_refused_naming_the_setting() {
    testkit::run(async {
        for (setting, edit) in [
            (
                "SESSION_MONGODB",
                &(|c: &mut SessionConfig| c.mongodb = Some("http://x".into()))
                    as &dyn Fn(&mut SessionConfig),
            ),
            ("SESSION_MONGODB_DB", &|c: &mut SessionConfig| {
                c.mongodb_db = "a.b".into()
            }),
            ("SESSION_MONGODB_DB", &|c: &mut SessionConfig| {
                c.mongodb_db = String::new()
            }),
            ("SESSION_MONGODB_COLLECT", &|c: &mut SessionConfig| {
                c.mongodb_collect = "a$b".into()
            }),
        ] {
            let mut config = SessionConfig::default();
            edit(&mut config);
            let err = MongoBackend::connect(&config).await.unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
            assert!(err.to_string().contains(setting), "{err}");
        }
    });
}

/// A lifetime whose touch granularity is one second (a hundredth of it).
const SLIDING: Duration = Duration::from_secs(100);

async fn raw_expiration(db: &Database, key: &str) -> DateTime {
    *raw_find(db, key)
        .await
        .expect("the document is there")
        .get_datetime("expiration")
        .expect("a date")
}

#[test]
fn load_and_touch_right_after_a_store_writes_nothing() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        let key = testkit::fresh_key();
        backend.store(&key, b"v", SLIDING).await.unwrap();
        let stored = raw_expiration(&db, &key).await;
        for _ in 0..3 {
            assert_eq!(
                backend.load_and_touch(&key, SLIDING).await.unwrap(),
                Some(b"v".to_vec())
            );
        }
        assert_eq!(
            raw_expiration(&db, &key).await,
            stored,
            "written within the granularity"
        );
    });
}

#[test]
fn load_and_touch_writes_the_expiry_once_the_granularity_has_passed() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        let key = testkit::fresh_key();
        backend.store(&key, b"v", SLIDING).await.unwrap();
        let stored = raw_expiration(&db, &key).await;
        // The granularity of SLIDING is 1 s.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = DateTime::now().timestamp_millis();
        assert_eq!(
            backend.load_and_touch(&key, SLIDING).await.unwrap(),
            Some(b"v".to_vec())
        );
        let after = DateTime::now().timestamp_millis();
        let slid = raw_expiration(&db, &key).await;
        assert!(slid > stored, "not extended: {slid} after {stored}");
        let ttl = SLIDING.as_millis() as i64;
        assert!(
            (before + ttl..=after + ttl).contains(&slid.timestamp_millis()),
            "{slid} is not now + ttl"
        );
        backend.load_and_touch(&key, SLIDING).await.unwrap();
        assert_eq!(
            raw_expiration(&db, &key).await,
            slid,
            "written again at once"
        );
    });
}

#[test]
fn load_and_touch_never_shortens_an_expiry_nor_revives_a_session() {
    with_db(|name, db| async move {
        let backend = connect(&name).await;
        let longer = testkit::fresh_key();
        backend.store(&longer, b"v", LONG).await.unwrap();
        let stored = raw_expiration(&db, &longer).await;
        assert_eq!(
            backend.load_and_touch(&longer, SLIDING).await.unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(raw_expiration(&db, &longer).await, stored, "shortened");

        let expired = testkit::fresh_key();
        sessions(&db)
            .insert_one(doc! { "id": &expired, "val": generic(b"old"), "expiration": ago(1) })
            .await
            .unwrap();
        let stored = raw_expiration(&db, &expired).await;
        assert_eq!(
            backend.load_and_touch(&expired, SLIDING).await.unwrap(),
            None
        );
        assert_eq!(raw_expiration(&db, &expired).await, stored, "revived");
    });
}
