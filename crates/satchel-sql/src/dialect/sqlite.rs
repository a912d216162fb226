//! SQLite: the embedded default. WAL mode, a busy timeout, the file created if missing.
//!
//! `expiry` is stored as text exactly as SQLAlchemy writes a `DateTime` on SQLite
//! (`2026-12-27 13:12:59.493051`): fixed width, so SQLite's text comparison orders it correctly
//! against the bound "now", and Flask-Session reads Satchel's rows as its own.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use satchel_core::{ConfigError, SessionConfig};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};
use time::PrimitiveDateTime;

use super::{
    Budget, FoundColumn, GaveUp, Kind, Limits, PURGE_BATCH, Pool, Setup, Slide, check_shape,
    missing_table, pool_options, retry,
};
use crate::table::TableName;

pub(crate) const NAME: &str = "sqlite";

/// SQLAlchemy's text form of a naive `datetime` on SQLite (`2026-12-27 13:12:59.493051`).
///
/// Written digit by digit rather than with `format!` ([`formatted_text`], kept for years
/// outside 0..=9999): a sliding read formatted three of these, and with `format!` they took
/// 9,543 of its 80,189 instructions (callgrind).
fn text(t: PrimitiveDateTime) -> String {
    fn digits(out: &mut String, n: u32, width: u32) {
        for place in (0..width).rev() {
            let digit = n / 10u32.pow(place) % 10;
            // A single decimal digit: always a valid char.
            out.push(char::from_digit(digit, 10).unwrap_or('0'));
        }
    }
    if !(0..=9999).contains(&t.year()) {
        // Outside 0..=9999 (time's large-dates range): as `{:04}` prints it.
        return formatted_text(t);
    }
    let mut out = String::with_capacity(26);
    digits(&mut out, t.year().unsigned_abs(), 4);
    out.push('-');
    digits(&mut out, u32::from(u8::from(t.month())), 2);
    out.push('-');
    digits(&mut out, u32::from(t.day()), 2);
    out.push(' ');
    digits(&mut out, u32::from(t.hour()), 2);
    out.push(':');
    digits(&mut out, u32::from(t.minute()), 2);
    out.push(':');
    digits(&mut out, u32::from(t.second()), 2);
    out.push('.');
    digits(&mut out, t.microsecond(), 6);
    out
}

/// [`text`] written with `format!`: the slow form, for any year.
fn formatted_text(t: PrimitiveDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// SQLite's busy timeout: how long a statement waits for another connection's write lock
/// before it fails with SQLITE_BUSY. Below the operation timeout, so that a write waiting for
/// the lock gives up inside the database: sqlx runs each statement on a worker thread that
/// goes on when the caller stops waiting, and a write whose caller had already been told it
/// failed would otherwise land once the lock is released.
fn busy_timeout(limits: Limits) -> Duration {
    // sqlx takes the busy timeout in i32 milliseconds (and panics beyond): some 24 days, which
    // is "no limit" in practice when the operation timeout is 0.
    limits.lock_wait.min(Duration::from_millis(i32::MAX as u64))
}

/// The statements for one table, built once from the validated name.
struct Sql {
    load: Arc<str>,
    load_with_expiry: Arc<str>,
    slide_expiry: Arc<str>,
    insert: Arc<str>,
    store: Arc<str>,
    replace: Arc<str>,
    touch: Arc<str>,
    delete: Arc<str>,
    purge: Arc<str>,
}

impl Sql {
    fn new(t: &str) -> Sql {
        Sql {
            load: format!("SELECT data FROM {t} WHERE session_id = ?1 AND expiry > ?2").into(),
            load_with_expiry: format!(
                "SELECT data, expiry FROM {t} WHERE session_id = ?1 AND expiry > ?2"
            )
            .into(),
            // Only over the expiry just read or an older one, and only while it is live: never
            // shortens an expiry another request just wrote, never revives a row.
            slide_expiry: format!(
                "UPDATE {t} SET expiry = ?1 \
                 WHERE session_id = ?2 AND expiry <= ?3 AND expiry > ?4"
            )
            .into(),
            // An expired row with the same id is taken over; a live one is left alone and
            // reported as a collision by "no row changed".
            insert: format!(
                "INSERT INTO {t} (session_id, data, expiry) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (session_id) DO UPDATE SET data = excluded.data, \
                 expiry = excluded.expiry WHERE expiry IS NULL OR expiry <= ?4"
            )
            .into(),
            store: format!(
                "INSERT INTO {t} (session_id, data, expiry) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (session_id) DO UPDATE SET data = excluded.data, \
                 expiry = excluded.expiry"
            )
            .into(),
            // Keeps a stored expiry that is at most the touch granularity short of the new one
            // (touch coalescing), so the expiry index is left alone.
            replace: format!(
                "UPDATE {t} SET data = ?1, \
                 expiry = CASE WHEN expiry > ?5 AND expiry <= ?2 THEN expiry ELSE ?2 END \
                 WHERE session_id = ?3 AND expiry > ?4"
            )
            .into(),
            touch: format!("UPDATE {t} SET expiry = ?1 WHERE session_id = ?2 AND expiry > ?3")
                .into(),
            delete: format!("DELETE FROM {t} WHERE session_id = ?1").into(),
            purge: format!(
                "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} \
                 WHERE expiry IS NULL OR expiry <= ?1 LIMIT {PURGE_BATCH})"
            )
            .into(),
        }
    }
}

/// A pool on one SQLite file and the statements for its sessions table.
pub(crate) struct SqliteStore {
    pool: Pool<Sqlite>,
    sql: Sql,
    busy_timeout: Duration,
}

fn unusable_file(url: &str, path: &Path, error: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        setting: "SESSION_SQLALCHEMY",
        value: url.to_owned(),
        expected: format!(
            "a SQLite database file Satchel can create and write, but {} could not be opened \
             for writing: {error}",
            path.display()
        ),
    }
}

