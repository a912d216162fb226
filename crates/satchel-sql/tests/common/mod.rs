//! Helpers the dialect test files share.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use satchel_core::testkit::fresh_key;
use satchel_core::{Backend, BackendError, Operation, SessionConfig};
use satchel_sql::SqlBackend;

/// The shared scenarios as `#[test]`s for a server dialect (PostgreSQL, MySQL/MariaDB), each on
/// a fresh table and skipped (saying so) only when the dialect's `SATCHEL_SKIP_<BACKEND>` is
/// set. The invoking file provides `SKIP`, a `TestTable` whose `new()` makes a fresh table with
/// a `backend`, and `expiry_of(&TestTable, key)`.
#[allow(unused_macros)] // the SQLite file builds its tables differently
macro_rules! server_dialect_scenarios {
    () => {
        server_dialect_scenarios! {
            two_hundred_concurrent_first_saves_all_land: |t| {
                common::concurrent_first_saves(t.backend.clone())
            };
            two_hundred_concurrent_updates_of_one_session_all_succeed: |t| {
                common::concurrent_updates_of_one(t.backend.clone())
            };
            concurrent_inserts_of_one_key_have_exactly_one_winner: |t| {
                common::concurrent_inserts_of_one(t.backend.clone())
            };
            purge_removes_expired_rows_and_keeps_live_ones: |t| {
                common::purge_removes_only_expired(&t.backend)
            };
            insert_takes_over_an_expired_row_with_the_same_id: |t| {
                common::insert_takes_over_an_expired_row(&t.backend)
            };
            load_and_touch_right_after_a_store_writes_nothing: |t| {
                common::load_and_touch_right_after_a_store_writes_nothing(
                    &t.backend,
                    |key| expiry_of(&t, key),
                )
            };
            load_and_touch_writes_the_expiry_once_the_granularity_has_passed: |t| {
                common::load_and_touch_writes_the_expiry_once_the_granularity_has_passed(
                    &t.backend,
                    |key| expiry_of(&t, key),
                )
            };
            load_and_touch_never_shortens_an_expiry_nor_revives_a_row: |t| {
                common::load_and_touch_never_shortens_nor_revives(&t.backend, |key| expiry_of(&t, key))
            };
            replace_keeps_a_fresh_expiry_and_writes_a_stale_or_longer_one: |t| {
                common::replace_keeps_a_fresh_expiry_and_writes_a_stale_or_longer_one(
                    &t.backend,
                    |key| expiry_of(&t, key),
                )
            };
        }
    };
    ($($name:ident: |$t:ident| $scenario:expr;)+) => {
        $(
            #[test]
            fn $name() {
                if skipped(SKIP) {
                    return;
                }
                run(async {
                    let $t = TestTable::new().await;
                    $scenario.await;
                });
            }
        )+
    };
}

/// A table name no other test uses.
pub fn fresh_table() -> String {
    let n = getrandom::u64().expect("OS randomness");
    format!("sessions_{n:016x}")
}

/// A config for `url` with a fresh table and no periodic purge (tests purge on demand).
///
/// The timeouts are generous: hundreds of concurrent sessions queue for a pool of 16 on a
/// small shared machine, and these tests pin behaviour, not speed. Tests of the timeouts set
/// their own.
pub fn config(url: &str) -> SessionConfig {
    let mut config = SessionConfig::default();
    config.sqlalchemy = Some(url.to_owned());
    config.sqlalchemy_table = fresh_table();
    config.purge_interval = Duration::ZERO;
    config.operation_timeout = Duration::from_secs(60);
    config.connect_timeout = Duration::from_secs(60);
    config
}

pub const LONG: Duration = Duration::from_secs(300);

/// 200 first saves of different sessions at once: every one succeeds and every row is there.
pub async fn concurrent_first_saves(backend: SqlBackend) {
    let backend = Arc::new(backend);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let backend = Arc::clone(&backend);
        tasks.spawn(async move {
            let key = fresh_key();
            let value = format!("first save {i}").into_bytes();
            if i % 2 == 0 {
                backend.store(&key, &value, LONG).await.expect("store");
            } else {
                assert!(backend.insert(&key, &value, LONG).await.expect("insert"));
            }
            (key, value)
        });
    }
    let mut saved = Vec::new();
    while let Some(done) = tasks.join_next().await {
        saved.push(done.expect("task"));
    }
    for (key, value) in saved {
        assert_eq!(backend.load(&key).await.expect("load"), Some(value));
    }
}

