//! MySQL and MariaDB: `MEDIUMBLOB` data, `DATETIME(6)` expiry, `?` placeholders.
//!
//! `load_and_touch` is a `SELECT` of the value and its expiry, followed by a conditional
//! `UPDATE` only when the expiry is due (touch coalescing). sqlx connects with
//! `CLIENT_FOUND_ROWS`, so "rows affected" counts the rows an `UPDATE` matched, changed or not;
//! that makes `touch` and `replace` exact, and it is why `insert` cannot read a collision off
//! an `ON DUPLICATE KEY UPDATE` and instead inserts, then on a duplicate takes over the row only
//! if it has expired.
//! `store` tries a plain `UPDATE` before the upsert, because every `INSERT … ON DUPLICATE
//! KEY UPDATE` draws an `AUTO_INCREMENT` value even when it updates, and Flask's 32-bit `id`
//! would run out after some two billion saves.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use satchel_core::{ConfigError, SessionConfig};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlDatabaseError, MySqlPool};
use sqlx::{AssertSqlSafe, Row};
use time::PrimitiveDateTime;

use super::{
    Budget, FoundColumn, GaveUp, Kind, Limits, PURGE_BATCH, Pool, Setup, Slide, check_shape,
    missing_table, pool_options, retry, setup_error,
};
use crate::error::redact_url;
use crate::table::TableName;

pub(crate) const NAME: &str = "mysql";

struct Sql {
    load: Arc<str>,
    load_with_expiry: Arc<str>,
    slide_expiry: Arc<str>,
    insert: Arc<str>,
    take_over: Arc<str>,
    update: Arc<str>,
    upsert: Arc<str>,
    replace: Arc<str>,
    touch: Arc<str>,
    delete: Arc<str>,
    purge: Arc<str>,
}

impl Sql {
    fn new(t: &str) -> Sql {
        Sql {
            load: format!("SELECT data FROM {t} WHERE session_id = ? AND expiry > ?").into(),
            load_with_expiry: format!(
                "SELECT data, expiry FROM {t} WHERE session_id = ? AND expiry > ?"
            )
            .into(),
            // Only over the expiry just read or an older one, and only while it is live: never
            // shortens an expiry another request just wrote, never revives a row.
            slide_expiry: format!(
                "UPDATE {t} SET expiry = ? WHERE session_id = ? AND expiry <= ? AND expiry > ?"
            )
            .into(),
            insert: format!("INSERT INTO {t} (session_id, data, expiry) VALUES (?, ?, ?)").into(),
            take_over: format!(
                "UPDATE {t} SET data = ?, expiry = ? \
                 WHERE session_id = ? AND (expiry IS NULL OR expiry <= ?)"
            )
            .into(),
            update: format!("UPDATE {t} SET data = ?, expiry = ? WHERE session_id = ?").into(),
            upsert: format!(
                "INSERT INTO {t} (session_id, data, expiry) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE data = VALUES(data), expiry = VALUES(expiry)"
            )
            .into(),
            // Keeps a stored expiry that is at most the touch granularity short of the new one
            // (touch coalescing), so InnoDB leaves the expiry index alone. MySQL evaluates the
            // assignments left to right, and `expiry` in its own assignment is the stored value.
            replace: format!(
                "UPDATE {t} SET data = ?, \
                 expiry = CASE WHEN expiry > ? AND expiry <= ? THEN expiry ELSE ? END \
                 WHERE session_id = ? AND expiry > ?"
            )
            .into(),
            touch: format!("UPDATE {t} SET expiry = ? WHERE session_id = ? AND expiry > ?").into(),
            delete: format!("DELETE FROM {t} WHERE session_id = ?").into(),
            purge: format!(
                "DELETE FROM {t} WHERE expiry IS NULL OR expiry <= ? LIMIT {PURGE_BATCH}"
            )
            .into(),
        }
    }
}

/// A pool on one MySQL/MariaDB database and the statements for its sessions table.
pub(crate) struct MySqlStore {
    pool: Pool<MySql>,
    sql: Sql,
    value_limit: Option<usize>,
    /// The limits set on every connection; `None` when the operation timeout is 0.
    limits: Option<SessionLimits>,
}

