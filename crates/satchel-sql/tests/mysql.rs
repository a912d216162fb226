//! The MySQL/MariaDB dialect against a real server (`SATCHEL_MYSQL_URL`, default
//! `mysql://satchel:satchel@127.0.0.1:3306/satchel`; `SATCHEL_SKIP_MYSQL=1` skips).
#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{
    LOCK_TEST_TIMEOUT, LONG, a_later_write_wins, assert_lock_timeout, assert_mentions, config,
    fresh_table, hold_the_only_connection,
};
use satchel_core::testkit::{fresh_key, run, skipped};
use satchel_core::{Backend, BackendError, Operation, SessionConfig};
use satchel_sql::SqlBackend;
use satchel_sql::sqlx::{self, Row};

const SKIP: &str = "MYSQL";

fn url() -> String {
    std::env::var("SATCHEL_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://satchel:satchel@127.0.0.1:3306/satchel".into())
}

/// A backend on a fresh table, dropped again when the test ends.
struct TestTable {
    backend: SqlBackend,
    /// The pool the backend's operations from this test's thread use.
    pool: sqlx::MySqlPool,
    table: String,
}

impl TestTable {
    async fn new() -> TestTable {
        TestTable::with(|_| {}).await
    }

    async fn with(edit: impl FnOnce(&mut SessionConfig)) -> TestTable {
        let mut config = config(&url());
        edit(&mut config);
        let table = config.sqlalchemy_table.clone();
        let backend = SqlBackend::connect(&config)
            .await
            .expect("connect to MySQL/MariaDB");
        let pool = backend.mysql_pool().unwrap();
        TestTable {
            backend,
            pool,
            table,
        }
    }

    /// The backend's pool, with the connections the backend keeps between its operations
    /// given back to it, so a test can take them.
    fn pool(&self) -> &sqlx::MySqlPool {
        let _ = self.backend.mysql_pool();
        &self.pool
    }
}

impl Drop for TestTable {
    fn drop(&mut self) {
        // Best effort: a test's table is dropped on a fresh connection of its own.
        let url = url();
        let table = self.table.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(pool) = sqlx::MySqlPool::connect(&url).await {
                        let sql = format!("DROP TABLE IF EXISTS `{table}`");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                        pool.close().await;
                    }
                });
            }
        })
        .join();
    }
}

impl Backend for TestTable {
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

satchel_core::conformance_suite!("MYSQL", TestTable::new());

async fn raw(t: &TestTable, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(t.pool())
        .await
        .unwrap();
}

#[test]
fn created_table_has_flask_sessions_columns_and_an_expiry_index() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        let columns: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(EXTRA AS CHAR) \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        )
        .bind(&t.table)
        .fetch_all(t.pool())
        .await
        .unwrap();
        // MySQL 8 no longer prints an integer's display width; MariaDB does.
        let got: Vec<(&str, &str)> = columns
            .iter()
            .map(|(n, ty, _)| {
                (
                    n.as_str(),
                    if ty == "int(11)" { "int" } else { ty.as_str() },
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("id", "int"),
                ("session_id", "varchar(255)"),
                ("data", "mediumblob"),
                ("expiry", "datetime(6)"),
            ]
        );
        assert!(columns[0].2.contains("auto_increment"), "{:?}", columns[0]);
        let indexes: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), \
                    CAST(NON_UNIQUE AS SIGNED) \
             FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY INDEX_NAME",
        )
        .bind(&t.table)
        .fetch_all(t.pool())
        .await
        .unwrap();
        let by_column = |c: &str| indexes.iter().find(|(_, col, _)| col == c).map(|i| i.2);
        assert_eq!(by_column("id"), Some(0), "{indexes:?}");
        assert_eq!(by_column("session_id"), Some(0), "{indexes:?}");
        assert_eq!(by_column("expiry"), Some(1), "{indexes:?}");
    });
}

#[test]
fn rows_flask_session_wrote_are_read_and_satchels_rows_have_its_layout() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        let (flask_live, flask_dead) = (fresh_key(), fresh_key());
        // What SQLAlchemy binds for Flask-Session: bytes and a naive UTC datetime.
        raw(
            &t,
            format!(
                "INSERT INTO `{}` (session_id, data, expiry) VALUES \
                 ('{flask_live}', X'81a8757365726e616d65a5616c696365', \
                  UTC_TIMESTAMP() + INTERVAL 1 DAY), \
                 ('{flask_dead}', X'80', UTC_TIMESTAMP() - INTERVAL 1 SECOND)",
                t.table
            ),
        )
        .await;
        assert_eq!(
            t.backend.load(&flask_live).await.unwrap().as_deref(),
            Some(&b"\x81\xa8username\xa5alice"[..])
        );
        assert_eq!(t.backend.load(&flask_dead).await.unwrap(), None);

        let key = fresh_key();
        t.backend
            .store(&key, b"\x80", Duration::from_secs(3600))
            .await
            .unwrap();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT data, CAST(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), expiry) AS SIGNED) \
             FROM `{}` WHERE session_id = ?",
            t.table
        )))
        .bind(&key)
        .fetch_one(t.pool())
        .await
        .unwrap();
        assert_eq!(row.get::<Vec<u8>, _>(0), b"\x80");
        // expiry is naive UTC, an hour ahead (the margin absorbs the test's own pace).
        let ahead: i64 = row.get(1);
        assert!((3500..=3601).contains(&ahead), "{ahead}");
    });
}

