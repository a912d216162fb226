//! The raw-call references: bare handlers that make the calls a session needs, and nothing else.
//!
//! Each keeps its session as one opaque value of the size Satchel stores (a msgpack map with
//! `_permanent`, `username` and `visits`) under `session:<id>`, the id in a plain cookie. A read
//! is one lookup of a live entry; a read-modify-write is that lookup and a write of the value,
//! its visit counter one higher, with a fresh expiry. Each worker has its own client (a
//! multiplexed connection, a small pool), built on the worker's runtime: the practical limit of
//! each driver.

use std::cell::RefCell;
use std::time::Duration;

use actix_web::cookie::Cookie;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, DateTime, Document, doc};
use satchel_core::SessionId;
use satchel_memcached::memcache::exp::{AsyncMetaClient, Get, Set};
use satchel_redis::redis;
use sqlx::{Connection, MySqlPool, PgPool, SqlitePool};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::server::{
    MONGODB_DB, memcached_server, mongodb_url, mysql_url, pool_per_worker, postgres_url, redis_url,
};

/// What Satchel stores for a logged-in session with a few visits, in msgpack: the same size.
const SESSION_VALUE: &[u8] = b"\x83\xaa_permanent\xc3\xa8username\xa6user-7\xa6visits\xcd\x01\x00";

/// Flask's default `PERMANENT_SESSION_LIFETIME`, 31 days.
const LIFETIME: Duration = Duration::from_secs(31 * 24 * 3600);

const TABLE: &str = "bench_raw_sessions";

/// The two calls a session store needs, on one worker's client.
pub(crate) trait RawStore: 'static {
    /// The live value under `key`, if any.
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Writes a new session's `value` under `key` with the session lifetime.
    async fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.update(key, value).await
    }
    /// Writes an existing session's `value` under `key` with the session lifetime.
    async fn update(&self, key: &str, value: &[u8]) -> anyhow::Result<()>;
}

pub(crate) fn routes<S: RawStore>(config: &mut web::ServiceConfig) {
    config
        .route(
            "/health",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        )
        .route("/login/", web::post().to(login::<S>))
        .route("/read/", web::get().to(read::<S>))
        .route("/rmw/", web::get().to(read_modify_write::<S>));
}

fn failed(error: anyhow::Error) -> HttpResponse {
    eprintln!("raw handler: {error:#}");
    HttpResponse::InternalServerError().finish()
}

fn session_key(request: &HttpRequest) -> Option<String> {
    request
        .cookie("session")
        .map(|cookie| format!("session:{}", cookie.value()))
}

async fn login<S: RawStore>(
    store: web::Data<S>,
    _form: web::Form<crate::server::LoginForm>,
) -> HttpResponse {
    let id = match SessionId::generate(satchel_core::session_id::DEFAULT_ID_BYTES) {
        Ok(id) => id,
        Err(e) => return failed(e.into()),
    };
    if let Err(e) = store
        .create(&format!("session:{}", id.as_str()), SESSION_VALUE)
        .await
    {
        return failed(e);
    }
    HttpResponse::Found()
        .insert_header((LOCATION, "/read/"))
        .cookie(
            Cookie::build("session", id.as_str().to_owned())
                .path("/")
                .http_only(true)
                .finish(),
        )
        .finish()
}

async fn read<S: RawStore>(request: HttpRequest, store: web::Data<S>) -> HttpResponse {
    let Some(key) = session_key(&request) else {
        return HttpResponse::Unauthorized().finish();
    };
    match store.get(&key).await {
        Ok(Some(_)) => HttpResponse::Ok().body("hello"),
        Ok(None) => HttpResponse::Unauthorized().finish(),
        Err(e) => failed(e),
    }
}

async fn read_modify_write<S: RawStore>(request: HttpRequest, store: web::Data<S>) -> HttpResponse {
    let Some(key) = session_key(&request) else {
        return HttpResponse::Unauthorized().finish();
    };
    match store.get(&key).await {
        Ok(Some(mut value)) => match store.update(&key, count_visit(&mut value)).await {
            Ok(()) => HttpResponse::Ok().body("ok"),
            Err(e) => failed(e),
        },
        Ok(None) => HttpResponse::Unauthorized().finish(),
        Err(e) => failed(e),
    }
}