/// InnoDB's own default `innodb_lock_wait_timeout`, in force when Satchel sets none.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(50);

/// The session variables set on each new connection so the server gives up before the client:
/// a statement the client stopped waiting for would otherwise go on waiting for its row lock
/// and land once the lock is released, after its caller was told it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionLimits {
    /// `innodb_lock_wait_timeout`: whole seconds, rounded down, at least 1 (MySQL accepts no
    /// less). With an operation timeout of a second or less, MariaDB's `max_statement_time`
    /// still ends the wait in time; MySQL's outlasts it, and the client waits for its answer.
    lock_wait: Duration,
    /// MariaDB's `max_statement_time` (any statement, lock waits included) or MySQL's
    /// `max_execution_time` (read-only SELECTs only).
    statement: Duration,
}

impl SessionLimits {
    fn new(limits: Limits) -> Option<SessionLimits> {
        limits.limited.then(|| SessionLimits {
            lock_wait: Duration::from_secs(limits.lock_wait.as_secs().max(1)),
            statement: limits.statement,
        })
    }

    /// The `SET` for a server whose `VERSION()` is `version`: the two databases name their
    /// statement limit differently, and each refuses the other's name.
    fn set_sql(&self, version: &str) -> String {
        let lock_wait = self.lock_wait.as_secs();
        if version.contains("MariaDB") {
            format!(
                "SET SESSION innodb_lock_wait_timeout = {lock_wait}, \
                 max_statement_time = {:.6}",
                self.statement.as_secs_f64()
            )
        } else {
            format!(
                "SET SESSION innodb_lock_wait_timeout = {lock_wait}, max_execution_time = {}",
                self.statement.as_millis().max(1)
            )
        }
    }

    /// Start-up `ddl` for a server whose `VERSION()` is `version`, without MariaDB's
    /// `max_statement_time`: building the `expiry` index on a large existing table may take
    /// longer than any request should. Its wait for the table's metadata lock stays bounded
    /// (`lock_wait_timeout`, which InnoDB's row lock wait does not cover), because a DDL
    /// waiting for that lock holds up every statement on the table queued behind it. MySQL's
    /// `max_execution_time` bounds only SELECTs, so there `ddl` runs as it is.
    fn unbounded_ddl(&self, version: &str, ddl: &str) -> String {
        if version.contains("MariaDB") {
            format!(
                "SET STATEMENT max_statement_time = 0, lock_wait_timeout = {} FOR {ddl}",
                self.lock_wait.as_secs()
            )
        } else {
            ddl.to_owned()
        }
    }
}

