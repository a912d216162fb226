//! The PostgreSQL dialect against a real server (`SATCHEL_POSTGRES_URL`, default
//! `postgres://satchel:satchel@127.0.0.1:5432/satchel`; `SATCHEL_SKIP_POSTGRES=1` skips).
#![cfg(feature = "postgres")]
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

const SKIP: &str = "POSTGRES";

fn url() -> String {
    std::env::var("SATCHEL_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://satchel:satchel@127.0.0.1:5432/satchel".into())
}

/// A backend on a fresh table, dropped again when the test ends.
struct TestTable {
    backend: SqlBackend,
    /// The pool the backend's operations from this test's thread use.
    pool: sqlx::PgPool,
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
            .expect("connect to PostgreSQL");
        let pool = backend.postgres_pool().unwrap();
        TestTable {
            backend,
            pool,
            table,
        }
    }

    /// The backend's pool, with the connections the backend keeps between its operations
    /// given back to it, so a test can take them.
    fn pool(&self) -> &sqlx::PgPool {
        let _ = self.backend.postgres_pool();
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
                    if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                        let sql = format!("DROP TABLE IF EXISTS \"{table}\"");
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

satchel_core::conformance_suite!("POSTGRES", TestTable::new());

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
        let columns: Vec<(String, String, Option<i32>, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, character_maximum_length, \
                    coalesce(column_default, '') \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&t.table)
        .fetch_all(t.pool())
        .await
        .unwrap();
        let got: Vec<(&str, &str, Option<i32>)> = columns
            .iter()
            .map(|(n, ty, len, _)| (n.as_str(), ty.as_str(), *len))
            .collect();
        assert_eq!(
            got,
            [
                ("id", "integer", None),
                ("session_id", "character varying", Some(255)),
                ("data", "bytea", None),
                ("expiry", "timestamp without time zone", None),
            ]
        );
        assert!(
            columns[0].3.starts_with("nextval("),
            "id is SERIAL: {}",
            columns[0].3
        );
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
        )
        .bind(&t.table)
        .fetch_all(t.pool())
        .await
        .unwrap();
        let text = indexes.join("\n");
        assert!(
            text.contains("UNIQUE INDEX") && text.contains("(session_id)"),
            "{text}"
        );
        assert!(text.contains("(expiry)"), "{text}");
        assert!(text.contains("(id)"), "{text}");
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
                "INSERT INTO \"{}\" (session_id, data, expiry) VALUES \
                 ('{flask_live}', '\\x81a8757365726e616d65a5616c696365'::bytea, \
                  (now() AT TIME ZONE 'utc') + interval '1 day'), \
                 ('{flask_dead}', '\\x80'::bytea, (now() AT TIME ZONE 'utc') - interval '1 second')",
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
            "SELECT data, extract(epoch FROM expiry - (now() AT TIME ZONE 'utc'))::float8 \
             FROM \"{}\" WHERE session_id = $1",
            t.table
        )))
        .bind(&key)
        .fetch_one(t.pool())
        .await
        .unwrap();
        assert_eq!(row.get::<Vec<u8>, _>(0), b"\x80");
        // expiry is naive UTC, an hour ahead (the margin absorbs the test's own pace).
        let ahead: f64 = row.get(1);
        assert!((3500.0..=3601.0).contains(&ahead), "{ahead}");
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
                "id SERIAL PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data TEXT, expiry TIMESTAMP",
                "`data`",
            ),
            (
                "id SERIAL PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data BYTEA",
                "`expiry`",
            ),
            (
                "id SERIAL PRIMARY KEY, session_id VARCHAR(255), data BYTEA, expiry TIMESTAMP",
                "`session_id`",
            ),
            (
                "id SERIAL PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data BYTEA, expiry TIMESTAMPTZ",
                "`expiry`",
            ),
            (
                "id INTEGER PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data BYTEA, expiry TIMESTAMP",
                "`id`",
            ),
        ] {
            let table = fresh_table();
            raw(&t, format!("CREATE TABLE \"{table}\" ({ddl})")).await;
            let mut config = config(&url());
            config.sqlalchemy_table = table.clone();
            let err = SqlBackend::connect(&config).await.err();
            raw(&t, format!("DROP TABLE \"{table}\"")).await;
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
        config.sqlalchemy_table = "sessions\"; DROP TABLE x; --".into();
        let err = SqlBackend::connect(&config).await.err().unwrap();
        assert_mentions(&err, &["SESSION_SQLALCHEMY_TABLE"]);
    });
}