/// Adds one to the visit counter at the end of a stored value (the msgpack `uint 16` that
/// [`SESSION_VALUE`] ends with, wrapping), as Satchel's read-modify-write changes `visits`.
///
/// Writing back the bytes just read would let a database skip the write: MariaDB changes no row
/// whose new values equal the old ones (and its `DATETIME` expiry moves once a second), and
/// MongoDB reports such an update as not modified. The reference must write as Satchel does.
fn count_visit(value: &mut [u8]) -> &[u8] {
    if let [.., 0xcd, high, low] = value {
        let [next_high, next_low] = u16::from_be_bytes([*high, *low])
            .wrapping_add(1)
            .to_be_bytes();
        (*high, *low) = (next_high, next_low);
    }
    value
}

// ---------------------------------------------------------------- Redis

pub(crate) fn redis_client() -> anyhow::Result<redis::Client> {
    redis::Client::open(redis_url()).context("SATCHEL_REDIS_URL")
}

/// One multiplexed connection per worker: every request's commands share it.
pub(crate) struct RedisRaw(redis::aio::MultiplexedConnection);

impl RedisRaw {
    pub(crate) async fn connect(client: redis::Client) -> anyhow::Result<RedisRaw> {
        Ok(RedisRaw(client.get_multiplexed_async_connection().await?))
    }
}

impl RawStore for RedisRaw {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut connection = self.0.clone();
        Ok(redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await?)
    }

    async fn update(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let mut connection = self.0.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(LIFETIME.as_secs())
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- memcached

/// memcache's async meta-protocol client (Satchel's driver), its own small pool per worker.
pub(crate) struct MemcachedRaw(AsyncMetaClient);

impl MemcachedRaw {
    pub(crate) async fn connect() -> anyhow::Result<MemcachedRaw> {
        let pool = pool_per_worker() as usize;
        let client = AsyncMetaClient::builder()
            .max_idle(pool)
            .max_connections(Some(pool))
            .connect_async(memcached_server())
            .await?;
        Ok(MemcachedRaw(client))
    }
}

impl RawStore for MemcachedRaw {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let found = self.0.run(Get::new(key)).await?;
        Ok(if found.hit() { found.value } else { None })
    }

    async fn update(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let secs = u32::try_from(LIFETIME.as_secs()).unwrap_or(u32::MAX);
        // Past 30 days memcached reads the expiry as a unix time, as Satchel sends it.
        let expiry = u32::try_from(OffsetDateTime::now_utc().unix_timestamp())
            .unwrap_or(u32::MAX)
            .saturating_add(secs);
        let set = self.0.run(Set::new(key, value).ttl_raw(expiry)).await?;
        anyhow::ensure!(set.applied(), "memcached did not store the value");
        Ok(())
    }
}

// ---------------------------------------------------------------- MongoDB

/// The official driver's `Client` (a pool) per worker, on Flask-Session's document layout.
pub(crate) struct MongodbRaw(mongodb::Collection<Document>);

const MONGODB_COLLECTION: &str = "raw_sessions";

impl MongodbRaw {
    /// The unique index on `id` Satchel also creates, so lookups are index seeks.
    pub(crate) async fn prepare() -> anyhow::Result<()> {
        let raw = MongodbRaw::connect().await?;
        let index = mongodb::IndexModel::builder()
            .keys(doc! { "id": 1 })
            .options(
                mongodb::options::IndexOptions::builder()
                    .unique(true)
                    .build(),
            )
            .build();
        raw.0
            .create_index(index)
            .await
            .context("creating the index on id")?;
        Ok(())
    }

    pub(crate) async fn connect() -> anyhow::Result<MongodbRaw> {
        let mut options = mongodb::options::ClientOptions::parse(mongodb_url()).await?;
        options.max_pool_size = Some(pool_per_worker());
        let client = mongodb::Client::with_options(options)?;
        Ok(MongodbRaw(
            client.database(MONGODB_DB).collection(MONGODB_COLLECTION),
        ))
    }
}