impl MySqlStore {
    pub(crate) async fn connect(
        url: &str,
        table: &TableName,
        config: &SessionConfig,
    ) -> Result<MySqlStore, ConfigError> {
        let shown = redact_url(url);
        let options = MySqlConnectOptions::from_str(url).map_err(|e| ConfigError::Invalid {
            setting: "SESSION_SQLALCHEMY",
            value: shown.clone(),
            expected: format!("a MySQL URL such as mysql://user:password@host/db ({e})"),
        })?;
        let limits = SessionLimits::new(Limits::new(config.operation_timeout));
        let mut pool = pool_options(config);
        if let Some(limits) = limits {
            // One more round trip per new connection (not per operation): the server's name
            // decides which variable bounds a statement.
            pool = pool.after_connect(move |conn, _| {
                Box::pin(async move {
                    let version: String = sqlx::query_scalar("SELECT VERSION()")
                        .fetch_one(&mut *conn)
                        .await?;
                    sqlx::raw_sql(AssertSqlSafe(limits.set_sql(&version)))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let connect_timeout = super::nonzero(config.connect_timeout);
        let pool = Pool::connect_per_thread(NAME, &shown, pool, options, connect_timeout).await?;
        let quoted = table.quoted('`');
        let mut store = MySqlStore {
            pool,
            sql: Sql::new(&quoted),
            value_limit: None,
            limits,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match store
                .prepare_schema(table, &quoted, config.sqlalchemy_create_table)
                .await
            {
                Err(Setup::Sql(_)) if attempt < 3 => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(Setup::Sql(e)) => return Err(setup_error(NAME, e)),
                Err(Setup::Shape(e)) => return Err(e),
                Ok(limit) => {
                    store.value_limit = limit;
                    return Ok(store);
                }
            }
        }
    }

    /// Creates and checks the table; returns the `data` column's capacity in bytes.
    async fn prepare_schema(
        &self,
        table: &TableName,
        quoted: &str,
        create: bool,
    ) -> Result<Option<usize>, Setup> {
        if create {
            // SQLAlchemy's DDL for Flask-Session's model, with three deliberate differences:
            // MEDIUMBLOB (BLOB stops at 64 KiB), DATETIME(6) (DATETIME drops the fraction) and
            // a binary collation, so ids differing only in case stay distinct.
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (\n\tid INTEGER NOT NULL AUTO_INCREMENT, \n\t\
                 session_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, \n\t\
                 data MEDIUMBLOB, \n\texpiry DATETIME(6), \n\t\
                 PRIMARY KEY (id), \n\tUNIQUE (session_id)\n)"
            );
            self.execute_ddl(&ddl).await?;
        }
        let rows = sqlx::query(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
                    CAST(DATA_TYPE AS CHAR), CAST(EXTRA AS CHAR), \
                    CAST(COALESCE(CHARACTER_MAXIMUM_LENGTH, 0) AS SIGNED) \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
        )
        .bind(table.schema.as_deref())
        .bind(&table.table)
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Err(Setup::Shape(missing_table(table)));
        }
        let mut columns = Vec::with_capacity(rows.len());
        let mut data_capacity = None;
        for row in rows {
            let name: String = row.try_get(0)?;
            let declared: String = row.try_get(1)?;
            let data_type: String = row.try_get(2)?;
            let extra: String = row.try_get(3)?;
            let max_len: i64 = row.try_get(4)?;
            if name.eq_ignore_ascii_case("data") {
                data_capacity = usize::try_from(max_len).ok().filter(|n| *n > 0);
            }
            columns.push(FoundColumn {
                kind: kind(&data_type.to_ascii_lowercase()),
                generated: extra.to_ascii_lowercase().contains("auto_increment"),
                name,
                declared,
            });
        }
        let unique: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT INDEX_NAME FROM information_schema.STATISTICS \
               WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
                 AND NON_UNIQUE = 0 \
               GROUP BY INDEX_NAME \
               HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME) = 'session_id') AS u",
        )
        .bind(table.schema.as_deref())
        .bind(&table.table)
        .fetch_one(self.pool())
        .await?;
        check_shape(table, &columns, unique > 0).map_err(Setup::Shape)?;
        if data_capacity.is_some_and(|n| n < 1024 * 1024) {
            tracing::warn!(
                table = %table.display(),
                limit = data_capacity,
                "satchel-sql: the sessions table's `data` column holds less than 1 MiB \
                 (Flask's BLOB stops at 64 KiB); larger sessions will be refused"
            );
        }
        if create {
            let indexed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
                   AND SEQ_IN_INDEX = 1 AND COLUMN_NAME = 'expiry'",
            )
            .bind(table.schema.as_deref())
            .bind(&table.table)
            .fetch_one(self.pool())
            .await?;
            if indexed == 0 {
                let ddl = format!(
                    "CREATE INDEX `{}` ON {quoted} (expiry)",
                    table.expiry_index()
                );
                match self.execute_ddl(&ddl).await {
                    // Another process created it meanwhile (ER_DUP_KEYNAME).
                    Err(sqlx::Error::Database(e))
                        if e.try_downcast_ref::<MySqlDatabaseError>()
                            .is_some_and(|e| e.number() == 1061) => {}
                    other => {
                        other?;
                    }
                }
            }
        }
        Ok(data_capacity)
    }

    /// Runs start-up `ddl` without the statement time limit of the pool's connections (see
    /// [`SessionLimits::unbounded_ddl`]).
    async fn execute_ddl(&self, ddl: &str) -> Result<(), sqlx::Error> {
        let ddl = match self.limits {
            Some(limits) => {
                let version: String = sqlx::query_scalar("SELECT VERSION()")
                    .fetch_one(self.pool())
                    .await?;
                limits.unbounded_ddl(&version, ddl)
            }
            None => ddl.to_owned(),
        };
        sqlx::query(AssertSqlSafe(ddl)).execute(self.pool()).await?;
        Ok(())
    }

    pub(crate) fn value_limit(&self) -> Option<usize> {
        self.value_limit
    }

    pub(crate) async fn load(
        &self,
        budget: &Budget,
        key: &str,
        now: PrimitiveDateTime,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
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
    /// one is older than `stale_before` (touch coalescing).
    pub(crate) async fn load_and_touch(
        &self,
        budget: &Budget,
        key: &str,
        slide: Slide,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        super::load_and_touch(
            &self.pool,
            budget,
            (&self.sql.load_with_expiry, &self.sql.slide_expiry),
            key,
            slide,
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
        retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                let inserted = sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.insert)))
                    .bind(key)
                    .bind(value)
                    .bind(expiry)
                    .execute(&mut *conn)
                    .await;
                match inserted {
                    Ok(_) => Ok(true),
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        // The id is taken: by a live session (a collision) or an expired one,
                        // which is taken over only if it is still expired.
                        budget.sending();
                        let taken = sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.take_over)))
                            .bind(value)
                            .bind(expiry)
                            .bind(key)
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                        Ok(taken.rows_affected() > 0)
                    }
                    Err(e) => Err(e),
                }
            }),
        )
        .await
    }

    pub(crate) async fn store(
        &self,
        budget: &Budget,
        key: &str,
        value: &[u8],
        expiry: PrimitiveDateTime,
    ) -> Result<(), sqlx::Error> {
        retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                let updated = sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.update)))
                    .bind(value)
                    .bind(expiry)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                if updated.rows_affected() == 0 {
                    budget.sending();
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.upsert)))
                        .bind(key)
                        .bind(value)
                        .bind(expiry)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }),
        )
        .await
    }

    pub(crate) async fn replace(
        &self,
        budget: &Budget,
        key: &str,
        value: &[u8],
        slide: Slide,
    ) -> Result<bool, sqlx::Error> {
        let Slide {
            now,
            until: expiry,
            stale_before,
        } = slide;
        let done = retry(
            budget,
            &self.pool,
            attempt!(|conn| {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.replace)))
                    .bind(value)
                    .bind(stale_before)
                    .bind(expiry)
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

    pub(crate) async fn touch(
        &self,
        budget: &Budget,
        key: &str,
        now: PrimitiveDateTime,
        expiry: PrimitiveDateTime,
    ) -> Result<bool, sqlx::Error> {
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

    pub(crate) async fn purge_batch(
        &self,
        budget: &Budget,
        now: PrimitiveDateTime,
    ) -> Result<u64, sqlx::Error> {
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

    /// The longest a statement already sent can run: the later of InnoDB's lock wait timeout
    /// and the statement time limit (MariaDB's bounds every statement, MySQL's only SELECTs;
    /// a write on one row is otherwise short). InnoDB may notice an expired lock wait up to a
    /// second late (MySQL checks them once a second), hence the extra second.
    pub(crate) fn answer_within(&self) -> Duration {
        match self.limits {
            Some(l) => (l.lock_wait + Duration::from_secs(1)).max(l.statement),
            None => super::nonzero(Duration::ZERO),
        }
    }

    /// What the server waits for a row lock before it gives up: `innodb_lock_wait_timeout`.
    pub(crate) fn lock_wait(&self) -> Duration {
        self.limits.map_or(DEFAULT_LOCK_WAIT, |l| l.lock_wait)
    }

    /// Whether the server gave up: ER_LOCK_WAIT_TIMEOUT (1205), or the statement time limit
    /// (MariaDB's ER_STATEMENT_TIMEOUT 1969, MySQL's ER_QUERY_TIMEOUT 3024).
    pub(crate) fn gave_up(&self, error: &sqlx::Error) -> Option<GaveUp> {
        let sqlx::Error::Database(db) = error else {
            return None;
        };
        match db.try_downcast_ref::<MySqlDatabaseError>()?.number() {
            1205 => Some(GaveUp::Lock),
            1969 | 3024 => Some(GaveUp::Statement),
            _ => None,
        }
    }

    pub(crate) fn pool(&self) -> &MySqlPool {
        self.pool.sqlx()
    }

    pub(crate) fn pool_for_this_thread(&self) -> MySqlPool {
        self.pool.for_this_thread()
    }
}

/// `information_schema.COLUMNS.DATA_TYPE`, lower-cased.
fn kind(data_type: &str) -> Option<Kind> {
    match data_type {
        "int" | "integer" | "bigint" | "mediumint" | "smallint" => Some(Kind::Integer),
        "varchar" | "char" | "text" | "tinytext" | "mediumtext" | "longtext" => Some(Kind::Text),
        "blob" | "tinyblob" | "mediumblob" | "longblob" | "varbinary" | "binary" => {
            Some(Kind::Binary)
        }
        // sqlx sets the session time zone to UTC, so TIMESTAMP reads back as written.
        "datetime" | "timestamp" => Some(Kind::DateTime),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use satchel_core::SessionConfig;
    use satchel_core::testkit::{run, skipped};

    use super::{AssertSqlSafe, Limits, MySqlStore, SessionLimits, TableName};

    #[test]
    fn each_server_gets_the_statement_limit_it_knows() {
        let limits = SessionLimits::new(Limits::new(Duration::from_secs(5))).unwrap();
        assert_eq!(
            limits.set_sql("10.11.14-MariaDB-0+deb12u2"),
            "SET SESSION innodb_lock_wait_timeout = 4, max_statement_time = 4.750000"
        );
        assert_eq!(
            limits.set_sql("8.0.36"),
            "SET SESSION innodb_lock_wait_timeout = 4, max_execution_time = 4750"
        );
        let short = SessionLimits::new(Limits::new(Duration::from_millis(500))).unwrap();
        assert_eq!(short.lock_wait, Duration::from_secs(1));
        assert_eq!(SessionLimits::new(Limits::new(Duration::ZERO)), None);
    }

    #[test]
    fn schema_statements_lift_only_mariadbs_statement_limit() {
        let limits = SessionLimits::new(Limits::new(Duration::from_secs(5))).unwrap();
        assert_eq!(
            limits.unbounded_ddl("10.11.14-MariaDB-0+deb12u2", "CREATE INDEX i ON t (expiry)"),
            "SET STATEMENT max_statement_time = 0, lock_wait_timeout = 4 \
             FOR CREATE INDEX i ON t (expiry)"
        );
        assert_eq!(
            limits.unbounded_ddl("8.0.36", "CREATE INDEX i ON t (expiry)"),
            "CREATE INDEX i ON t (expiry)"
        );
    }

    #[test]
    fn schema_statements_run_without_the_statement_limit_requests_keep() {
        if skipped("MYSQL") {
            return;
        }
        run(async {
            let url = std::env::var("SATCHEL_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://satchel:satchel@127.0.0.1:3306/satchel".into());
            let mut config = SessionConfig::default();
            config.operation_timeout = Duration::from_secs(1);
            config.sqlalchemy_table = format!("sessions_{:016x}", getrandom::u64().unwrap());
            let table = TableName::from_config(&config).unwrap();
            let store = MySqlStore::connect(&url, &table, &config).await.unwrap();
            let version: String = sqlx::query_scalar("SELECT VERSION()")
                .fetch_one(store.pool())
                .await
                .unwrap();
            // MySQL's limit bounds only SELECTs: nothing to lift, nothing to see.
            let seen = if version.contains("MariaDB") {
                let shown = "SELECT @@max_statement_time, @@lock_wait_timeout";
                let limits = store.limits.unwrap();
                // The prefix, on a statement that shows its effect.
                let ddl: (f64, u64) =
                    sqlx::query_as(AssertSqlSafe(limits.unbounded_ddl(&version, shown)))
                        .fetch_one(store.pool())
                        .await
                        .unwrap();
                let request: (f64, u64) =
                    sqlx::query_as(shown).fetch_one(store.pool()).await.unwrap();
                Some((ddl, request.0))
            } else {
                None
            };
            let drop = format!("DROP TABLE {}", table.quoted('`'));
            sqlx::query(AssertSqlSafe(drop))
                .execute(store.pool())
                .await
                .unwrap();
            if let Some(seen) = seen {
                // Unbounded, with the lock wait of the requests (whole seconds, at least 1).
                assert_eq!(seen, ((0.0, 1), 0.95));
            }
        });
    }
}
