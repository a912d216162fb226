//! The conformance suite every backend runs against its real server (feature `testkit`).
//!
//! Use [`conformance_suite!`](crate::conformance_suite) in a backend crate's tests; it makes one
//! `#[test]` per behaviour. Every case writes under its own random key prefix, so suites can run
//! side by side on one shared server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::session_id::SessionId;

/// Runs an async test body on a fresh multi-threaded runtime that belongs to that test alone.
pub fn run<F: Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the test");
    runtime.block_on(body);
}

/// True when the user asked to skip this backend with `SATCHEL_SKIP_<BACKEND>=1`; prints so.
///
/// A variant such as `REDIS_CLUSTER` is also skipped by its family's variable
/// (`SATCHEL_SKIP_REDIS`).
pub fn skipped(backend: &str) -> bool {
    let family = backend.split('_').next().unwrap_or(backend);
    for name in [backend, family] {
        let var = format!("SATCHEL_SKIP_{name}");
        if std::env::var(&var).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
            eprintln!("SKIPPED: {backend} backend test, because {var}=1");
            return true;
        }
    }
    false
}

/// A fresh key under a prefix no other test run uses.
pub fn fresh_key() -> String {
    let id = SessionId::generate(32).expect("the OS random generator works in tests");
    format!("satchel-test:{}", id.as_str())
}

const LONG: Duration = Duration::from_secs(300);
/// The shortest TTL every backend honours (Redis and memcached count whole seconds).
const SHORT: Duration = Duration::from_secs(1);
/// Long enough for a one-second TTL to have passed on a server with one-second clock ticks.
const PAST_SHORT: Duration = Duration::from_millis(2600);

/// A value stored is loaded back byte for byte.
pub async fn round_trip<B: Backend>(backend: &B) {
    let key = fresh_key();
    backend
        .store(&key, b"\x81\xa1a\x01", LONG)
        .await
        .expect("store");
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"\x81\xa1a\x01".to_vec())
    );
    backend
        .store(&key, b"second", LONG)
        .await
        .expect("store over");
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"second".to_vec())
    );
}

/// Every byte value, including NUL and invalid UTF-8, survives.
pub async fn binary_values<B: Backend>(backend: &B) {
    let key = fresh_key();
    let value: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    backend.store(&key, &value, LONG).await.expect("store");
    assert_eq!(backend.load(&key).await.expect("load"), Some(value));
}

/// A 1 MiB value survives.
pub async fn large_value<B: Backend>(backend: &B) {
    let key = fresh_key();
    let value: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    backend
        .store(&key, &value, LONG)
        .await
        .expect("store 1 MiB");
    assert_eq!(backend.load(&key).await.expect("load 1 MiB"), Some(value));
}

/// `insert` refuses a live key and leaves its value alone.
pub async fn insert_collision<B: Backend>(backend: &B) {
    let key = fresh_key();
    assert!(backend.insert(&key, b"first", LONG).await.expect("insert"));
    assert!(
        !backend
            .insert(&key, b"second", LONG)
            .await
            .expect("insert again")
    );
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"first".to_vec())
    );
}

/// An expired value is not returned, even where the server sweeps late, and its key can be
/// inserted again.
pub async fn ttl_expiry_checked_on_read<B: Backend>(backend: &B) {
    let key = fresh_key();
    backend.store(&key, b"short", SHORT).await.expect("store");
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"short".to_vec())
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(backend.load(&key).await.expect("load expired"), None);
    assert_eq!(
        backend
            .load_and_touch(&key, LONG)
            .await
            .expect("load_and_touch expired"),
        None
    );
    assert!(!backend.touch(&key, LONG).await.expect("touch expired"));
    assert!(
        backend
            .insert(&key, b"again", LONG)
            .await
            .expect("insert over expired")
    );
}

/// `replace` overwrites a live value and refuses a missing or expired one.
pub async fn replace_only_live<B: Backend>(backend: &B) {
    let key = fresh_key();
    assert!(
        !backend
            .replace(&key, b"ghost", LONG)
            .await
            .expect("replace missing")
    );
    assert_eq!(backend.load(&key).await.expect("load"), None);
    backend.store(&key, b"v1", SHORT).await.expect("store");
    assert!(
        backend
            .replace(&key, b"v2", LONG)
            .await
            .expect("replace live")
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"v2".to_vec())
    );
    let short = fresh_key();
    backend.store(&short, b"v", SHORT).await.expect("store");
    tokio::time::sleep(PAST_SHORT).await;
    assert!(
        !backend
            .replace(&short, b"late", LONG)
            .await
            .expect("replace expired")
    );
}