impl RawStore for MongodbRaw {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let found = self
            .0
            .find_one(doc! { "id": key, "expiration": { "$gt": DateTime::now() } })
            .projection(doc! { "_id": 0, "val": 1 })
            .await?;
        Ok(found.and_then(|document| document.get_binary_generic("val").ok().cloned()))
    }

    async fn update(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let expiration = DateTime::from_system_time(std::time::SystemTime::now() + LIFETIME);
        let value = Binary {
            subtype: BinarySubtype::Generic,
            bytes: value.to_vec(),
        };
        self.0
            .update_one(
                doc! { "id": key },
                doc! { "$set": { "val": value, "expiration": expiration } },
            )
            .await?;
        Ok(())
    }

    async fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let expiration = DateTime::from_system_time(std::time::SystemTime::now() + LIFETIME);
        let value = Binary {
            subtype: BinarySubtype::Generic,
            bytes: value.to_vec(),
        };
        self.0
            .insert_one(doc! { "id": key, "val": value, "expiration": expiration })
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- SQL

/// The expiry of a value written now, as a naive UTC time (SQLAlchemy's `DateTime`).
fn expiry() -> PrimitiveDateTime {
    let at = OffsetDateTime::now_utc() + LIFETIME;
    PrimitiveDateTime::new(at.date(), at.time())
}

fn now() -> PrimitiveDateTime {
    let at = OffsetDateTime::now_utc();
    PrimitiveDateTime::new(at.date(), at.time())
}

/// SQLite keeps SQLAlchemy's text form of the time, as Satchel does.
fn sqlite_time(t: PrimitiveDateTime) -> String {
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

/// `RawStore` for a SQL reference from its dialect's statement module: on its sqlx pool
/// (`pool`) or on a connection of its [`Held`] set (`held`).
macro_rules! sql_raw_store {
    ($store:ty, $statements:ident, pool) => {
        impl RawStore for $store {
            async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
                $statements::get(&self.0, key).await
            }

            async fn update(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
                $statements::update(&self.0, key, value).await
            }

            async fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
                $statements::create(&self.0, key, value).await
            }
        }
    };
    ($store:ty, $statements:ident, held) => {
        impl RawStore for $store {
            async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
                self.0.with(async |c| $statements::get(c, key).await).await
            }

            async fn update(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
                self.0
                    .with(async |c| $statements::update(c, key, value).await)
                    .await
            }

            async fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
                self.0
                    .with(async |c| $statements::create(c, key, value).await)
                    .await
            }
        }
    };
}

/// PostgreSQL through sqlx, on Flask-Session's table layout.
pub(crate) struct PostgresRaw(PgPool);

impl PostgresRaw {
    pub(crate) async fn prepare() -> anyhow::Result<()> {
        let raw = PostgresRaw::connect().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw_sessions (id SERIAL PRIMARY KEY, \
             session_id VARCHAR(255) UNIQUE, data BYTEA, expiry TIMESTAMP WITHOUT TIME ZONE)",
        )
        .execute(&raw.0)
        .await
        .with_context(|| format!("creating {TABLE}"))?;
        Ok(())
    }

    pub(crate) async fn connect() -> anyhow::Result<PostgresRaw> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(pool_per_worker())
            .test_before_acquire(false)
            .connect(&postgres_url())
            .await?;
        Ok(PostgresRaw(pool))
    }
}

sql_raw_store!(PostgresRaw, pg, pool);

/// The PostgreSQL references' statements, on a pool (`postgres-raw`) or on one held connection
/// (`postgres-raw-held`).
mod pg {
    use super::*;

    pub(super) async fn get<'e>(
        e: impl sqlx::PgExecutor<'e>,
        key: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT data FROM bench_raw_sessions WHERE session_id = $1 AND expiry > $2",
        )
        .bind(key)
        .bind(now())
        .fetch_optional(e)
        .await?)
    }

    pub(super) async fn update<'e>(
        e: impl sqlx::PgExecutor<'e>,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE bench_raw_sessions SET data = $1, expiry = $2 WHERE session_id = $3")
            .bind(value)
            .bind(expiry())
            .bind(key)
            .execute(e)
            .await?;
        Ok(())
    }

    pub(super) async fn create<'e>(
        e: impl sqlx::PgExecutor<'e>,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO bench_raw_sessions (session_id, data, expiry) VALUES ($1, $2, $3)",
        )
        .bind(key)
        .bind(value)
        .bind(expiry())
        .execute(e)
        .await?;
        Ok(())
    }
}