#[test]
fn a_table_flask_created_is_used_within_its_64_kib_blob() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        let table = fresh_table();
        // The DDL SQLAlchemy emits for Flask-Session 0.8's model on MySQL.
        raw(
            &t,
            format!(
                "CREATE TABLE `{table}` (id INTEGER NOT NULL AUTO_INCREMENT, \
                 session_id VARCHAR(255), data BLOB, expiry DATETIME, \
                 PRIMARY KEY (id), UNIQUE (session_id))"
            ),
        )
        .await;
        let mut config = config(&url());
        config.sqlalchemy_table = table.clone();
        let backend = SqlBackend::connect(&config).await;
        let result = async {
            let backend = backend.unwrap();
            let key = fresh_key();
            assert!(backend.insert(&key, b"v", LONG).await.unwrap());
            assert!(backend.touch(&key, LONG).await.unwrap());
            // Touched twice within one second: DATETIME keeps whole seconds, the row still
            // counts as found.
            assert!(backend.touch(&key, LONG).await.unwrap());
            assert_eq!(backend.load(&key).await.unwrap(), Some(b"v".to_vec()));
            let err = backend
                .store(&key, &vec![0u8; 70 * 1024], LONG)
                .await
                .unwrap_err();
            assert!(
                matches!(err, BackendError::ValueTooLarge { limit: 65535, .. }),
                "{err}"
            );
        };
        result.await;
        raw(&t, format!("DROP TABLE `{table}`")).await;
    });
}

#[test]
fn an_incompatible_table_is_refused_naming_the_column() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        for (ddl, column) in [
            (
                "id INT AUTO_INCREMENT PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data TEXT, expiry DATETIME",
                "`data`",
            ),
            (
                "id INT AUTO_INCREMENT PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data BLOB",
                "`expiry`",
            ),
            (
                "id INT AUTO_INCREMENT PRIMARY KEY, session_id VARCHAR(255), data BLOB, expiry DATETIME",
                "`session_id`",
            ),
            (
                "id INT PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data BLOB, expiry DATETIME",
                "`id`",
            ),
        ] {
            let table = fresh_table();
            raw(&t, format!("CREATE TABLE `{table}` ({ddl})")).await;
            let mut config = config(&url());
            config.sqlalchemy_table = table.clone();
            let err = SqlBackend::connect(&config).await.err();
            raw(&t, format!("DROP TABLE `{table}`")).await;
            let err = err.unwrap_or_else(|| panic!("{ddl} was accepted"));
            assert_mentions(&err, &["SESSION_SQLALCHEMY_TABLE", &table, column]);
        }
    });
}

#[test]
fn an_invalid_table_name_is_refused() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let mut config = config(&url());
        config.sqlalchemy_table = "sessions`; DROP TABLE x; --".into();
        let err = SqlBackend::connect(&config).await.err().unwrap();
        assert_mentions(&err, &["SESSION_SQLALCHEMY_TABLE"]);
    });
}

#[test]
fn an_unreachable_database_is_an_error_without_the_password() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let mut config = config("mariadb://satchel:hunter2@127.0.0.1:9/satchel");
        config.connect_timeout = Duration::from_secs(2);
        let err = SqlBackend::connect(&config).await.err().unwrap();
        assert_mentions(&err, &["mysql://satchel:***@127.0.0.1:9/satchel"]);
        assert!(!err.to_string().contains("hunter2"), "{err}");
    });
}

#[test]
fn session_ids_differing_only_in_case_stay_apart() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        let key = format!("{}AB", fresh_key());
        t.backend.store(&key, b"one", LONG).await.unwrap();
        assert!(
            t.backend
                .insert(&key.to_lowercase(), b"two", LONG)
                .await
                .unwrap()
        );
        assert_eq!(t.backend.load(&key).await.unwrap(), Some(b"one".to_vec()));
    });
}

/// Locks `key`'s row in a transaction on a connection of its own, as a long transaction would.
async fn lock_the_row(t: &TestTable, key: &str) -> sqlx::Transaction<'static, sqlx::MySql> {
    let locker = sqlx::MySqlPool::connect(&url()).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM `{}` WHERE session_id = ? FOR UPDATE",
        t.table
    )))
    .bind(key)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

