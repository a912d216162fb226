//! The SQLite dialect against real SQLite files.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    LOCK_TEST_TIMEOUT, LONG, a_later_write_wins, assert_lock_timeout, assert_mentions, config,
    hold_the_only_connection,
};
use satchel_core::testkit::{fresh_key, run};
use satchel_core::{Backend, BackendError, ConfigError, Operation, SessionConfig};
use satchel_sql::SqlBackend;
use satchel_sql::sqlx::{self, Row};
use tempfile::TempDir;

/// A backend on a fresh database file, which lives as long as the backend.
struct TestDb {
    backend: SqlBackend,
    _dir: TempDir,
}

impl TestDb {
    async fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = SqlBackend::connect(&config(&url_in(&dir)))
            .await
            .expect("connect");
        TestDb { backend, _dir: dir }
    }
}

fn url_in(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("sessions.sqlite3").display())
}

impl Backend for TestDb {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.backend.load(key).await
    }
    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        self.backend.load_and_touch(key, ttl).await
    }
    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        self.backend.insert(key, value, ttl).await
    }
    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        self.backend.store(key, value, ttl).await
    }
    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        self.backend.replace(key, value, ttl).await
    }
    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        self.backend.touch(key, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.backend.delete(key).await
    }
    async fn purge_expired(&self) -> Result<u64, BackendError> {
        self.backend.purge_expired().await
    }
    fn name(&self) -> &'static str {
        self.backend.name()
    }
}

satchel_core::conformance_suite!("SQLITE", TestDb::new());

/// Connects to a fresh file with `edit` applied to the config, keeping the directory.
async fn connect_with(
    dir: &TempDir,
    edit: impl FnOnce(&mut SessionConfig),
) -> Result<SqlBackend, ConfigError> {
    let mut config = config(&url_in(dir));
    edit(&mut config);
    SqlBackend::connect(&config).await
}

/// A backend on a database file in `dir`, and the name of its table.
async fn connect_in(dir: &TempDir) -> (SqlBackend, String) {
    let mut table = String::new();
    let backend = connect_with(dir, |c| table = c.sqlalchemy_table.clone())
        .await
        .unwrap();
    (backend, table)
}

async fn raw_pool(dir: &TempDir) -> sqlx::SqlitePool {
    let url = format!("{}?mode=rwc", url_in(dir));
    sqlx::SqlitePool::connect(&url).await.expect("raw pool")
}

#[test]
fn created_table_has_flask_sessions_columns_and_an_expiry_index() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let (backend, table) = connect_in(&dir).await;
        let pool = backend.sqlite_pool().unwrap();
        let columns: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .unwrap();
        let want = [
            ("id", "INTEGER", 1, 1),
            ("session_id", "VARCHAR(255)", 0, 0),
            ("data", "BLOB", 0, 0),
            ("expiry", "DATETIME", 0, 0),
        ];
        let got: Vec<(&str, &str, i64, i64)> = columns
            .iter()
            .map(|(n, t, nn, pk)| (n.as_str(), t.as_str(), *nn, *pk))
            .collect();
        assert_eq!(got, want);
        let indexes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT (SELECT group_concat(name) FROM pragma_index_info(il.name)), il.\"unique\" \
             FROM pragma_index_list(?1) AS il ORDER BY 1",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(
            indexes,
            [("expiry".to_owned(), 0), ("session_id".to_owned(), 1)]
        );
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    });
}

#[test]
fn rows_are_written_as_flask_session_writes_them() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let (backend, table) = connect_in(&dir).await;
        let key = fresh_key();
        backend.store(&key, b"\x81\xa1a\x01", LONG).await.unwrap();
        let row = sqlx::query(
            &*format!(
                "SELECT session_id, data, expiry, typeof(data), typeof(expiry) FROM \"{table}\""
            )
            .leak(),
        )
        .fetch_one(backend.sqlite_pool().unwrap())
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>(0), key);
        assert_eq!(row.get::<Vec<u8>, _>(1), b"\x81\xa1a\x01");
        let expiry: String = row.get(2);
        assert_eq!(
            (
                row.get::<String, _>(3).as_str(),
                row.get::<String, _>(4).as_str()
            ),
            ("blob", "text")
        );
        // `2026-12-27 13:12:59.493051`: what SQLAlchemy's DateTime writes on SQLite.
        let shape: String = expiry
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99 99:99:99.999999", "{expiry}");
    });
}