/// MariaDB/MySQL through sqlx, on Flask-Session's table layout.
pub(crate) struct MysqlRaw(MySqlPool);

impl MysqlRaw {
    pub(crate) async fn prepare() -> anyhow::Result<()> {
        let raw = MysqlRaw::connect().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw_sessions (id INTEGER AUTO_INCREMENT PRIMARY KEY, \
             session_id VARCHAR(255) UNIQUE, data BLOB, expiry DATETIME)",
        )
        .execute(&raw.0)
        .await
        .with_context(|| format!("creating {TABLE}"))?;
        Ok(())
    }

    pub(crate) async fn connect() -> anyhow::Result<MysqlRaw> {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(pool_per_worker())
            .test_before_acquire(false)
            .connect(&mysql_url())
            .await?;
        Ok(MysqlRaw(pool))
    }
}

sql_raw_store!(MysqlRaw, mysql, pool);

/// The MariaDB/MySQL references' statements, on a pool (`mariadb-raw`) or on one held connection
/// (`mariadb-raw-held`).
mod mysql {
    use super::*;

    pub(super) async fn get<'e>(
        e: impl sqlx::MySqlExecutor<'e>,
        key: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT data FROM bench_raw_sessions WHERE session_id = ? AND expiry > ?",
        )
        .bind(key)
        .bind(now())
        .fetch_optional(e)
        .await?)
    }

    pub(super) async fn update<'e>(
        e: impl sqlx::MySqlExecutor<'e>,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE bench_raw_sessions SET data = ?, expiry = ? WHERE session_id = ?")
            .bind(value)
            .bind(expiry())
            .bind(key)
            .execute(e)
            .await?;
        Ok(())
    }

    pub(super) async fn create<'e>(
        e: impl sqlx::MySqlExecutor<'e>,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO bench_raw_sessions (session_id, data, expiry) VALUES (?, ?, ?)")
            .bind(key)
            .bind(value)
            .bind(expiry())
            .execute(e)
            .await?;
        Ok(())
    }
}

/// SQLite through sqlx with Satchel's settings (WAL, synchronous NORMAL, a busy timeout).
pub(crate) struct SqliteRaw(SqlitePool);

impl SqliteRaw {
    pub(crate) async fn prepare(url: &str) -> anyhow::Result<()> {
        let raw = SqliteRaw::connect(url.to_owned()).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw_sessions (id INTEGER PRIMARY KEY, \
             session_id VARCHAR(255) UNIQUE, data BLOB, expiry DATETIME)",
        )
        .execute(&raw.0)
        .await
        .with_context(|| format!("creating {TABLE}"))?;
        Ok(())
    }

    /// Satchel's settings: WAL, synchronous NORMAL, a busy timeout.
    fn options(url: &str) -> anyhow::Result<sqlx::sqlite::SqliteConnectOptions> {
        use std::str::FromStr;
        Ok(sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5)))
    }

    pub(crate) async fn connect(url: String) -> anyhow::Result<SqliteRaw> {
        let options = SqliteRaw::options(&url)?;
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(pool_per_worker())
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteRaw(pool))
    }
}

sql_raw_store!(SqliteRaw, sqlite, pool);

/// The SQLite references' statements, on a pool (`sqlite-raw`) or on one held connection
/// (`sqlite-raw-held`).
mod sqlite {
    use super::*;

    pub(super) async fn get<'e>(
        e: impl sqlx::SqliteExecutor<'e>,
        key: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT data FROM bench_raw_sessions WHERE session_id = ?1 AND expiry > ?2",
        )
        .bind(key)
        .bind(sqlite_time(now()))
        .fetch_optional(e)
        .await?)
    }

    pub(super) async fn update<'e>(
        e: impl sqlx::SqliteExecutor<'e>,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE bench_raw_sessions SET data = ?1, expiry = ?2 WHERE session_id = ?3")
            .bind(value)
            .bind(sqlite_time(expiry()))
            .bind(key)
            .execute(e)
            .await?;
        Ok(())
    }

    pub(super) async fn create<'e>(
        e: impl sqlx::SqliteExecutor<'e>,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO bench_raw_sessions (session_id, data, expiry) VALUES (?1, ?2, ?3)",
        )
        .bind(key)
        .bind(value)
        .bind(sqlite_time(expiry()))
        .execute(e)
        .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- SQL, connections held