impl SqliteStore {
    pub(crate) async fn connect(
        url: &str,
        table: &TableName,
        config: &SessionConfig,
    ) -> Result<SqliteStore, ConfigError> {
        if table.schema.as_deref().is_some_and(|s| s != "main") {
            return Err(ConfigError::Invalid {
                setting: "SESSION_SQLALCHEMY_SCHEMA",
                value: table.schema.clone().unwrap_or_default(),
                expected: "nothing (or `main`): a SQLite database has no other schemas".into(),
            });
        }
        // SQLite has only the one schema here; an unqualified name is what SQLAlchemy uses.
        let table = TableName {
            schema: None,
            table: table.table.clone(),
        };
        let options = SqliteConnectOptions::from_str(url).map_err(|e| ConfigError::Invalid {
            setting: "SESSION_SQLALCHEMY",
            value: url.to_owned(),
            expected: format!("a SQLite URL such as sqlite://sessions.sqlite3 ({e})"),
        })?;
        let path = options.get_filename().to_path_buf();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let busy_timeout = busy_timeout(Limits::new(config.operation_timeout));
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL is durable across application crashes and much faster than FULL.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout);
        let mut pool = pool_options(config);
        if in_memory {
            // An in-memory database lives only while a connection holds it open.
            pool = pool
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = tokio::time::timeout(
            super::nonzero(config.connect_timeout),
            pool.connect_with(options),
        )
        .await
        .map_err(|_| unusable_file(url, &path, "it stayed locked past SATCHEL_CONNECT_TIMEOUT"))?
        .map_err(|e| unusable_file(url, &path, e))?;

        let quoted = table.quoted('"');
        let store = SqliteStore {
            pool: Pool::new(pool),
            sql: Sql::new(&quoted),
            busy_timeout,
        };
        store
            .prepare_schema(&table, &quoted, config.sqlalchemy_create_table)
            .await
            .map_err(|e| match e {
                Setup::Shape(e) => e,
                Setup::Sql(e) => unusable_file(url, &path, e),
            })?;
        Ok(store)
    }