/// 200 updates of one session at once: none fails, and the row holds one of the values.
pub async fn concurrent_updates_of_one(backend: SqlBackend) {
    let backend = Arc::new(backend);
    let key = Arc::new(fresh_key());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let (backend, key) = (Arc::clone(&backend), Arc::clone(&key));
        tasks.spawn(async move {
            backend
                .store(&key, format!("update {i:03}").as_bytes(), LONG)
                .await
                .expect("store");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let value = backend
        .load(&key)
        .await
        .expect("load")
        .expect("the session is there");
    assert!(value.starts_with(b"update "), "{value:?}");
}

/// 50 inserts of one new key at once: exactly one wins, the others see a collision.
pub async fn concurrent_inserts_of_one(backend: SqlBackend) {
    let backend = Arc::new(backend);
    let key = Arc::new(fresh_key());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u32 {
        let (backend, key) = (Arc::clone(&backend), Arc::clone(&key));
        tasks.spawn(async move {
            backend
                .insert(&key, format!("{i}").as_bytes(), LONG)
                .await
                .expect("insert")
        });
    }
    let mut won = 0;
    while let Some(done) = tasks.join_next().await {
        won += usize::from(done.expect("task"));
    }
    assert_eq!(won, 1);
}

/// Expired rows go, live ones stay.
pub async fn purge_removes_only_expired(backend: &SqlBackend) {
    let live: Vec<String> = (0..3).map(|_| fresh_key()).collect();
    for key in &live {
        backend.store(key, b"live", LONG).await.expect("store live");
    }
    for _ in 0..5 {
        backend
            .store(&fresh_key(), b"dead", Duration::ZERO)
            .await
            .expect("store expired");
    }
    assert_eq!(backend.purge_expired().await.expect("purge"), 5);
    assert_eq!(backend.purge_expired().await.expect("purge again"), 0);
    for key in &live {
        assert_eq!(
            backend.load(key).await.expect("load"),
            Some(b"live".to_vec())
        );
    }
}

/// An expired row with the key of a new session is taken over by `insert`.
pub async fn insert_takes_over_an_expired_row(backend: &SqlBackend) {
    let key = fresh_key();
    backend
        .store(&key, b"old", Duration::ZERO)
        .await
        .expect("store expired");
    assert!(backend.insert(&key, b"new", LONG).await.expect("insert"));
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"new".to_vec())
    );
    assert!(
        !backend
            .insert(&key, b"newer", LONG)
            .await
            .expect("insert live")
    );
}

/// The operation timeout of the lock tests: the database gives up waiting for a lock a margin
/// (200 ms) before it, wide enough for a loaded machine to deliver the answer in time.
pub const LOCK_TEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Asserts that `error` is the database giving up on a lock after `waited`, with a message that
/// says so and what to do, and that does not quote the session key.
pub fn assert_lock_timeout(
    error: &BackendError,
    operation: Operation,
    waited: Duration,
    key: &str,
) {
    assert!(
        matches!(
            error,
            BackendError::LockTimeout { operation: op, waited: w, .. } if *op == operation && *w == waited
        ),
        "want the database's lock timeout after {waited:?}, got: {error:?}"
    );
    let text = error.to_string();
    let ms = format!("after {} ms waiting for a lock", waited.as_millis());
    for needle in [
        ms.as_str(),
        "nothing was written",
        "SATCHEL_OPERATION_TIMEOUT",
        "transaction",
    ] {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
    assert!(!text.contains(key), "the message quotes the key: {text}");
}

/// After a store of `key` failed on a lock and the lock is released: the failed write is not
/// there, and a later write is what stays.
///
/// Nothing waits for the failed statement to finish: the database gave up on it before the error
/// came back, so it is over. The pause after the later write is only there to expose a statement
/// that was wrongly still waiting for the lock: it would take the lock within that time (SQLite's
/// busy handler tries again at least every 100 ms; PostgreSQL and InnoDB wake a waiter as soon as
/// the lock is released) and overwrite "after".
pub async fn a_later_write_wins(backend: &SqlBackend, key: &str) {
    assert_eq!(
        backend
            .load(key)
            .await
            .expect("load once the lock is released"),
        Some(b"before".to_vec()),
        "the write reported as failed landed"
    );
    backend
        .store(key, b"after", LONG)
        .await
        .expect("store once the lock is released");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        backend.load(key).await.expect("load"),
        Some(b"after".to_vec()),
        "the write reported as failed landed late, over a later one"
    );
}