/// A worker's own SQL connections, taken and given back by the handler itself, outside sqlx's
/// pool: sqlx tests every connection given back to its pool with a round trip, and Satchel's
/// SQL backend hands a finished connection on instead (`crates/satchel-sql/src/dialect/pool.rs`).
/// The `*-raw-held` references make the same statements as `*-raw` this way, to show what
/// that is worth without any session layer.
pub(crate) struct Held<C> {
    idle: RefCell<Vec<C>>,
    free: tokio::sync::Semaphore,
}

impl<C> Held<C> {
    /// `SATCHEL_POOL_SIZE` connections from `connect`, opened now.
    async fn open<F, Fut>(connect: F) -> anyhow::Result<Held<C>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<C, sqlx::Error>>,
    {
        let size = pool_per_worker() as usize;
        let mut idle = Vec::with_capacity(size);
        for _ in 0..size {
            idle.push(connect().await?);
        }
        Ok(Held {
            idle: RefCell::new(idle),
            free: tokio::sync::Semaphore::new(size),
        })
    }

    /// Runs `statements` on an idle connection, waiting for one if none is.
    async fn with<R>(
        &self,
        statements: impl AsyncFnOnce(&mut C) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        let permit = self.free.acquire().await?;
        let mut conn = self
            .idle
            .borrow_mut()
            .pop()
            .context("held connections: a permit without a connection")?;
        // A request cancelled mid-statement loses its connection and that connection's permit.
        permit.forget();
        let result = statements(&mut conn).await;
        self.idle.borrow_mut().push(conn);
        self.free.add_permits(1);
        result
    }
}

/// [`Held`] PostgreSQL connections with the statements of [`PostgresRaw`].
pub(crate) struct PostgresHeld(Held<sqlx::PgConnection>);

impl PostgresHeld {
    pub(crate) async fn connect() -> anyhow::Result<PostgresHeld> {
        let url = postgres_url();
        Ok(PostgresHeld(
            Held::open(|| sqlx::PgConnection::connect(&url)).await?,
        ))
    }
}

sql_raw_store!(PostgresHeld, pg, held);

/// [`Held`] MariaDB/MySQL connections with the statements of [`MysqlRaw`].
pub(crate) struct MysqlHeld(Held<sqlx::MySqlConnection>);

impl MysqlHeld {
    pub(crate) async fn connect() -> anyhow::Result<MysqlHeld> {
        let url = mysql_url();
        Ok(MysqlHeld(
            Held::open(|| sqlx::MySqlConnection::connect(&url)).await?,
        ))
    }
}

sql_raw_store!(MysqlHeld, mysql, held);

/// [`Held`] SQLite connections with the statements and settings of [`SqliteRaw`].
pub(crate) struct SqliteHeld(Held<sqlx::SqliteConnection>);

impl SqliteHeld {
    pub(crate) async fn connect(url: String) -> anyhow::Result<SqliteHeld> {
        let options = SqliteRaw::options(&url)?;
        Ok(SqliteHeld(
            Held::open(|| sqlx::SqliteConnection::connect_with(&options)).await?,
        ))
    }
}

sql_raw_store!(SqliteHeld, sqlite, held);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visit_changes_the_stored_value_and_keeps_it_msgpack() {
        let mut value = SESSION_VALUE.to_vec();
        assert_eq!(
            count_visit(&mut value),
            b"\x83\xaa_permanent\xc3\xa8username\xa6user-7\xa6visits\xcd\x01\x01"
        );
        let mut wrapped = b"\xcd\xff\xff".to_vec();
        assert_eq!(count_visit(&mut wrapped), b"\xcd\x00\x00");
        let mut other = b"\x80".to_vec();
        assert_eq!(count_visit(&mut other), b"\x80");
    }
}