    async fn prepare_schema(
        &self,
        table: &TableName,
        quoted: &str,
        create: bool,
    ) -> Result<(), Setup> {
        if create {
            // Column for column what SQLAlchemy emits for Flask-Session's model on SQLite.
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (\n\tid INTEGER NOT NULL, \n\t\
                 session_id VARCHAR(255), \n\tdata BLOB, \n\texpiry DATETIME, \n\t\
                 PRIMARY KEY (id), \n\tUNIQUE (session_id)\n)"
            );
            sqlx::query(AssertSqlSafe(ddl)).execute(self.pool()).await?;
        }
        let rows = sqlx::query(r#"SELECT name, type, pk FROM pragma_table_info(?1)"#)
            .bind(&table.table)
            .fetch_all(self.pool())
            .await?;
        if rows.is_empty() {
            return Err(Setup::Shape(missing_table(table)));
        }
        let mut columns = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get(0)?;
            let declared: String = row.try_get(1)?;
            let pk: i64 = row.try_get(2)?;
            let upper = declared.to_ascii_uppercase();
            // Only `INTEGER PRIMARY KEY` aliases the rowid, which is what fills `id` in.
            let generated = upper == "INTEGER" && pk == 1;
            columns.push(FoundColumn {
                kind: kind(&upper),
                name,
                declared,
                generated,
            });
        }
        let unique: i64 = sqlx::query_scalar(
            r#"SELECT count(*) FROM pragma_index_list(?1) AS il
               WHERE il."unique" = 1 AND il.partial = 0
                 AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1
                 AND (SELECT name FROM pragma_index_info(il.name)) = 'session_id'"#,
        )
        .bind(&table.table)
        .fetch_one(self.pool())
        .await?;
        check_shape(table, &columns, unique > 0).map_err(Setup::Shape)?;
        if create {
            let indexed: i64 = sqlx::query_scalar(
                r#"SELECT count(*) FROM pragma_index_list(?1) AS il
                   WHERE (SELECT name FROM pragma_index_info(il.name) WHERE seqno = 0) = 'expiry'"#,
            )
            .bind(&table.table)
            .fetch_one(self.pool())
            .await?;
            if indexed == 0 {
                let ddl = format!(
                    "CREATE INDEX IF NOT EXISTS \"{}\" ON {quoted} (expiry)",
                    table.expiry_index()
                );
                sqlx::query(AssertSqlSafe(ddl)).execute(self.pool()).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn load(
        &self,
        budget: &Budget,
        key: &str,
        now: PrimitiveDateTime,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let now = &text(now);
        retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query_scalar::<_, Option<Vec<u8>>>(AssertSqlSafe(Arc::clone(&self.sql.load)))
                    .bind(key)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await
            }),
        )
        .await
        .map(Option::flatten)
    }

    /// A plain read of the value and its expiry, then a write of `expiry` only when the stored
    /// one is older than `stale_before` (touch coalescing). A read-only request usually needs
    /// no write lock at all.
    pub(crate) async fn load_and_touch(
        &self,
        budget: &Budget,
        key: &str,
        slide: Slide,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        // The new expiry is formatted only if a write needs it.
        let (now, stale_before) = (&text(slide.now), &text(slide.stale_before));
        retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                let row: Option<(Option<Vec<u8>>, String)> =
                    sqlx::query_as(AssertSqlSafe(Arc::clone(&self.sql.load_with_expiry)))
                        .bind(key)
                        .bind(now)
                        .fetch_optional(&mut *conn)
                        .await?;
                let Some((data, stored)) = row else {
                    return Ok(None);
                };
                // Compared as text, as SQLite compares the column: the fixed-width form sorts by time.
                if stored < *stale_before {
                    budget.sending();
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.slide_expiry)))
                        .bind(text(slide.until))
                        .bind(key)
                        .bind(&stored)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(data)
            }),
        )
        .await
    }

    pub(crate) async fn insert(
        &self,
        budget: &Budget,
        key: &str,
        value: &[u8],
        now: PrimitiveDateTime,
        expiry: PrimitiveDateTime,
    ) -> Result<bool, sqlx::Error> {
        let (now, expiry) = (&text(now), &text(expiry));
        let done = retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.insert)))
                    .bind(key)
                    .bind(value)
                    .bind(expiry)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
            }),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn store(
        &self,
        budget: &Budget,
        key: &str,
        value: &[u8],
        expiry: PrimitiveDateTime,
    ) -> Result<(), sqlx::Error> {
        let expiry = &text(expiry);
        retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.store)))
                    .bind(key)
                    .bind(value)
                    .bind(expiry)
                    .execute(&mut *conn)
                    .await
            }),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn replace(
        &self,
        budget: &Budget,
        key: &str,
        value: &[u8],
        slide: Slide,
    ) -> Result<bool, sqlx::Error> {
        let (now, expiry, stale_before) = (
            &text(slide.now),
            &text(slide.until),
            &text(slide.stale_before),
        );
        let done = retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.replace)))
                    .bind(value)
                    .bind(expiry)
                    .bind(key)
                    .bind(now)
                    .bind(stale_before)
                    .execute(&mut *conn)
                    .await
            }),
        )
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn touch(
        &self,
        budget: &Budget,
        key: &str,
        now: PrimitiveDateTime,
        expiry: PrimitiveDateTime,
    ) -> Result<bool, sqlx::Error> {
        let (now, expiry) = (&text(now), &text(expiry));
        let done = retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.touch)))
                    .bind(expiry)
                    .bind(key)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
            }),
        )
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn delete(&self, budget: &Budget, key: &str) -> Result<(), sqlx::Error> {
        retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.delete)))
                    .bind(key)
                    .execute(&mut *conn)
                    .await
            }),
        )
        .await?;
        Ok(())
    }

    /// Deletes one batch of expired rows; the caller repeats while a full batch went.
    pub(crate) async fn purge_batch(
        &self,
        budget: &Budget,
        now: PrimitiveDateTime,
    ) -> Result<u64, sqlx::Error> {
        let now = &text(now);
        let done = retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.purge)))
                    .bind(now)
                    .execute(&mut *conn)
                    .await
            }),
        )
        .await?;
        Ok(done.rows_affected())
    }

    /// The longest a statement already sent can run: SQLite's only wait is the busy timeout
    /// (for the write lock); the statement itself, on one row, is short.
    pub(crate) fn answer_within(&self) -> Duration {
        self.busy_timeout
    }

    /// What the database waits for a lock before it gives up.
    pub(crate) fn lock_wait(&self) -> Duration {
        self.busy_timeout
    }

    /// Whether the database itself gave up: SQLITE_BUSY (and its extended codes) after the
    /// busy timeout.
    pub(crate) fn gave_up(&self, error: &sqlx::Error) -> Option<GaveUp> {
        let sqlx::Error::Database(db) = error else {
            return None;
        };
        let code: i32 = db.code()?.parse().ok()?;
        // Extended codes carry the primary one in their low byte; BUSY_SNAPSHOT (517) comes
        // back at once, without waiting, and is retried instead.
        (code & 0xff == 5 && code != 517).then_some(GaveUp::Lock)
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        self.pool.sqlx()
    }
}