/// Takes the only connection of `pool` and gives it back after `hold`, so an operation started
/// meanwhile sends its statement that much after it started.
pub async fn hold_the_only_connection<DB: satchel_sql::sqlx::Database>(
    pool: &satchel_sql::sqlx::Pool<DB>,
    hold: Duration,
) -> tokio::task::JoinHandle<()> {
    let held = pool.acquire().await.expect("the pool's connection");
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        drop(held);
    })
}

/// Asserts that a start-up error mentions every one of `needles`.
pub fn assert_mentions(error: &satchel_core::ConfigError, needles: &[&str]) {
    let text = error.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
}

/// A TCP relay on loopback in front of a database server, which a test can take down and bring
/// back, so "the database went away and came back" is tested without touching the shared
/// server.
pub struct Relay {
    port: u16,
    target: String,
    /// How long each new connection waits before the relay connects it to the target, in ms.
    delay_ms: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying from a free loopback port to `target` (`host:port`).
    pub async fn start(target: &str) -> Relay {
        let listener = Relay::bind(0).await;
        let port = listener.local_addr().unwrap().port();
        let mut relay = Relay {
            port,
            target: target.to_owned(),
            delay_ms: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        relay.serve(listener);
        relay
    }

    /// `url` with its host and port replaced by the relay's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (userinfo, tail) = rest.rsplit_once('@').unwrap();
        let path = tail.find('/').map_or("", |i| &tail[i..]);
        format!("{scheme}://{userinfo}@127.0.0.1:{}{path}", self.port)
    }

    /// Stops listening and cuts every relayed connection, as a stopped server would.
    pub fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Makes every new connection wait `delay` before it reaches the server, as connecting does
    /// on a machine starved of CPU.
    pub fn slow_down_connects(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        let listener = Relay::bind(self.port).await;
        self.serve(listener);
    }