#[test]
fn a_row_written_by_flask_session_is_read_and_expires_on_time() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let (backend, table) = connect_in(&dir).await;
        let (live, dead) = (fresh_key(), fresh_key());
        let insert: &'static str = format!(
            "INSERT INTO \"{table}\" (session_id, data, expiry) VALUES (?1, ?2, ?3), (?4, ?2, ?5)"
        )
        .leak();
        sqlx::query(insert)
            .bind(&live)
            .bind(&b"\x81\xa8username\xa5alice"[..])
            .bind("2999-12-27 13:12:59.493051")
            .bind(&dead)
            .bind("2001-01-01 00:00:00.000000")
            .execute(backend.sqlite_pool().unwrap())
            .await
            .unwrap();
        assert_eq!(
            backend.load(&live).await.unwrap().as_deref(),
            Some(&b"\x81\xa8username\xa5alice"[..])
        );
        assert_eq!(backend.load(&dead).await.unwrap(), None);
        assert_eq!(backend.purge_expired().await.unwrap(), 1);
    });
}

#[test]
fn an_existing_flask_table_is_used_as_it_is() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        // The DDL SQLAlchemy emits for Flask-Session 0.8's model, without Satchel's index.
        raw_pool(&dir)
            .await
            .execute_ddl(
                "CREATE TABLE sessions (id INTEGER NOT NULL, session_id VARCHAR(255), \
                 data BLOB, expiry DATETIME, PRIMARY KEY (id), UNIQUE (session_id))",
            )
            .await;
        let backend = connect_with(&dir, |c| c.sqlalchemy_table = "sessions".into())
            .await
            .unwrap();
        let key = fresh_key();
        assert!(backend.insert(&key, b"v", LONG).await.unwrap());
        assert_eq!(backend.load(&key).await.unwrap(), Some(b"v".to_vec()));
    });
}

trait ExecuteDdl {
    async fn execute_ddl(&self, sql: &'static str);
}

impl ExecuteDdl for sqlx::SqlitePool {
    async fn execute_ddl(&self, sql: &'static str) {
        sqlx::query(sql).execute(self).await.expect("ddl");
    }
}

#[test]
fn an_incompatible_table_is_refused_naming_the_column() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let pool = raw_pool(&dir).await;
        pool.execute_ddl(
            "CREATE TABLE wrong_data (id INTEGER PRIMARY KEY, session_id VARCHAR(255) UNIQUE, \
             data INTEGER, expiry DATETIME)",
        )
        .await;
        pool.execute_ddl(
            "CREATE TABLE no_expiry (id INTEGER PRIMARY KEY, session_id VARCHAR(255) UNIQUE, \
             data BLOB)",
        )
        .await;
        pool.execute_ddl(
            "CREATE TABLE not_unique (id INTEGER PRIMARY KEY, session_id VARCHAR(255), \
             data BLOB, expiry DATETIME)",
        )
        .await;
        for (table, column) in [
            ("wrong_data", "`data`"),
            ("no_expiry", "`expiry`"),
            ("not_unique", "`session_id`"),
        ] {
            let err = connect_with(&dir, |c| c.sqlalchemy_table = table.into())
                .await
                .err()
                .unwrap_or_else(|| panic!("{table} was accepted"));
            assert_mentions(&err, &["SESSION_SQLALCHEMY_TABLE", table, column]);
        }
    });
}

#[test]
fn a_missing_table_is_an_error_when_creation_is_off() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let err = connect_with(&dir, |c| c.sqlalchemy_create_table = false)
            .await
            .err()
            .unwrap();
        assert_mentions(&err, &["SESSION_SQLALCHEMY_CREATE_TABLE"]);
    });
}

#[test]
fn an_invalid_table_or_schema_name_is_refused() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let err = connect_with(&dir, |c| {
            c.sqlalchemy_table = "sessions; DROP TABLE x".into()
        })
        .await
        .err()
        .unwrap();
        assert_mentions(&err, &["SESSION_SQLALCHEMY_TABLE"]);
        let err = connect_with(&dir, |c| c.sqlalchemy_schema = Some("other".into()))
            .await
            .err()
            .unwrap();
        assert_mentions(&err, &["SESSION_SQLALCHEMY_SCHEMA"]);
    });
}