#[test]
fn a_write_that_timed_out_on_a_lock_never_lands_after_a_later_one() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::with(|c| c.operation_timeout = LOCK_TEST_TIMEOUT).await;
        let key = fresh_key();
        t.backend.store(&key, b"before", LONG).await.unwrap();
        let tx = lock_the_row(&t, &key).await;
        let err = t.backend.store(&key, b"during", LONG).await.unwrap_err();
        // innodb_lock_wait_timeout: the operation timeout less its margin, in whole seconds.
        assert_lock_timeout(&err, Operation::Store, Duration::from_secs(1), &key);
        tx.rollback().await.unwrap();
        a_later_write_wins(&t.backend, &key).await;
    });
}

#[test]
fn a_write_that_waited_for_a_connection_is_still_ended_by_the_database() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::with(|c| {
            c.operation_timeout = LOCK_TEST_TIMEOUT;
            c.pool_size = 1;
        })
        .await;
        let key = fresh_key();
        t.backend.store(&key, b"before", LONG).await.unwrap();
        let tx = lock_the_row(&t, &key).await;
        // The statement is sent 1.5 s late, so its lock wait outlasts the operation timeout;
        // the client waits for the server's answer instead of leaving the statement waiting.
        let held = hold_the_only_connection(t.pool(), Duration::from_millis(1500)).await;
        let started = Instant::now();
        let err = t.backend.store(&key, b"during", LONG).await.unwrap_err();
        assert_lock_timeout(&err, Operation::Store, Duration::from_secs(1), &key);
        assert!(
            started.elapsed() > LOCK_TEST_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        held.await.unwrap();
        tx.rollback().await.unwrap();
        a_later_write_wins(&t.backend, &key).await;
    });
}

#[test]
fn connections_killed_by_the_server_are_replaced_on_the_next_request() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        let key = fresh_key();
        t.backend.store(&key, b"v", LONG).await.unwrap();
        // What a server restart does to every open connection, done to this pool's only.
        let mut held = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let mut conn = t.pool().acquire().await.unwrap();
            let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            ids.push(id);
            held.push(conn);
        }
        drop(held);
        let admin = sqlx::MySqlPool::connect(&url()).await.unwrap();
        for id in ids {
            raw_on(&admin, format!("KILL {id}")).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(t.backend.load(&key).await.unwrap(), Some(b"v".to_vec()));
    });
}

async fn raw_on(pool: &sqlx::MySqlPool, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

#[test]
fn database_down_then_back_fails_cleanly_and_recovers() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let url = url();
        let table = common::database_down_then_back(&url, &common::host_port(&url)).await;
        let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
        let drop = format!("DROP TABLE IF EXISTS `{table}`");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await
            .unwrap();
    });
}

#[test]
fn a_connection_too_slow_for_one_request_serves_the_next() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let url = url();
        let table = common::a_connection_too_slow_for_one_request_serves_the_next(
            &url,
            &common::host_port(&url),
        )
        .await;
        drop_table(&url, &table).await;
    });
}

#[test]
fn requests_to_a_database_that_stays_down_fail_in_time_and_leave_nothing_behind() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let url = url();
        let table =
            common::requests_to_a_database_that_stays_down_fail_in_time_and_leave_nothing_behind(
                &url,
                &common::host_port(&url),
                |backend| backend.mysql_pool().unwrap().size(),
            )
            .await;
        drop_table(&url, &table).await;
    });
}

#[test]
fn schema_is_prepared_on_a_flask_table_within_a_short_operation_timeout() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let url = url();
        let mut config = config(&url);
        config.operation_timeout = Duration::from_secs(1);
        // Flask-Session's table as SQLAlchemy creates it: no index on `expiry`.
        let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
        let create = format!(
            "CREATE TABLE `{}` (id INTEGER NOT NULL AUTO_INCREMENT, session_id VARCHAR(255), \
             data BLOB, expiry DATETIME, PRIMARY KEY (id), UNIQUE (session_id))",
            config.sqlalchemy_table
        );
        raw_on(&pool, create).await;
        let backend = SqlBackend::connect(&config).await;
        let indexed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'expiry'",
        )
        .bind(&config.sqlalchemy_table)
        .fetch_one(&pool)
        .await
        .unwrap();
        drop_table(&url, &config.sqlalchemy_table).await;
        backend.expect("start-up with a 1 s operation timeout");
        assert_eq!(indexed, 1);
    });
}

async fn drop_table(url: &str, table: &str) {
    let pool = sqlx::MySqlPool::connect(url).await.unwrap();
    raw_on(&pool, format!("DROP TABLE IF EXISTS `{table}`")).await;
}

/// The row's `expiry` as the database holds it.
async fn expiry_of(t: &TestTable, key: String) -> Option<time::PrimitiveDateTime> {
    let sql = format!("SELECT expiry FROM `{}` WHERE session_id = ?", t.table);
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(t.pool())
        .await
        .unwrap()
}

server_dialect_scenarios!();
