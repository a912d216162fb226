//! What the dialects share: timestamps, the check of an existing table's shape, error mapping
//! and the retry of transient failures. Each dialect's statements live in its own module.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use satchel_core::{ConfigError, SessionConfig};
use sqlx::AssertSqlSafe;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::table::TableName;

/// The `attempt` of [`retry`] from the statements of one operation on `conn`:
/// `attempt!(|conn| { … &mut *conn … })` runs them and hands the connection back with their
/// result, as `retry` needs to park it after a success. A macro because the statements borrow
/// the connection, and a closure taking `&mut` cannot say that its future does (the future of
/// a `Backend` operation must be `Send`, which async closures cannot promise yet).
macro_rules! attempt {
    (|$conn:ident| $body:block) => {
        |mut $conn| async move {
            let result: Result<_, sqlx::Error> = async $body.await;
            ($conn, result)
        }
    };
}

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
mod pool;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

pub(crate) use pool::{Checkout, Pool};

/// Rows deleted per purge statement: small batches keep each lock short on a large table.
pub(crate) const PURGE_BATCH: i64 = 10_000;

/// Characters the `session_id VARCHAR(255)` column holds.
pub(crate) const MAX_KEY_CHARS: usize = 255;

/// The current time as Flask-Session writes it: naive UTC (`datetime.utcnow()`), microseconds.
pub(crate) fn utc_now() -> PrimitiveDateTime {
    let now = OffsetDateTime::now_utc();
    let now = PrimitiveDateTime::new(now.date(), now.time());
    // Every database here stores microseconds; truncating keeps Rust's and SQL's views equal.
    now.replace_microsecond(now.microsecond()).unwrap_or(now)
}

/// `now + ttl`, saturating at the largest timestamp every database accepts.
pub(crate) fn expiry_after(now: PrimitiveDateTime, ttl: Duration) -> PrimitiveDateTime {
    time::Duration::try_from(ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .filter(|t| t.year() <= 9999)
        .unwrap_or_else(latest)
}

/// Touch coalescing: `load_and_touch` writes a new expiry only over one older than this, `until`
/// less the [`touch_granularity`](satchel_core::touch_granularity) of `ttl` (at most a minute).
pub(crate) fn stale_before(until: PrimitiveDateTime, ttl: Duration) -> PrimitiveDateTime {
    time::Duration::try_from(satchel_core::touch_granularity(ttl))
        .ok()
        .and_then(|granularity| until.checked_sub(granularity))
        .unwrap_or(until)
}

fn latest() -> PrimitiveDateTime {
    // 9999-12-31 23:59:59: the last second MySQL's DATETIME and SQLAlchemy both accept. Spelled
    // out rather than `PrimitiveDateTime::MAX`, which is year 999999 when any crate in the
    // build turns on `time`'s `large-dates` feature.
    time::macros::datetime!(9999-12-31 23:59:59)
}

/// The column types the check of an existing table knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Integer,
    Text,
    Binary,
    DateTime,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "an integer",
            Kind::Text => "a character type such as VARCHAR(255)",
            Kind::Binary => "a binary type (BLOB, BYTEA)",
            Kind::DateTime => "a date-time without time zone (DATETIME, TIMESTAMP)",
        }
    }
}

/// One column of an existing table, as the database describes it.
#[derive(Debug)]
pub(crate) struct FoundColumn {
    pub(crate) name: String,
    /// The declared type, for messages.
    pub(crate) declared: String,
    /// The dialect's reading of the declared type; `None` if it is none of [`Kind`].
    pub(crate) kind: Option<Kind>,
    /// For `id`: whether the database fills it in (auto-increment, sequence default, rowid).
    pub(crate) generated: bool,
}

/// Checks an existing table against the columns Flask-Session's table has, and says which
/// column differs.
pub(crate) fn check_shape(
    table: &TableName,
    columns: &[FoundColumn],
    session_id_unique: bool,
) -> Result<(), ConfigError> {
    let find = |name: &str| columns.iter().find(|c| c.name.eq_ignore_ascii_case(name));
    for (name, kind) in [
        ("id", Kind::Integer),
        ("session_id", Kind::Text),
        ("data", Kind::Binary),
        ("expiry", Kind::DateTime),
    ] {
        let Some(column) = find(name) else {
            return Err(incompatible(table, format!("has no column `{name}`")));
        };
        if column.kind != Some(kind) {
            return Err(incompatible(
                table,
                format!(
                    "has column `{name}` of type {}, where {} is needed",
                    column.declared,
                    kind.expected()
                ),
            ));
        }
        if name == "id" && !column.generated {
            return Err(incompatible(
                table,
                "has column `id` without an automatic value (auto-increment, SERIAL or \
                 INTEGER PRIMARY KEY); a table made with SESSION_SQLALCHEMY_SEQUENCE needs a \
                 `DEFAULT nextval(...)` on `id`"
                    .into(),
            ));
        }
    }
    if !session_id_unique {
        return Err(incompatible(
            table,
            "has column `session_id` without a UNIQUE constraint of its own".into(),
        ));
    }
    Ok(())
}