/// SQLite's declared type, read as SQLAlchemy's types are declared (SQLite itself is lax).
fn kind(upper: &str) -> Option<Kind> {
    if upper.contains("INT") {
        Some(Kind::Integer)
    } else if upper.contains("CHAR") || upper.contains("TEXT") || upper.contains("CLOB") {
        Some(Kind::Text)
    } else if upper.is_empty() || upper.contains("BLOB") || upper.contains("BINARY") {
        Some(Kind::Binary)
    } else if upper.contains("DATE") || upper.contains("TIME") {
        Some(Kind::DateTime)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::{Limits, busy_timeout, formatted_text, text};

    #[test]
    fn the_busy_timeout_is_below_the_operation_timeout_and_never_zero() {
        for (operation, busy) in [
            (Duration::from_secs(5), Duration::from_millis(4500)),
            (Duration::from_millis(300), Duration::from_millis(250)),
            (Duration::from_secs(60), Duration::from_secs(59)),
            (Duration::from_millis(40), Duration::from_millis(20)),
            (Duration::from_millis(1), Duration::from_millis(1)),
        ] {
            assert_eq!(busy_timeout(Limits::new(operation)), busy, "{operation:?}");
        }
        // 0 means no limit: the largest busy timeout sqlx accepts, not a panic.
        assert_eq!(
            busy_timeout(Limits::new(Duration::ZERO)),
            Duration::from_millis(i32::MAX as u64)
        );
    }

    #[test]
    fn timestamps_match_the_formatted_form() {
        let mut t = Some(datetime!(0000-01-01 00:00:00));
        let last = datetime!(9999-12-31 23:59:59.999999);
        let step = time::Duration::new(86_399 * 37 + 3_607, 123_457_000);
        while let Some(at) = t.filter(|at| *at <= last) {
            assert_eq!(text(at), formatted_text(at));
            t = at.checked_add(step);
        }
        assert_eq!(text(last), formatted_text(last));
    }

    #[test]
    fn timestamps_are_written_as_sqlalchemy_writes_them() {
        assert_eq!(
            text(datetime!(2026-12-27 13:12:59.493051)),
            "2026-12-27 13:12:59.493051"
        );
        assert_eq!(
            text(datetime!(2026-01-02 03:04:05)),
            "2026-01-02 03:04:05.000000"
        );
    }
}
