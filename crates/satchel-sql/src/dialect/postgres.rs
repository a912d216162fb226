//! PostgreSQL: `BYTEA` data, `TIMESTAMP WITHOUT TIME ZONE` expiry, `$n` placeholders.
//!
//! `load_and_touch` is a `SELECT` of the value and its expiry, followed by a conditional
//! `UPDATE` only when the expiry is due (touch coalescing). `store` tries a plain `UPDATE`
//! before the upsert: `INSERT … ON CONFLICT DO UPDATE` draws from `id`'s sequence even when it
//! updates, and Flask's `SERIAL` (32-bit) would run out after some two billion saves.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use satchel_core::{ConfigError, SessionConfig};
use sqlx::postgres::{PgConnectOptions, PgPool, Postgres};
use sqlx::{AssertSqlSafe, Row, Transaction};
use time::PrimitiveDateTime;

use super::{
    Budget, FoundColumn, GaveUp, Kind, Limits, PURGE_BATCH, Pool, Setup, Slide, check_shape,
    missing_table, pool_options, retry, setup_error,
};
use crate::error::redact_url;
use crate::table::TableName;

pub(crate) const NAME: &str = "postgres";

struct Sql {
    load: Arc<str>,
    load_with_expiry: Arc<str>,
    slide_expiry: Arc<str>,
    insert: Arc<str>,
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
            load: format!("SELECT data FROM {t} WHERE session_id = $1 AND expiry > $2").into(),
            load_with_expiry: format!(
                "SELECT data, expiry FROM {t} WHERE session_id = $1 AND expiry > $2"
            )
            .into(),
            // Only over the expiry just read or an older one, and only while it is live: never
            // shortens an expiry another request just wrote, never revives a row.
            slide_expiry: format!(
                "UPDATE {t} SET expiry = $1 WHERE session_id = $2 AND expiry <= $3 AND expiry > $4"
            )
            .into(),
            // An expired row with the same id is taken over; a live one is left alone and
            // reported as a collision by "no row changed".
            insert: format!(
                "INSERT INTO {t} AS s (session_id, data, expiry) VALUES ($1, $2, $3) \
                 ON CONFLICT (session_id) DO UPDATE SET data = EXCLUDED.data, \
                 expiry = EXCLUDED.expiry WHERE s.expiry IS NULL OR s.expiry <= $4"
            )
            .into(),
            update: format!("UPDATE {t} SET data = $1, expiry = $2 WHERE session_id = $3").into(),
            upsert: format!(
                "INSERT INTO {t} (session_id, data, expiry) VALUES ($1, $2, $3) \
                 ON CONFLICT (session_id) DO UPDATE SET data = EXCLUDED.data, \
                 expiry = EXCLUDED.expiry"
            )
            .into(),
            // Keeps a stored expiry that is at most the touch granularity short of the new one
            // (touch coalescing): then no indexed column changes, so PostgreSQL can update the
            // row in place (a HOT update) instead of adding entries to every index.
            replace: format!(
                "UPDATE {t} SET data = $1, \
                 expiry = CASE WHEN expiry > $5 AND expiry <= $2 THEN expiry ELSE $2 END \
                 WHERE session_id = $3 AND expiry > $4"
            )
            .into(),
            touch: format!("UPDATE {t} SET expiry = $1 WHERE session_id = $2 AND expiry > $3")
                .into(),
            delete: format!("DELETE FROM {t} WHERE session_id = $1").into(),
            purge: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} \
                 WHERE expiry IS NULL OR expiry <= $1 LIMIT {PURGE_BATCH})"
            )
            .into(),
        }
    }
}

/// A pool on one PostgreSQL database and the statements for its sessions table.
pub(crate) struct PgStore {
    pool: Pool<Postgres>,
    sql: Sql,
    limits: Limits,
}