fn incompatible(table: &TableName, problem: String) -> ConfigError {
    ConfigError::Invalid {
        setting: "SESSION_SQLALCHEMY_TABLE",
        value: table.display(),
        expected: format!(
            "Flask-Session's sessions table (id, session_id VARCHAR(255) UNIQUE, data, expiry), \
             but the existing table {problem}"
        ),
    }
}

/// The table is missing and the configuration forbids creating it.
pub(crate) fn missing_table(table: &TableName) -> ConfigError {
    ConfigError::Invalid {
        setting: "SESSION_SQLALCHEMY_TABLE",
        value: table.display(),
        expected: "an existing table, because SESSION_SQLALCHEMY_CREATE_TABLE is false".into(),
    }
}

/// A failure while preparing the schema at start-up.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn setup_error(backend: &'static str, source: sqlx::Error) -> ConfigError {
    ConfigError::Backend(satchel_core::BackendError::driver(
        backend,
        satchel_core::Operation::Setup,
        crate::error::SqlError::from_sqlx(source),
    ))
}

/// Why preparing the schema failed: the table's shape, or the database.
pub(crate) enum Setup {
    Shape(ConfigError),
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for Setup {
    fn from(e: sqlx::Error) -> Setup {
        Setup::Sql(e)
    }
}

/// The database could not be reached at start-up; `url` is already redacted.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn unreachable(
    backend: &'static str,
    url: &str,
    source: Option<sqlx::Error>,
    timeout: Duration,
) -> ConfigError {
    let error = match source {
        Some(source) => crate::error::SqlError::Connect {
            url: url.to_owned(),
            source,
        },
        None => crate::error::SqlError::ConnectTimeout {
            url: url.to_owned(),
            timeout,
        },
    };
    ConfigError::Backend(satchel_core::BackendError::driver(
        backend,
        satchel_core::Operation::Connect,
        error,
    ))
}

/// How an error may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transient {
    /// The connection died (database restarted, network cut): another pooled connection, or a
    /// fresh one, may work at once. After a restart every idle connection in the pool is dead,
    /// so this allows as many tries as the pool can hold.
    Connection,
    /// A deadlock or serialization failure the database asks the client to retry.
    Conflict,
}