    async fn bind(port: u16) -> tokio::net::TcpListener {
        for _ in 0..50 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            if socket.bind(([127, 0, 0, 1], port).into()).is_ok() {
                return socket.listen(128).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot listen on 127.0.0.1:{port} again");
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let delay_ms = Arc::clone(&self.delay_ms);
        self.task = Some(tokio::spawn(async move {
            // Owned here, so aborting this task drops every relayed connection with it.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let delay = Duration::from_millis(delay_ms.load(Ordering::Relaxed));
                connections.spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.down();
    }
}

/// The database goes away under a connected backend: requests fail with a clean error (no
/// panic, no hang past the timeouts), and the first request after it is back succeeds.
/// Returns the table it used, for the caller to drop.
pub async fn database_down_then_back(url: &str, target: &str) -> String {
    let mut relay = Relay::start(target).await;
    let mut config = config(&relay.url_for(url));
    config.operation_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(1);
    let backend = SqlBackend::connect(&config)
        .await
        .expect("connect through the relay");
    let key = fresh_key();
    backend
        .store(&key, b"kept", LONG)
        .await
        .expect("store while up");

    relay.down();
    let err = backend.load(&key).await.expect_err("load while down");
    assert!(
        matches!(
            err,
            satchel_core::BackendError::Timeout { .. } | satchel_core::BackendError::Driver { .. }
        ),
        "{err}"
    );
    backend
        .store(&key, b"lost", LONG)
        .await
        .expect_err("store while down");

    relay.up().await;
    assert_eq!(
        backend.load(&key).await.expect("load once back"),
        Some(b"kept".to_vec())
    );
    backend
        .store(&key, b"again", LONG)
        .await
        .expect("store once back");
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"again".to_vec())
    );
    config.sqlalchemy_table
}

/// Opening a connection takes longer than the operation timeout (a machine starved of CPU): the
/// request that needed it fails at the timeout, but the connection it started still lands in the
/// pool, and the next request uses it. Returns the table it used, for the caller to drop.
pub async fn a_connection_too_slow_for_one_request_serves_the_next(
    url: &str,
    target: &str,
) -> String {
    let mut relay = Relay::start(target).await;
    let mut config = config(&relay.url_for(url));
    config.operation_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(10);
    let backend = SqlBackend::connect(&config)
        .await
        .expect("connect through the relay");
    let key = fresh_key();
    backend.store(&key, b"kept", LONG).await.expect("store");

    // The pool's connections are cut, and a new one takes three operation timeouts to open.
    relay.down();
    relay.slow_down_connects(Duration::from_millis(1500));
    relay.up().await;
    let err = backend
        .load(&key)
        .await
        .expect_err("a load that has to wait for a new connection");
    assert!(
        matches!(err, BackendError::Timeout { .. }),
        "want the operation timeout, got: {err}"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        backend
            .load(&key)
            .await
            .expect("the connection opened for the failed load serves this one"),
        Some(b"kept".to_vec())
    );
    config.sqlalchemy_table
}

/// The database stays down while 100 requests come at once: each fails within about the
/// operation timeout, and the connects they leave running end within the connect timeout, so
/// nothing piles up. `pool_size` reads the backend's pool size. Returns the table it used, for
/// the caller to drop.
pub async fn requests_to_a_database_that_stays_down_fail_in_time_and_leave_nothing_behind(
    url: &str,
    target: &str,
    pool_size: fn(&SqlBackend) -> u32,
) -> String {
    let mut relay = Relay::start(target).await;
    let mut config = config(&relay.url_for(url));
    config.operation_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(1);
    let backend = Arc::new(
        SqlBackend::connect(&config)
            .await
            .expect("connect through the relay"),
    );
    // In use before the outage: this thread's pool (and sqlx's maintenance task) exists.
    backend
        .load(&fresh_key())
        .await
        .expect("a load through the relay");
    relay.down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let backend = Arc::clone(&backend);
        requests.spawn(async move {
            let started = Instant::now();
            let outcome = backend.load(&fresh_key()).await;
            (outcome, started.elapsed())
        });
    }
    while let Some(done) = requests.join_next().await {
        let (outcome, took) = done.expect("request task");
        let err = outcome.expect_err("a load while the database is down");
        assert!(
            matches!(
                err,
                BackendError::Timeout { .. } | BackendError::Driver { .. }
            ),
            "{err}"
        );
        // The timeout, plus the wait for an answer to a statement sent on a dead connection
        // and a loaded machine's delays.
        assert!(took < Duration::from_millis(1500), "took {took:?}: {err}");
    }

    // Every connect a request left running gives up within the connect timeout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        metrics.num_alive_tasks() <= tasks_before,
        "{} tasks alive, {tasks_before} before the requests",
        metrics.num_alive_tasks()
    );
    assert_eq!(
        pool_size(&backend),
        0,
        "connections still counted in the pool"
    );
    config.sqlalchemy_table
}

/// `host:port` of a database URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let tail = rest.rsplit_once('@').map_or(rest, |(_, t)| t);
    tail.split(['/', '?']).next().unwrap().to_owned()
}

/// A lifetime whose touch granularity is one second (a hundredth of it).
pub const SLIDING: Duration = Duration::from_secs(100);

/// Now as the backend writes it: naive UTC, microseconds.
fn utc_now() -> time::PrimitiveDateTime {
    let now = time::OffsetDateTime::now_utc();
    let now = time::PrimitiveDateTime::new(now.date(), now.time());
    now.replace_microsecond(now.microsecond()).unwrap()
}

/// `expiry` is `now + SLIDING` for a `now` between `before` and `after`: written by the call
/// made between them, not kept from an earlier write.
fn assert_now_plus_sliding(
    expiry: time::PrimitiveDateTime,
    before: time::PrimitiveDateTime,
    after: time::PrimitiveDateTime,
) {
    assert!(
        expiry >= before + SLIDING && expiry <= after + SLIDING,
        "{expiry} is not now + ttl ({before} .. {after} + {SLIDING:?})"
    );
}

/// Touch coalescing: a `load_and_touch` within the granularity of the stored expiry reads the
/// row and writes nothing. `expiry_of(key)` reads the row's `expiry` as the database holds it.
pub async fn load_and_touch_right_after_a_store_writes_nothing<F, Fut>(
    backend: &SqlBackend,
    expiry_of: F,
) where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<time::PrimitiveDateTime>>,
{
    let key = fresh_key();
    backend.store(&key, b"v", SLIDING).await.expect("store");
    let stored = expiry_of(key.clone()).await.expect("the row is there");
    for _ in 0..3 {
        assert_eq!(
            backend
                .load_and_touch(&key, SLIDING)
                .await
                .expect("load_and_touch"),
            Some(b"v".to_vec())
        );
    }
    assert_eq!(
        expiry_of(key).await,
        Some(stored),
        "the expiry was written within the granularity"
    );
}