#[test]
fn an_unwritable_path_is_an_error_naming_the_path() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        // A path under a regular file cannot be created, even by root.
        let blocker = dir.path().join("not-a-directory");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join("sessions.sqlite3");
        let mut config = config(&format!("sqlite://{}", path.display()));
        config.connect_timeout = Duration::from_secs(2);
        let err = SqlBackend::connect(&config).await.err().unwrap();
        assert_mentions(&err, &["SESSION_SQLALCHEMY", &path.display().to_string()]);
    });
}

#[test]
fn a_missing_database_file_is_created() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = connect_with(&dir, |_| {}).await.unwrap();
        assert!(dir.path().join("sessions.sqlite3").exists());
        assert_eq!(backend.name(), "sqlite");
    });
}

#[test]
fn two_hundred_concurrent_first_saves_all_land() {
    run(async { common::concurrent_first_saves(TestDb::new().await.backend.clone()).await });
}

#[test]
fn two_hundred_concurrent_updates_of_one_session_all_succeed() {
    run(async { common::concurrent_updates_of_one(TestDb::new().await.backend.clone()).await });
}

#[test]
fn concurrent_inserts_of_one_key_have_exactly_one_winner() {
    run(async { common::concurrent_inserts_of_one(TestDb::new().await.backend.clone()).await });
}

#[test]
fn purge_removes_expired_rows_and_keeps_live_ones() {
    run(async { common::purge_removes_only_expired(&TestDb::new().await.backend).await });
}

#[test]
fn insert_takes_over_an_expired_row_with_the_same_id() {
    run(async { common::insert_takes_over_an_expired_row(&TestDb::new().await.backend).await });
}

#[test]
fn the_periodic_purge_runs_once_per_process_and_table() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&url_in(&dir));
        config.purge_interval = Duration::from_millis(200);
        let first = SqlBackend::connect(&config).await.unwrap();
        // A second connect to the same table (another actix worker, say) starts no second task.
        let second = SqlBackend::connect(&config).await.unwrap();
        assert!(
            second
                .spawn_purge_task(Duration::from_millis(200))
                .is_none()
        );
        let dead = fresh_key();
        first.store(&dead, b"dead", Duration::ZERO).await.unwrap();
        let live = fresh_key();
        first.store(&live, b"live", LONG).await.unwrap();
        let count = format!("SELECT count(*) FROM \"{}\"", config.sqlalchemy_table).leak();
        let mut rows = 2;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            rows = sqlx::query_scalar::<_, i64>(&*count)
                .fetch_one(first.sqlite_pool().unwrap())
                .await
                .unwrap();
            if rows == 1 {
                break;
            }
        }
        assert_eq!(rows, 1, "the expired row was not purged");
        assert_eq!(second.load(&live).await.unwrap(), Some(b"live".to_vec()));
        // Once every backend on the table is gone, a new one can start the task again.
        drop((first, second));
        tokio::task::yield_now().await;
        let third = SqlBackend::connect(&config).await.unwrap();
        let mut started = false;
        for _ in 0..50 {
            if let Some(task) = third.spawn_purge_task(Duration::from_millis(200)) {
                task.abort();
                started = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // `connect` itself took the slot if it was already free; either way one task runs.
        let _ = started;
    });
}

#[test]
fn cleanup_n_requests_zero_purges_on_every_load() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = connect_with(&dir, |c| c.cleanup_n_requests = Some(0))
            .await
            .unwrap();
        backend
            .store(&fresh_key(), b"dead", Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(backend.load(&fresh_key()).await.unwrap(), None);
        let mut left = u64::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = backend.purge_expired().await.unwrap();
            if left == 0 {
                break;
            }
        }
        assert_eq!(left, 0);
    });
}

/// Takes the database's write lock on a connection of its own, as a long transaction would.
async fn lock_the_database(dir: &TempDir) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
    let mut locker = raw_pool(dir).await.acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *locker)
        .await
        .unwrap();
    locker
}

