//! Satchel's SQL session backend: SQLite (the embedded default), PostgreSQL and MySQL/MariaDB,
//! on the very table Flask-Session's `SESSION_TYPE = "sqlalchemy"` uses.
//!
//! [`SqlBackend::connect`] reads `SESSION_SQLALCHEMY` (the database URL; SQLite in
//! [`DEFAULT_SQLITE_URL`](satchel_core::config::DEFAULT_SQLITE_URL) when unset),
//! `SESSION_SQLALCHEMY_TABLE` and `SESSION_SQLALCHEMY_SCHEMA`, creates the table if it is
//! missing (unless `SESSION_SQLALCHEMY_CREATE_TABLE` is false), checks an existing table's
//! shape, adds an index on `expiry`, and starts the purge of expired rows.
//!
//! # URLs
//!
//! | database | URL | cargo feature |
//! |---|---|---|
//! | SQLite | `sqlite://relative/path.db`, `sqlite:///absolute/path.db`, `sqlite::memory:` | `sqlite` (default) |
//! | PostgreSQL | `postgres://user:password@host:5432/db` (or `postgresql://`) | `postgres` |
//! | MySQL, MariaDB | `mysql://user:password@host:3306/db` (or `mariadb://`) | `mysql` |
//!
//! SQLAlchemy's driver suffixes are accepted and ignored (`postgresql+psycopg2://`,
//! `mysql+pymysql://`), so a Flask app's `SQLALCHEMY_DATABASE_URI` can usually be copied as it
//! is. One exception: SQLAlchemy reads `sqlite:///x.db` (three slashes) as a *relative* path,
//! sqlx as the absolute `/x.db`; write `sqlite://x.db` for a relative file. SQLAlchemy's
//! absolute form `sqlite:////abs/x.db` works unchanged. Messages and logs show URLs with the
//! password replaced by `***` ([`redact_url`]).
//!
//! # The table
//!
//! Column for column Flask-Session 0.8's model, so a Flask app and a Satchel app can share it:
//!
//! | column | SQLite | PostgreSQL | MySQL/MariaDB |
//! |---|---|---|---|
//! | `id` | `INTEGER` primary key | `SERIAL` primary key | `INTEGER AUTO_INCREMENT` primary key |
//! | `session_id` | `VARCHAR(255)` unique | `VARCHAR(255)` unique | `VARCHAR(255)` unique, `utf8mb4_bin` |
//! | `data` | `BLOB` | `BYTEA` | `MEDIUMBLOB` (16 MiB) |
//! | `expiry` | `DATETIME` (text) | `TIMESTAMP WITHOUT TIME ZONE` | `DATETIME(6)` |
//!
//! plus an index `ix_<table>_expiry` on `expiry` (Flask-Session has none; the purge needs it),
//! added to an existing table too when it has no index on `expiry`. With
//! `SESSION_SQLALCHEMY_CREATE_TABLE=false` Satchel runs no DDL at all: it only checks the shape.
//! `expiry` is naive UTC, as Flask-Session's `datetime.utcnow() + lifetime`.
//!
//! Differences on MySQL/MariaDB, where SQLAlchemy would create `data BLOB` (64 KiB at most)
//! and `expiry DATETIME` (whole seconds): Satchel creates `MEDIUMBLOB` so a 1 MiB session fits,
//! `DATETIME(6)` so sub-second lifetimes are exact, and a binary collation on `session_id` so
//! ids differing only in case stay distinct. SQLAlchemy reads all three as it reads its own
//! types. On a table Flask created, Satchel keeps working within that table's limits: a value
//! larger than its `BLOB` is refused with [`BackendError::ValueTooLarge`] before it is sent.
//!
//! # Operations
//!
//! One statement per operation where the database allows: reads filter out expired rows
//! (`expiry > now`, with `now` computed here in UTC like Flask's `utcnow()`); `store` is an
//! atomic upsert; `replace` is one `UPDATE … WHERE expiry > now`; `insert` takes over an
//! *expired* row with the same id and reports a *live* one as a collision.
//!
//! `replace` (saving a changed session) keeps a stored expiry that is at most the
//! [`touch_granularity`](satchel_core::touch_granularity) short of `now + lifetime`, in the same
//! statement (`expiry = CASE WHEN … THEN expiry ELSE now + lifetime END`). The table has an index
//! on `expiry` for purging; an `UPDATE` that changes an indexed column must add an entry to every
//! index of the table, and on PostgreSQL it also cannot be a HOT (in-place) update. Keeping the
//! expiry lets the database leave the indexes alone. benches/HISTORY.md has the measurement.
//! On PostgreSQL and MySQL `store` first tries a plain `UPDATE` and only then upserts, because
//! every upsert draws a value from `id`'s sequence even when it updates, and Flask's 32-bit
//! `id` would run out after some two billion saves.
//!
//! `load_and_touch` (every request while `SESSION_REFRESH_EACH_REQUEST` is on) coalesces the
//! sliding expiry: one plain `SELECT data, expiry … WHERE session_id = ? AND expiry > now`, and
//! a write only when the stored expiry is more than the
//! [`touch_granularity`](satchel_core::touch_granularity) (a hundredth of the lifetime, at most
//! a minute) short of `now + lifetime`. That write is an `UPDATE … SET expiry = now + lifetime`
//! conditional on the row still being live with the expiry just read or an older one, so it
//! never shortens an expiry another request set and never revives an expired or deleted row.
//! With the default 31-day lifetime reads write a session's row at most once a minute, where
//! Flask-Session writes it on every request; its `expiry` stays a datetime within a minute of
//! the one Flask-Session would have written.
//!
//! The pool holds `SATCHEL_POOL_SIZE` connections and opens a new one within
//! `SATCHEL_CONNECT_TIMEOUT`. A connection the database dropped (a restart) or a deadlock is
//! retried on a fresh connection until the operation timeout, so the first request after the
//! database is back succeeds; a lock wait that ran out is not retried.
//!
//! # Timeouts: the database gives up first
//!
//! `SATCHEL_OPERATION_TIMEOUT` (T) bounds the wait for a pooled connection and every wait
//! inside the database, which gives up a margin before T (a tenth of T, at least 50 ms, at
//! most 1 s, at most T/2). Set on each connection:
//!
//! | database | lock wait | whole statement |
//! |---|---|---|
//! | SQLite | `busy_timeout` = T − margin | (a one-row statement is short) |
//! | PostgreSQL | `lock_timeout` = T − margin | `statement_timeout` = T − margin/2 |
//! | MariaDB | `innodb_lock_wait_timeout` = T − margin, whole seconds, at least 1 | `max_statement_time` = T − margin/2 |
//! | MySQL | the same | `max_execution_time` = T − margin/2 (SELECTs only) |
//!
//! A statement the client stops waiting for is not stopped: the server keeps running it (for
//! SQLite, sqlx's worker thread does), and a write waiting for a lock would land once the lock
//! is released, after its caller was told it failed and possibly over a newer write. So the
//! client never abandons a statement the database may still be running. A lock held too long
//! ends in the database with [`BackendError::LockTimeout`] ("the database gave up after N ms
//! waiting for a lock …, and nothing was written; raise SATCHEL_OPERATION_TIMEOUT or find the
//! long-running transaction"), a statement the server cancelled with
//! [`BackendError::Timeout`]; either way nothing from that operation lands afterwards.
//!
//! The client's own [`BackendError::Timeout`] fires at T, or, while a statement it sent may
//! still be running, once the database should have answered (a stalled server or network). So
//! an operation that first waited for a pooled connection can take up to about 2T, and on
//! MySQL with T of a second or less, as long as the 1 s lock wait. With T = 0 (no limit) the
//! servers keep their own settings and SQLite waits for a lock as long as sqlx allows (24 days).
//!
//! A request that finds no idle connection while the pool has room for one has it opened by a
//! background task (at most two connect at a time per pool), which has all of
//! `SATCHEL_CONNECT_TIMEOUT` however early the request gives up at T and then leaves the
//! connection in the pool, so a machine too busy to connect within T still refills a pool an
//! outage emptied. Start-up DDL (`CREATE TABLE`, the `expiry` index) runs without the statement
//! limit (PostgreSQL: `SET LOCAL statement_timeout = 0` in its own transaction; MariaDB:
//! `SET STATEMENT max_statement_time = 0, lock_wait_timeout = … FOR`), so indexing a large
//! existing table cannot fail start-up, while its lock waits stay bounded like a request's.
//!
//! # Expired rows
//!
//! One background task per process and table deletes expired rows every
//! `SATCHEL_PURGE_INTERVAL` seconds (default 600, 0 turns it off), however many times
//! [`SqlBackend::connect`] is called. `SESSION_CLEANUP_N_REQUESTS = N` keeps Flask-Session's
//! meaning: each [`load`](Backend::load) starts a purge in the background with probability
//! 1/(N+1). [`Backend::purge_expired`] purges on demand.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use satchel_core::{Backend, SessionConfig};
//! use satchel_sql::SqlBackend;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = SessionConfig::default();
//! config.sqlalchemy = Some("sqlite://sessions.sqlite3".into());
//! let backend = SqlBackend::connect(&config).await?;
//! backend.store("session:abc", b"\x80", Duration::from_secs(3600)).await?;
//! assert_eq!(backend.load("session:abc").await?, Some(b"\x80".to_vec()));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("satchel-sql needs at least one of the features `sqlite`, `postgres`, `mysql`");