/// `touch` extends a live value's TTL and reports a missing one.
pub async fn touch_extends_ttl<B: Backend>(backend: &B) {
    let key = fresh_key();
    backend.store(&key, b"v", SHORT).await.expect("store");
    assert!(backend.touch(&key, LONG).await.expect("touch"));
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(backend.load(&key).await.expect("load"), Some(b"v".to_vec()));
    assert!(
        !backend
            .touch(&fresh_key(), LONG)
            .await
            .expect("touch missing")
    );
}

/// `load_and_touch` returns the value and extends its TTL.
pub async fn load_and_touch_extends_ttl<B: Backend>(backend: &B) {
    let key = fresh_key();
    backend.store(&key, b"v", SHORT).await.expect("store");
    assert_eq!(
        backend
            .load_and_touch(&key, LONG)
            .await
            .expect("load_and_touch"),
        Some(b"v".to_vec())
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(backend.load(&key).await.expect("load"), Some(b"v".to_vec()));
}

/// `delete` removes a value; deleting a missing key is fine.
pub async fn delete<B: Backend>(backend: &B) {
    let key = fresh_key();
    backend.store(&key, b"v", LONG).await.expect("store");
    backend.delete(&key).await.expect("delete");
    assert_eq!(backend.load(&key).await.expect("load"), None);
    backend.delete(&key).await.expect("delete again");
}

/// A key never written loads as `None`, not an error.
pub async fn missing_key<B: Backend>(backend: &B) {
    let key = fresh_key();
    assert_eq!(backend.load(&key).await.expect("load"), None);
    assert_eq!(
        backend
            .load_and_touch(&key, LONG)
            .await
            .expect("load_and_touch"),
        None
    );
}

/// `purge_expired` runs and leaves live values alone.
pub async fn purge_keeps_live_values<B: Backend>(backend: &B) {
    let live = fresh_key();
    backend.store(&live, b"live", LONG).await.expect("store");
    backend.purge_expired().await.expect("purge");
    assert_eq!(
        backend.load(&live).await.expect("load"),
        Some(b"live".to_vec())
    );
}

/// 500 sessions written and rewritten at once: none lost, none mixed up.
pub async fn concurrent_sessions<B: Backend>(backend: Arc<B>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500u32 {
        let backend = Arc::clone(&backend);
        tasks.spawn(async move {
            let key = fresh_key();
            let first = format!("session {i} first {key}").into_bytes();
            let second = format!("session {i} second {key}").into_bytes();
            assert!(backend.insert(&key, &first, LONG).await.expect("insert"));
            assert_eq!(backend.load(&key).await.expect("load"), Some(first));
            backend.store(&key, &second, LONG).await.expect("store");
            assert_eq!(backend.load(&key).await.expect("load"), Some(second));
            backend.delete(&key).await.expect("delete");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a concurrent session task panicked");
    }
}

/// Generates the conformance tests for a backend: one `#[test]` per behaviour.
///
/// `$skip` names the `SATCHEL_SKIP_<BACKEND>` variable that skips them (printing that they were
/// skipped); `$make` is an async expression that builds a connected backend. An unreachable
/// server makes `$make` fail, and so the tests fail.
///
/// ```ignore
/// satchel_core::conformance_suite!("REDIS", async { RedisBackend::connect(&config).await.unwrap() });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($skip:literal, $make:expr) => {
        $crate::conformance_suite!(@cases $skip, $make;
            round_trip, binary_values, large_value, insert_collision, replace_only_live,
            ttl_expiry_checked_on_read, touch_extends_ttl, load_and_touch_extends_ttl,
            delete, missing_key, purge_keeps_live_values);

        #[test]
        fn concurrent_sessions() {
            if $crate::testkit::skipped($skip) {
                return;
            }
            $crate::testkit::run(async {
                let backend = ::std::sync::Arc::new($make.await);
                $crate::testkit::concurrent_sessions(backend).await;
            });
        }
    };
    (@cases $skip:literal, $make:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                if $crate::testkit::skipped($skip) {
                    return;
                }
                $crate::testkit::run(async {
                    let backend = $make.await;
                    $crate::testkit::$case(&backend).await;
                });
            }
        )*
    };
}