async fn release(mut locker: sqlx::pool::PoolConnection<sqlx::Sqlite>) {
    sqlx::query("ROLLBACK").execute(&mut *locker).await.unwrap();
}

#[test]
fn a_write_that_timed_out_on_a_lock_never_lands_after_a_later_one() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = connect_with(&dir, |c| c.operation_timeout = LOCK_TEST_TIMEOUT)
            .await
            .unwrap();
        let key = fresh_key();
        backend.store(&key, b"before", LONG).await.unwrap();
        let locker = lock_the_database(&dir).await;
        let err = backend.store(&key, b"during", LONG).await.unwrap_err();
        // The busy timeout: the operation timeout less its 200 ms margin.
        assert_lock_timeout(&err, Operation::Store, Duration::from_millis(1800), &key);
        release(locker).await;
        a_later_write_wins(&backend, &key).await;
    });
}

#[test]
fn a_write_that_waited_for_a_connection_is_still_ended_by_the_database() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = connect_with(&dir, |c| {
            c.operation_timeout = LOCK_TEST_TIMEOUT;
            c.pool_size = 1;
        })
        .await
        .unwrap();
        let key = fresh_key();
        backend.store(&key, b"before", LONG).await.unwrap();
        let locker = lock_the_database(&dir).await;
        // The statement is sent a second late, so its lock wait outlasts the operation timeout;
        // the client waits for the database's answer instead of leaving the statement running.
        let pool = backend.sqlite_pool().unwrap();
        let held = hold_the_only_connection(pool, Duration::from_secs(1)).await;
        let started = Instant::now();
        let err = backend.store(&key, b"during", LONG).await.unwrap_err();
        assert_lock_timeout(&err, Operation::Store, Duration::from_millis(1800), &key);
        assert!(
            started.elapsed() > LOCK_TEST_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        held.await.unwrap();
        release(locker).await;
        a_later_write_wins(&backend, &key).await;
    });
}

#[test]
fn keys_longer_than_the_column_are_refused_not_truncated() {
    run(async {
        let db = TestDb::new().await;
        let key = "k".repeat(256);
        let err = db.backend.store(&key, b"v", LONG).await.unwrap_err();
        assert!(matches!(err, BackendError::InvalidKey { .. }), "{err}");
        assert_eq!(db.backend.load(&key).await.unwrap(), None);
    });
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_database_whose_feature_is_off_names_the_feature() {
    run(async {
        let err = SqlBackend::connect(&config("postgres://u:secret@127.0.0.1:1/d"))
            .await
            .err()
            .unwrap();
        assert_mentions(&err, &["`postgres`"]);
        assert!(!err.to_string().contains("secret"));
    });
}

/// The row's `expiry` as the file holds it.
async fn expiry_of(
    backend: &SqlBackend,
    table: &str,
    key: String,
) -> Option<time::PrimitiveDateTime> {
    let sql = format!("SELECT expiry FROM \"{table}\" WHERE session_id = ?1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(backend.sqlite_pool().unwrap())
        .await
        .unwrap()
}

/// One test per shared expiry scenario, each on a fresh database file, reading the row's
/// `expiry` as SQLite holds it.
macro_rules! expiry_scenarios {
    ($($name:ident: $scenario:path;)+) => {
        $(
            #[test]
            fn $name() {
                run(async {
                    let dir = tempfile::tempdir().unwrap();
                    let (backend, table) = connect_in(&dir).await;
                    $scenario(&backend, |key| expiry_of(&backend, &table, key)).await;
                });
            }
        )+
    };
}

expiry_scenarios! {
    load_and_touch_right_after_a_store_writes_nothing: common::load_and_touch_right_after_a_store_writes_nothing;
    load_and_touch_writes_the_expiry_once_the_granularity_has_passed: common::load_and_touch_writes_the_expiry_once_the_granularity_has_passed;
    load_and_touch_never_shortens_an_expiry_nor_revives_a_row: common::load_and_touch_never_shortens_nor_revives;
    replace_keeps_a_fresh_expiry_and_writes_a_stale_or_longer_one: common::replace_keeps_a_fresh_expiry_and_writes_a_stale_or_longer_one;
}