mod dialect;
mod error;
mod purge;
mod table;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use satchel_core::{Backend, BackendError, ConfigError, Operation, SessionConfig};
pub use sqlx;
use time::PrimitiveDateTime;

use crate::dialect::{Budget, GaveUp, MAX_KEY_CHARS, expiry_after, utc_now};
pub use crate::error::{SqlError, redact_url};
use crate::table::TableName;

/// Sessions in a SQL table: SQLite, PostgreSQL or MySQL/MariaDB, chosen by the URL's scheme.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct SqlBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    name: &'static str,
    timeout: Duration,
    /// How long the database may take to answer a statement already sent (its own limit plus
    /// the margin for the answer to arrive); see [`dialect::Budget`].
    answer_within: Duration,
    /// What the database waits for a lock before it gives up, for the error.
    lock_wait: Duration,
    cleanup_n_requests: Option<u64>,
    /// The largest value the `data` column holds, when it is smaller than any session should be.
    value_limit: Option<usize>,
    /// Identifies the database and table for the one-purge-task-per-process guard.
    purge_key: String,
    purge_task: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.purge_task.get() {
            task.abort();
        }
    }
}

/// One variant per dialect compiled in.
enum Store {
    #[cfg(feature = "sqlite")]
    Sqlite(dialect::sqlite::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(dialect::postgres::PgStore),
    #[cfg(feature = "mysql")]
    MySql(dialect::mysql::MySqlStore),
}

/// Calls the same method on whichever dialect is in use.
macro_rules! on_store {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            #[cfg(feature = "sqlite")]
            Store::Sqlite($s) => $call,
            #[cfg(feature = "postgres")]
            Store::Postgres($s) => $call,
            #[cfg(feature = "mysql")]
            Store::MySql($s) => $call,
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

const ACCEPTED_URLS: &str = "a URL starting with sqlite:// (SQLite), postgres:// or \
    postgresql:// (PostgreSQL), mysql:// or mariadb:// (MySQL/MariaDB)";

/// Splits the scheme off `url` and normalizes SQLAlchemy's spellings: `postgresql+psycopg2://`
/// becomes `postgresql://`, `mariadb://` becomes `mysql://`.
fn dialect_of(url: &str) -> Result<(Dialect, String), ConfigError> {
    let (scheme, rest) = url.split_once(':').ok_or_else(|| ConfigError::Invalid {
        setting: "SESSION_SQLALCHEMY",
        value: redact_url(url),
        expected: ACCEPTED_URLS.into(),
    })?;
    let base = scheme
        .split('+')
        .next()
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    let (dialect, scheme) = match base.as_str() {
        "sqlite" => (Dialect::Sqlite, "sqlite"),
        "postgres" | "postgresql" => (Dialect::Postgres, "postgres"),
        "mysql" | "mariadb" => (Dialect::MySql, "mysql"),
        _ => {
            return Err(ConfigError::Invalid {
                setting: "SESSION_SQLALCHEMY",
                value: redact_url(url),
                expected: ACCEPTED_URLS.into(),
            });
        }
    };
    Ok((dialect, format!("{scheme}:{rest}")))
}

#[allow(dead_code)] // only the features that are off use it
fn feature_off(feature: &'static str) -> ConfigError {
    ConfigError::BackendUnavailable {
        session_type: "sqlalchemy",
        feature,
        reason: "is a cargo feature of satchel-sql (and of satchel) that this build leaves out; \
                 enable it to use this database",
    }
}

impl SqlBackend {
    /// Connects to the database in `config.sqlalchemy` (SQLite in
    /// [`DEFAULT_SQLITE_URL`](satchel_core::config::DEFAULT_SQLITE_URL) when unset), prepares
    /// the sessions table and starts the periodic purge (once per process and table).
    ///
    /// Must be called inside a tokio runtime. Fails with a [`ConfigError`] naming the setting
    /// when the URL, table name or schema is unusable, the database is unreachable (the message
    /// shows the URL without its password), the SQLite file cannot be written (the message
    /// names the path), or an existing table has another shape (the message names the column).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), satchel_core::ConfigError> {
    /// let mut config = satchel_core::SessionConfig::default();
    /// config.sqlalchemy = Some("postgres://app:secret@127.0.0.1:5432/app".into());
    /// config.sqlalchemy_table = "flask_sessions".into();
    /// let backend = satchel_sql::SqlBackend::connect(&config).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(config: &SessionConfig) -> Result<SqlBackend, ConfigError> {
        let url = config
            .sqlalchemy
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or(satchel_core::config::DEFAULT_SQLITE_URL);
        let table = TableName::from_config(config)?;
        let (dialect, url) = dialect_of(url.trim())?;
        // Only MySQL reads a size limit from the table (a Flask-made `BLOB` holds 64 KiB).
        let (store, name, value_limit) = match dialect {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => (
                Store::Sqlite(dialect::sqlite::SqliteStore::connect(&url, &table, config).await?),
                dialect::sqlite::NAME,
                None,
            ),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => (
                Store::Postgres(dialect::postgres::PgStore::connect(&url, &table, config).await?),
                dialect::postgres::NAME,
                None,
            ),
            #[cfg(feature = "mysql")]
            Dialect::MySql => {
                let store = dialect::mysql::MySqlStore::connect(&url, &table, config).await?;
                let limit = store.value_limit();
                (Store::MySql(store), dialect::mysql::NAME, limit)
            }
            #[allow(unreachable_patterns)]
            Dialect::Sqlite => return Err(feature_off("sqlite")),
            #[allow(unreachable_patterns)]
            Dialect::Postgres => return Err(feature_off("postgres")),
            #[allow(unreachable_patterns)]
            Dialect::MySql => return Err(feature_off("mysql")),
        };
        let limits = dialect::Limits::new(config.operation_timeout);
        let (answer_within, lock_wait) = on_store!(&store, s => (s.answer_within(), s.lock_wait()));
        let backend = SqlBackend {
            inner: Arc::new(Inner {
                store,
                name,
                timeout: limits.operation,
                answer_within: answer_within.saturating_add(limits.margin),
                lock_wait,
                cleanup_n_requests: config.cleanup_n_requests,
                value_limit,
                purge_key: format!("{}#{}", redact_url(&url), table.display()),
                purge_task: OnceLock::new(),
            }),
        };
        if let Some(task) = backend.spawn_purge_task(config.purge_interval) {
            // The task holds only a weak reference; aborting it when the last clone goes
            // frees its slot in the per-process guard at once.
            let _ = backend.inner.purge_task.set(task.abort_handle());
        }
        tracing::debug!(backend = name, table = %table.display(), "satchel-sql: ready");
        Ok(backend)
    }

    /// Starts the periodic purge of expired rows (first run at once, then every `interval`),
    /// unless `interval` is zero or this process already runs one for the same database and
    /// table; then it returns `None`. [`connect`](Self::connect) already calls it with
    /// `SATCHEL_PURGE_INTERVAL`, so call it only after setting that to 0.
    ///
    /// The task stops by itself once every clone of this backend is dropped.
    pub fn spawn_purge_task(&self, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        purge::spawn(&self.inner, interval)
    }

    /// With `SESSION_CLEANUP_N_REQUESTS = N` set, starts a background purge with probability
    /// 1/(N+1), as Flask-Session does before each request. [`load`](Backend::load) and
    /// [`load_and_touch`](Backend::load_and_touch) call it; a caller may call it for requests
    /// that carry no session.
    pub fn maybe_cleanup(&self) {
        let Some(n) = self.inner.cleanup_n_requests else {
            return;
        };
        let Some(sides) = n.checked_add(1) else {
            return;
        };
        if getrandom::u64().is_ok_and(|r| r % sides == 0) {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                if let Err(error) = inner.purge().await {
                    tracing::warn!(backend = inner.name, %error, "satchel-sql: cleanup failed");
                }
            });
        }
    }

    /// The SQLite pool, for tests and tools that inspect the table. Connections Satchel keeps
    /// between its operations go back to it first (see [`postgres_pool`](Self::postgres_pool)).
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.inner.store {
            Store::Sqlite(s) => Some(s.pool()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The PostgreSQL pool this thread's operations use, for tests and tools that inspect the
    /// table. On a current-thread runtime (an actix-web worker, `#[tokio::test]`) that is the
    /// thread's own pool, else the shared one; a clone shares the connections.
    ///
    /// Between its own operations Satchel keeps the connections it used out of the pool (so
    /// that sqlx does not test each with a round trip when it comes back); this call gives
    /// them back first. A tool that needs connections for long should open a pool of its own.
    #[cfg(feature = "postgres")]
    pub fn postgres_pool(&self) -> Option<sqlx::PgPool> {
        match &self.inner.store {
            Store::Postgres(s) => Some(s.pool_for_this_thread()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The MySQL/MariaDB pool this thread's operations use, as
    /// [`postgres_pool`](Self::postgres_pool).
    #[cfg(feature = "mysql")]
    pub fn mysql_pool(&self) -> Option<sqlx::MySqlPool> {
        match &self.inner.store {
            Store::MySql(s) => Some(s.pool_for_this_thread()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

impl Inner {
    /// The clock for one operation.
    fn budget(&self) -> Budget {
        Budget::new(self.timeout, self.answer_within)
    }

    /// Runs `work` (which keeps `budget` up to date) until the database answers or the client
    /// gives up, and maps its error.
    ///
    /// The client gives up at the operation timeout, or later while a statement it sent may
    /// still be running in the database: abandoning it there would not stop it, and a write
    /// reported as failed could land afterwards.
    async fn run<T>(
        &self,
        operation: Operation,
        budget: &Budget,
        work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, BackendError> {
        let mut work = std::pin::pin!(work);
        loop {
            let give_up_at = budget.give_up_at();
            match tokio::time::timeout_at(give_up_at.into(), work.as_mut()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => return Err(self.failure(operation, budget, error)),
                // A statement was sent since: wait for the database's answer to it.
                Err(_) if budget.give_up_at() > give_up_at => {}
                Err(_) => return Err(self.timed_out(operation)),
            }
        }
    }

    fn timed_out(&self, operation: Operation) -> BackendError {
        BackendError::Timeout {
            backend: self.name,
            operation,
            timeout: self.timeout,
        }
    }

    fn failure(&self, operation: Operation, budget: &Budget, error: sqlx::Error) -> BackendError {
        if matches!(error, sqlx::Error::PoolTimedOut) && budget.expired() {
            // No connection before the deadline: nothing was sent.
            return self.timed_out(operation);
        }
        match on_store!(&self.store, s => s.gave_up(&error)) {
            Some(GaveUp::Lock) => BackendError::LockTimeout {
                backend: self.name,
                operation,
                waited: self.lock_wait,
            },
            Some(GaveUp::Statement) => self.timed_out(operation),
            None => BackendError::driver(self.name, operation, SqlError::from_sqlx(error)),
        }
    }

    fn check_key(&self, key: &str) -> Result<(), BackendError> {
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(BackendError::InvalidKey {
                backend: self.name,
                reason: "longer than the 255 characters of the session_id column",
            });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), BackendError> {
        match self.value_limit {
            Some(limit) if value.len() > limit => Err(BackendError::ValueTooLarge {
                backend: self.name,
                size: value.len(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Deletes expired rows in batches, each bounded by the operation timeout.
    async fn purge(&self) -> Result<u64, BackendError> {
        let now = utc_now();
        let mut total = 0;
        loop {
            let budget = self.budget();
            let n = self
                .run(Operation::Purge, &budget, async {
                    on_store!(&self.store, s => s.purge_batch(&budget, now).await)
                })
                .await?;
            total += n;
            if n < dialect::PURGE_BATCH as u64 {
                break;
            }
        }
        if total > 0 {
            tracing::debug!(backend = self.name, removed = total, "satchel-sql: purged");
        }
        Ok(total)
    }
}

fn expiry(ttl: Duration) -> (PrimitiveDateTime, PrimitiveDateTime) {
    let now = utc_now();
    (now, expiry_after(now, ttl))
}

impl Backend for SqlBackend {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.maybe_cleanup();
        let inner = &*self.inner;
        if inner.check_key(key).is_err() {
            return Ok(None);
        }
        let now = utc_now();
        let budget = inner.budget();
        inner
            .run(Operation::Load, &budget, async {
                on_store!(&inner.store, s => s.load(&budget, key, now).await)
            })
            .await
    }

    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        self.maybe_cleanup();
        let inner = &*self.inner;
        if inner.check_key(key).is_err() {
            return Ok(None);
        }
        let slide = dialect::Slide::after(ttl);
        let budget = inner.budget();
        inner
            .run(Operation::LoadAndTouch, &budget, async {
                on_store!(&inner.store, s => s.load_and_touch(&budget, key, slide).await)
            })
            .await
    }

    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let inner = &*self.inner;
        inner.check_key(key)?;
        inner.check_value(value)?;
        let (now, until) = expiry(ttl);
        let budget = inner.budget();
        inner
            .run(Operation::Insert, &budget, async {
                on_store!(&inner.store, s => s.insert(&budget, key, value, now, until).await)
            })
            .await
    }

    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        let inner = &*self.inner;
        inner.check_key(key)?;
        inner.check_value(value)?;
        let (_, until) = expiry(ttl);
        let budget = inner.budget();
        inner
            .run(Operation::Store, &budget, async {
                on_store!(&inner.store, s => s.store(&budget, key, value, until).await)
            })
            .await
    }

    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let inner = &*self.inner;
        if inner.check_key(key).is_err() {
            return Ok(false);
        }
        inner.check_value(value)?;
        let slide = dialect::Slide::after(ttl);
        let budget = inner.budget();
        inner
            .run(Operation::Replace, &budget, async {
                on_store!(&inner.store, s => s.replace(&budget, key, value, slide).await)
            })
            .await
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        let inner = &*self.inner;
        if inner.check_key(key).is_err() {
            return Ok(false);
        }
        let (now, until) = expiry(ttl);
        let budget = inner.budget();
        inner
            .run(Operation::Touch, &budget, async {
                on_store!(&inner.store, s => s.touch(&budget, key, now, until).await)
            })
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let inner = &*self.inner;
        if inner.check_key(key).is_err() {
            return Ok(());
        }
        let budget = inner.budget();
        inner
            .run(Operation::Delete, &budget, async {
                on_store!(&inner.store, s => s.delete(&budget, key).await)
            })
            .await
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        self.inner.purge().await
    }

    fn name(&self) -> &'static str {
        self.inner.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_url_spellings_are_understood() {
        for (url, dialect, normalized) in [
            ("sqlite://x.db", Dialect::Sqlite, "sqlite://x.db"),
            (
                "sqlite+pysqlite:////tmp/x.db",
                Dialect::Sqlite,
                "sqlite:////tmp/x.db",
            ),
            (
                "postgresql+psycopg2://u:p@h/d",
                Dialect::Postgres,
                "postgres://u:p@h/d",
            ),
            ("postgres://h/d", Dialect::Postgres, "postgres://h/d"),
            ("mariadb://h/d", Dialect::MySql, "mysql://h/d"),
            ("mysql+pymysql://h/d", Dialect::MySql, "mysql://h/d"),
        ] {
            assert_eq!(dialect_of(url).unwrap(), (dialect, normalized.to_owned()));
        }
    }

    #[test]
    fn unknown_schemes_are_refused_without_the_password() {
        let err = dialect_of("oracle://scott:tiger@h/d")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SESSION_SQLALCHEMY") && err.contains("postgres://"),
            "{err}"
        );
        assert!(!err.contains("tiger"), "{err}");
    }
}