impl PgStore {
    pub(crate) async fn connect(
        url: &str,
        table: &TableName,
        config: &SessionConfig,
    ) -> Result<PgStore, ConfigError> {
        let shown = redact_url(url);
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| ConfigError::Invalid {
                setting: "SESSION_SQLALCHEMY",
                value: shown.clone(),
                expected: format!(
                    "a PostgreSQL URL such as postgres://user:password@host/db ({e})"
                ),
            })?
            .application_name("satchel");
        let limits = Limits::new(config.operation_timeout);
        if limits.limited {
            // The server gives up before the client does: a statement the client stopped
            // waiting for would otherwise go on waiting for its row lock and land once the
            // lock is released, after its caller was told it failed. lock_timeout is the
            // shorter, so a lock wait ends with its own error (55P03).
            options = options.options([
                ("lock_timeout", limits.lock_wait.as_millis()),
                ("statement_timeout", limits.statement.as_millis()),
            ]);
        }
        let connect_timeout = super::nonzero(config.connect_timeout);
        let pool =
            Pool::connect_per_thread(NAME, &shown, pool_options(config), options, connect_timeout)
                .await?;
        let quoted = table.quoted('"');
        let store = PgStore {
            pool,
            sql: Sql::new(&quoted),
            limits,
        };
        // Several processes starting at once may race to create the table; the loser's
        // CREATE fails on the catalog's unique index, and a second look finds the table.
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
                Ok(()) => return Ok(store),
            }
        }
    }

    async fn prepare_schema(
        &self,
        table: &TableName,
        quoted: &str,
        create: bool,
    ) -> Result<(), Setup> {
        if create {
            // Column for column what SQLAlchemy emits for Flask-Session's model on PostgreSQL.
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (\n\tid SERIAL NOT NULL, \n\t\
                 session_id VARCHAR(255), \n\tdata BYTEA, \n\t\
                 expiry TIMESTAMP WITHOUT TIME ZONE, \n\t\
                 PRIMARY KEY (id), \n\tUNIQUE (session_id)\n)"
            );
            self.execute_ddl(ddl).await?;
        }
        let rows = sqlx::query(
            "SELECT column_name::text, data_type::text, \
                    coalesce(column_default::text, ''), is_identity::text \
             FROM information_schema.columns \
             WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2",
        )
        .bind(table.schema.as_deref())
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
            let default: String = row.try_get(2)?;
            let identity: String = row.try_get(3)?;
            columns.push(FoundColumn {
                kind: kind(&declared),
                generated: default.starts_with("nextval(") || identity == "YES",
                name,
                declared,
            });
        }
        let unique: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnatts = 1 \
               AND i.indpred IS NULL AND a.attname = 'session_id'",
        )
        .bind(quoted)
        .fetch_one(self.pool())
        .await?;
        check_shape(table, &columns, unique > 0).map_err(Setup::Shape)?;
        if create {
            let indexed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = to_regclass($1) AND a.attname = 'expiry'",
            )
            .bind(quoted)
            .fetch_one(self.pool())
            .await?;
            if indexed == 0 {
                let ddl = format!(
                    "CREATE INDEX IF NOT EXISTS \"{}\" ON {quoted} (expiry)",
                    table.expiry_index()
                );
                self.execute_ddl(ddl).await?;
            }
        }
        Ok(())
    }

    /// Runs start-up DDL without the `statement_timeout` the pool's connections carry: building
    /// the `expiry` index on a large existing table may take longer than any request should.
    /// `lock_timeout` stays, because a DDL waiting for a lock holds up every session write
    /// queued behind it.
    async fn execute_ddl(&self, ddl: String) -> Result<(), sqlx::Error> {
        let mut tx = self.ddl_transaction().await?;
        sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
        tx.commit().await
    }

    /// A transaction whose statements have no time limit (`SET LOCAL` ends with it, so the
    /// connection goes back to the pool with its limit).
    async fn ddl_transaction(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        if self.limits.limited {
            sqlx::query("SET LOCAL statement_timeout = 0")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
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

    /// The longest a statement already sent can run: the server's `statement_timeout`.
    pub(crate) fn answer_within(&self) -> Duration {
        if self.limits.limited {
            self.limits.statement
        } else {
            self.limits.operation
        }
    }

    /// What the server waits for a lock before it gives up: its `lock_timeout`.
    pub(crate) fn lock_wait(&self) -> Duration {
        self.limits.lock_wait
    }

    /// Whether the server gave up: `lock_timeout` (55P03, lock_not_available) or
    /// `statement_timeout` (57014, query_canceled).
    pub(crate) fn gave_up(&self, error: &sqlx::Error) -> Option<GaveUp> {
        let sqlx::Error::Database(db) = error else {
            return None;
        };
        match db.code()?.as_ref() {
            "55P03" => Some(GaveUp::Lock),
            "57014" => Some(GaveUp::Statement),
            _ => None,
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        self.pool.sqlx()
    }

    pub(crate) fn pool_for_this_thread(&self) -> PgPool {
        self.pool.for_this_thread()
    }
}

/// `information_schema.columns.data_type`, read as SQLAlchemy's types are created.
fn kind(data_type: &str) -> Option<Kind> {
    match data_type {
        "integer" | "bigint" | "smallint" => Some(Kind::Integer),
        "character varying" | "text" | "character" => Some(Kind::Text),
        "bytea" => Some(Kind::Binary),
        // Not `timestamp with time zone`: a naive UTC value bound to it would be shifted by
        // the session's time zone.
        "timestamp without time zone" => Some(Kind::DateTime),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use satchel_core::SessionConfig;
    use satchel_core::testkit::{run, skipped};

    use super::{AssertSqlSafe, PgStore, TableName};

    #[test]
    fn schema_statements_run_without_the_statement_timeout_requests_keep() {
        if skipped("POSTGRES") {
            return;
        }
        run(async {
            let url = std::env::var("SATCHEL_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://satchel:satchel@127.0.0.1:5432/satchel".into());
            let mut config = SessionConfig::default();
            config.operation_timeout = Duration::from_secs(1);
            config.pool_size = 1;
            config.sqlalchemy_table = format!("sessions_{:016x}", getrandom::u64().unwrap());
            let table = TableName::from_config(&config).unwrap();
            let store = PgStore::connect(&url, &table, &config).await.unwrap();
            let show = "SHOW statement_timeout";
            let mut tx = store.ddl_transaction().await.unwrap();
            let ddl: String = sqlx::query_scalar(show).fetch_one(&mut *tx).await.unwrap();
            tx.rollback().await.unwrap();
            // The pool's only connection, given back: its limit is in force again.
            let request: String = sqlx::query_scalar(show)
                .fetch_one(store.pool())
                .await
                .unwrap();
            let drop = format!("DROP TABLE {}", table.quoted('"'));
            sqlx::query(AssertSqlSafe(drop))
                .execute(store.pool())
                .await
                .unwrap();
            assert_eq!((ddl.as_str(), request.as_str()), ("0", "950ms"));
        });
    }
}