#[test]
fn a_schema_is_honoured() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        let schema = format!("satchel_{}", &fresh_table()[9..]);
        raw(&t, format!("CREATE SCHEMA \"{schema}\"")).await;
        let mut config = config(&url());
        config.sqlalchemy_schema = Some(schema.clone());
        let backend = SqlBackend::connect(&config).await.unwrap();
        let key = fresh_key();
        backend.store(&key, b"v", LONG).await.unwrap();
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".\"{}\"",
            config.sqlalchemy_table
        )))
        .fetch_one(t.pool())
        .await
        .unwrap();
        assert_eq!(n, 1);
        drop(backend);
        raw(&t, format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    });
}

#[test]
fn an_unreachable_database_is_an_error_without_the_password() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        // Port 9 (discard) has nothing listening on loopback.
        let mut config = config("postgres://satchel:hunter2@127.0.0.1:9/satchel");
        config.connect_timeout = Duration::from_secs(2);
        let err = SqlBackend::connect(&config).await.err().unwrap();
        assert_mentions(&err, &["postgres://satchel:***@127.0.0.1:9/satchel"]);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // A wrong password is also an error that does not repeat it.
        let mut config = config_with_password(&url(), "wrong-password");
        config.connect_timeout = Duration::from_secs(5);
        let err = SqlBackend::connect(&config).await.err().unwrap();
        assert!(!err.to_string().contains("wrong-password"), "{err}");
    });
}

fn config_with_password(url: &str, password: &str) -> SessionConfig {
    let (head, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.split_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    config(&format!("{head}://{user}:{password}@{host}"))
}

#[test]
fn updates_do_not_draw_from_the_id_sequence() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let t = TestTable::new().await;
        let key = fresh_key();
        for i in 0..20u8 {
            t.backend.store(&key, &[i], LONG).await.unwrap();
        }
        let other = fresh_key();
        t.backend.store(&other, b"x", LONG).await.unwrap();
        let id: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM \"{}\" WHERE session_id = $1",
            t.table
        )))
        .bind(&other)
        .fetch_one(t.pool())
        .await
        .unwrap();
        assert_eq!(id, 2);
    });
}

/// Locks `key`'s row in a transaction on a connection of its own, as a long transaction would.
async fn lock_the_row(t: &TestTable, key: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let locker = sqlx::PgPool::connect(&url()).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM \"{}\" WHERE session_id = $1 FOR UPDATE",
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
        // lock_timeout: the operation timeout less its 200 ms margin.
        assert_lock_timeout(&err, Operation::Store, Duration::from_millis(1800), &key);
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
        // The statement is sent a second late, so its lock wait outlasts the operation timeout;
        // the client waits for the server's answer instead of leaving the statement waiting.
        let held = hold_the_only_connection(t.pool(), Duration::from_secs(1)).await;
        let started = Instant::now();
        let err = t.backend.store(&key, b"during", LONG).await.unwrap_err();
        assert_lock_timeout(&err, Operation::Store, Duration::from_millis(1800), &key);
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
        let mut pids = Vec::new();
        for _ in 0..3 {
            let mut conn = t.pool().acquire().await.unwrap();
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            pids.push(pid);
            held.push(conn);
        }
        drop(held);
        let admin = sqlx::PgPool::connect(&url()).await.unwrap();
        for pid in pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&admin)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(t.backend.load(&key).await.unwrap(), Some(b"v".to_vec()));
    });
}

#[test]
fn database_down_then_back_fails_cleanly_and_recovers() {
    if skipped(SKIP) {
        return;
    }
    run(async {
        let url = url();
        let table = common::database_down_then_back(&url, &common::host_port(&url)).await;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let drop = format!("DROP TABLE IF EXISTS \"{table}\"");
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
                |backend| backend.postgres_pool().unwrap().size(),
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
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let create = format!(
            "CREATE TABLE \"{}\" (id SERIAL NOT NULL, session_id VARCHAR(255), data BYTEA, \
             expiry TIMESTAMP WITHOUT TIME ZONE, PRIMARY KEY (id), UNIQUE (session_id))",
            config.sqlalchemy_table
        );
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&pool)
            .await
            .unwrap();
        let backend = SqlBackend::connect(&config).await;
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = $1")
                .bind(&config.sqlalchemy_table)
                .fetch_all(&pool)
                .await
                .unwrap();
        drop_table(&url, &config.sqlalchemy_table).await;
        backend.expect("start-up with a 1 s operation timeout");
        assert!(
            indexes.iter().any(|i| i.contains("(expiry)")),
            "{indexes:?}"
        );
    });
}

async fn drop_table(url: &str, table: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let drop = format!("DROP TABLE IF EXISTS \"{table}\"");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&pool)
        .await
        .unwrap();
}

/// The row's `expiry` as the database holds it.
async fn expiry_of(t: &TestTable, key: String) -> Option<time::PrimitiveDateTime> {
    let sql = format!("SELECT expiry FROM \"{}\" WHERE session_id = $1", t.table);
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(t.pool())
        .await
        .unwrap()
}

server_dialect_scenarios!();