/// Touch coalescing: once the granularity has passed, `load_and_touch` writes `now + ttl`, and
/// the next one again writes nothing.
pub async fn load_and_touch_writes_the_expiry_once_the_granularity_has_passed<F, Fut>(
    backend: &SqlBackend,
    expiry_of: F,
) where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<time::PrimitiveDateTime>>,
{
    let key = fresh_key();
    backend.store(&key, b"v", SLIDING).await.expect("store");
    let stored = expiry_of(key.clone()).await.expect("the row is there");
    // The granularity of SLIDING is 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = utc_now();
    assert_eq!(
        backend
            .load_and_touch(&key, SLIDING)
            .await
            .expect("load_and_touch"),
        Some(b"v".to_vec())
    );
    let after = utc_now();
    let slid = expiry_of(key.clone()).await.expect("the row is there");
    assert!(slid > stored, "not extended: {slid} after {stored}");
    assert_now_plus_sliding(slid, before, after);
    backend
        .load_and_touch(&key, SLIDING)
        .await
        .expect("load_and_touch");
    assert_eq!(expiry_of(key).await, Some(slid), "written again at once");
}

/// Touch coalescing: `load_and_touch` never shortens a longer expiry (a session stored with a
/// longer lifetime) and never revives an expired row.
pub async fn load_and_touch_never_shortens_nor_revives<F, Fut>(backend: &SqlBackend, expiry_of: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<time::PrimitiveDateTime>>,
{
    let longer = fresh_key();
    backend.store(&longer, b"v", LONG).await.expect("store");
    let stored = expiry_of(longer.clone()).await.expect("the row is there");
    assert_eq!(
        backend
            .load_and_touch(&longer, SLIDING)
            .await
            .expect("load_and_touch"),
        Some(b"v".to_vec())
    );
    assert_eq!(expiry_of(longer).await, Some(stored), "shortened");

    let expired = fresh_key();
    backend
        .store(&expired, b"old", Duration::ZERO)
        .await
        .expect("store expired");
    let stored = expiry_of(expired.clone()).await.expect("the row is there");
    assert_eq!(
        backend
            .load_and_touch(&expired, SLIDING)
            .await
            .expect("load_and_touch expired"),
        None
    );
    assert_eq!(expiry_of(expired.clone()).await, Some(stored), "revived");
    assert_eq!(backend.load(&expired).await.expect("load"), None);
}

/// Touch coalescing on writes: a `replace` within the granularity of the stored expiry writes
/// the new value and keeps the expiry, so the expiry index is not touched; once the
/// granularity has passed it writes `now + ttl`; and a shorter lifetime than the stored one is
/// written, not kept.
pub async fn replace_keeps_a_fresh_expiry_and_writes_a_stale_or_longer_one<F, Fut>(
    backend: &SqlBackend,
    expiry_of: F,
) where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<time::PrimitiveDateTime>>,
{
    let key = fresh_key();
    backend.store(&key, b"v1", SLIDING).await.expect("store");
    let stored = expiry_of(key.clone()).await.expect("the row is there");
    assert!(
        backend
            .replace(&key, b"v2", SLIDING)
            .await
            .expect("replace"),
        "a live row was not replaced"
    );
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"v2".to_vec())
    );
    assert_eq!(
        expiry_of(key.clone()).await,
        Some(stored),
        "the expiry was written within the granularity"
    );

    // The granularity of SLIDING is 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = utc_now();
    assert!(
        backend
            .replace(&key, b"v3", SLIDING)
            .await
            .expect("replace")
    );
    let after = utc_now();
    let slid = expiry_of(key.clone()).await.expect("the row is there");
    assert_now_plus_sliding(slid, before, after);
    assert_eq!(
        backend.load(&key).await.expect("load"),
        Some(b"v3".to_vec())
    );

    let longer = fresh_key();
    backend.store(&longer, b"v1", LONG).await.expect("store");
    let before = utc_now();
    assert!(
        backend
            .replace(&longer, b"v2", SLIDING)
            .await
            .expect("replace")
    );
    let after = utc_now();
    let shortened = expiry_of(longer).await.expect("the row is there");
    assert_now_plus_sliding(shortened, before, after);
}
