//! What the dialects share: timestamps, the check of an existing table's shape, error mapping
//! and the retry of transient failures. Each dialect's statements live in its own module.

use std::future::Future;
use std::time::Duration;

use satchel_core::{ConfigError, SessionConfig};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::table::TableName;

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

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
                // SQLSTATE 40001 too); SQLite busy/locked and their extended codes, after the
                // busy timeout already waited.
                "40001" | "40P01" | "5" | "6" | "517" | "262" => Some(Transient::Conflict),
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

/// Runs `attempt` again while it fails with a transient error, a bounded number of times.
pub(crate) async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Err(error) => {
                let limit = match transient(&error) {
                    Some(Transient::Connection) => CONNECTION_TRIES,
                    Some(Transient::Conflict) => CONFLICT_TRIES,
                    None => return Err(error),
                };
                if tries >= limit {
                    return Err(error);
                }
                tracing::debug!(%error, tries, "satchel-sql: retrying after a transient error");
                // A dead pooled connection is replaced at once; a conflict backs off a little.
                let pause = if transient(&error) == Some(Transient::Conflict) || tries > 4 {
                    20 * u64::from(tries.min(10))
                } else {
                    0
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            ok => return ok,
        }
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
}