fn transient(error: &sqlx::Error) -> Option<Transient> {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            Some(Transient::Connection)
        }
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            match code.as_ref() {
                // PostgreSQL: admin/crash shutdown, cannot connect now; class 08 connection
                // exceptions.
                "57P01" | "57P02" | "57P03" => Some(Transient::Connection),
                c if c.starts_with("08") => Some(Transient::Connection),
                // Serialization failure and deadlock (MySQL/MariaDB report their deadlock as
                // SQLSTATE 40001 too); SQLite's busy-snapshot and locked codes, which come back
                // at once. Not SQLite's plain busy (5): it comes after the busy timeout already
                // waited as long as the operation timeout allows (see `Limits`).
                "40001" | "40P01" | "6" | "517" | "262" => Some(Transient::Conflict),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Tries for a dead connection: more than a pool holds (`SATCHEL_POOL_SIZE` is small in
/// practice), each failing at once, all within the caller's operation timeout.
const CONNECTION_TRIES: u32 = 34;
const CONFLICT_TRIES: u32 = 3;

/// Runs `attempt` on a connection from `pool`, and again while it fails with a transient error,
/// a bounded number of times and only while `budget`'s deadline has not passed.
///
/// Each attempt gets its own connection (a dead one is replaced by the next try). Waiting for
/// it is bounded by the deadline (a connection being opened for it carries on in the
/// background, see [`Pool`]); once the connection is handed to `attempt` its statement is
/// about to be sent, which [`Budget::sending`] records. An attempt that sends a second
/// statement calls `sending` again before it.
///
/// `attempt` hands the connection back with its result. After a success it is parked for the
/// next operation ([`Checkout::give_back`]); after a failure, or when this future is dropped
/// mid-statement, it goes back through sqlx's test.
pub(crate) async fn retry<DB, T, F, Fut>(
    budget: &Budget,
    pool: &Pool<DB>,
    mut attempt: F,
) -> Result<T, sqlx::Error>
where
    DB: sqlx::Database,
    F: FnMut(Checkout<DB>) -> Fut,
    Fut: Future<Output = (Checkout<DB>, Result<T, sqlx::Error>)>,
{
    let mut tries = 0u32;
    loop {
        tries += 1;
        let conn = pool.acquire_until(budget.deadline).await?;
        budget.sending();
        let (conn, result) = attempt(conn).await;
        match result {
            Ok(value) => {
                conn.give_back();
                return Ok(value);
            }
            Err(error) => {
                // Back through sqlx's test, which closes it if it is broken.
                drop(conn);
                let kind = transient(&error);
                let limit = match kind {
                    Some(Transient::Connection) => {
                        pool.unpark_all();
                        CONNECTION_TRIES
                    }
                    Some(Transient::Conflict) => CONFLICT_TRIES,
                    None => return Err(error),
                };
                // A dead pooled connection is replaced at once; a conflict backs off a little.
                let pause = if kind == Some(Transient::Conflict) || tries > 4 {
                    Duration::from_millis(20 * u64::from(tries.min(10)))
                } else {
                    Duration::ZERO
                };
                if tries >= limit || Instant::now() + pause >= budget.deadline {
                    return Err(error);
                }
                tracing::debug!(%error, tries, "satchel-sql: retrying after a transient error");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The moments one coalesced read compares and writes (see [`load_and_touch`]).
#[derive(Clone, Copy)]
pub(crate) struct Slide {
    /// Rows whose expiry is not after this are expired.
    pub(crate) now: PrimitiveDateTime,
    /// The expiry to write: `now + ttl`.
    pub(crate) until: PrimitiveDateTime,
    /// A stored expiry older than this is written anew ([`stale_before`]).
    pub(crate) stale_before: PrimitiveDateTime,
}

impl Slide {
    /// The moments of an operation starting now with lifetime `ttl`.
    pub(crate) fn after(ttl: Duration) -> Slide {
        let now = utc_now();
        let until = expiry_after(now, ttl);
        Slide {
            now,
            until,
            stale_before: stale_before(until, ttl),
        }
    }
}

/// Touch coalescing for the dialects whose driver binds [`PrimitiveDateTime`] itself
/// (PostgreSQL and MySQL/MariaDB; SQLite stores text and has its own): a plain read of the value
/// and its expiry with `load_with_expiry` (`session_id`, `now`), then, only when the stored
/// expiry is older than `stale_before`, `slide_expiry` (`until`, `session_id`, the expiry just
/// read, `now`), which changes the row only while it is live with that expiry or an older one.
pub(crate) async fn load_and_touch<DB>(
    pool: &Pool<DB>,
    budget: &Budget,
    (load_with_expiry, slide_expiry): (&Arc<str>, &Arc<str>),
    key: &str,
    slide: Slide,
) -> Result<Option<Vec<u8>>, sqlx::Error>
where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> PrimitiveDateTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (Option<Vec<u8>>, PrimitiveDateTime): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    retry(
        budget,
        pool,
        attempt!(|conn| {
            let row: Option<(Option<Vec<u8>>, PrimitiveDateTime)> =
                sqlx::query_as(AssertSqlSafe(Arc::clone(load_with_expiry)))
                    .bind(key)
                    .bind(slide.now)
                    .fetch_optional(&mut *conn)
                    .await?;
            let Some((data, stored)) = row else {
                return Ok(None);
            };
            if stored < slide.stale_before {
                budget.sending();
                sqlx::query(AssertSqlSafe(Arc::clone(slide_expiry)))
                    .bind(slide.until)
                    .bind(key)
                    .bind(stored)
                    .bind(slide.now)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(data)
        }),
    )
    .await
}

/// How long the database itself may take, derived from `SATCHEL_OPERATION_TIMEOUT` so that the
/// database gives up *before* the client does.
///
/// A statement the client stops waiting for is not stopped: the server (or, for SQLite, sqlx's
/// worker thread) carries on, and a write waiting for a lock would land once the lock is
/// released, after the caller was told it failed and possibly after a newer write. So every
/// wait inside the database is bounded a margin below the operation timeout (each dialect sets
/// these at connect), and the client never gives up on a statement the database may still be
/// running (see [`Budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The operation timeout; a year when the config says 0 ("no limit").
    pub(crate) operation: Duration,
    /// The gap between the database's limits and the client's: the database's answer has this
    /// long to arrive before the client gives up.
    pub(crate) margin: Duration,
    /// How long the database may wait for a lock: `operation - margin`.
    pub(crate) lock_wait: Duration,
    /// How long one statement may run, lock waits included: `operation - margin / 2`, so a lock
    /// wait ends with the lock timeout's own, clearer error.
    pub(crate) statement: Duration,
    /// False when the operation timeout is 0: then the server keeps its own limits.
    pub(crate) limited: bool,
}

impl Limits {
    pub(crate) fn new(operation_timeout: Duration) -> Limits {
        let operation = nonzero(operation_timeout);
        // A tenth of the timeout, at least 50 ms (a loaded machine's scheduling delay), at most
        // 1 s, and never more than half the timeout.
        let margin = (operation / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
            .min(operation / 2);
        // Never 0: for SQLite and PostgreSQL that would mean "no limit" or "do not wait".
        let at_least_1ms = |d: Duration| d.max(Duration::from_millis(1));
        Limits {
            operation,
            margin,
            lock_wait: at_least_1ms(operation - margin),
            statement: at_least_1ms(operation - margin / 2),
            limited: !operation_timeout.is_zero(),
        }
    }
}

/// What the database gave up on before the client did, so nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// Its lock timeout: another transaction held a lock the statement needed.
    Lock,
    /// Its statement timeout (SQLite has none).
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    Statement,
}

/// The clock of one operation.
///
/// The client waits for a connection until the deadline (`SATCHEL_OPERATION_TIMEOUT` after the
/// start) and starts no retry after it. Once a statement is sent it waits for the database's
/// answer, which comes within the dialect's server-side limit (`answer_within`, already
/// including [`Limits::margin`] for the answer to travel): the client gives up at the deadline
/// or at that point, whichever is later. So a statement sent at once is abandoned at the
/// deadline as before, and one sent late (after a long wait for a pooled connection) is never
/// abandoned while the database could still apply it. The later moment is reached only when
/// the database or the network stops answering altogether.
pub(crate) struct Budget {
    start: Instant,
    deadline: Instant,
    answer_within: Duration,
    /// Microseconds after `start` until which a statement already sent may still be running.
    running_until: AtomicU64,
}

impl Budget {
    pub(crate) fn new(timeout: Duration, answer_within: Duration) -> Budget {
        let start = Instant::now();
        Budget {
            start,
            deadline: start + timeout,
            answer_within,
            running_until: AtomicU64::new(0),
        }
    }

    /// Records that a statement is being sent now.
    pub(crate) fn sending(&self) {
        let until = (self.start.elapsed() + self.answer_within).as_micros();
        self.running_until
            .fetch_max(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the client may give up: the deadline, or later while a statement may be running.
    pub(crate) fn give_up_at(&self) -> Instant {
        let running = Duration::from_micros(self.running_until.load(Ordering::Relaxed));
        self.deadline.max(self.start + running)
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// Pool settings every dialect shares, from the config.
pub(crate) fn pool_options<DB: sqlx::Database>(
    config: &SessionConfig,
) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(config.pool_size)
        .min_connections(0)
        .acquire_timeout(nonzero(config.connect_timeout))
        // No ping before each use: a read-only request costs one round trip. Dead connections
        // are found by the query itself, which `retry` then repeats on a fresh one.
        .test_before_acquire(false)
}

/// A zero timeout in the config means "no limit".
pub(crate) fn nonzero(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_saturates_instead_of_overflowing() {
        let now = utc_now();
        assert_eq!(expiry_after(now, Duration::MAX).year(), 9999);
        assert!(expiry_after(now, Duration::from_secs(1)) > now);
        assert_eq!(now.nanosecond() % 1000, 0);
    }

    #[test]
    fn an_expiry_within_the_touch_granularity_is_not_stale() {
        let until = utc_now();
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(until - stale_before(until, day), time::Duration::minutes(1));
        assert_eq!(
            until - stale_before(until, Duration::from_secs(200)),
            time::Duration::seconds(2)
        );
        assert_eq!(stale_before(until, Duration::ZERO), until);
    }
}
