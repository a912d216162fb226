//! `loadtest serve`: one server under test, in its own process, on 127.0.0.1.
//!
//! Every target answers the same routes, so the load generator does not know which it talks to:
//!
//! * `GET /health` — 200 once the server is up;
//! * `POST /login/` (`username=…`) — a new session holding the user name, then `302`;
//! * `GET /read/` — reads the session: `hello <username>`, or 401 without a session;
//! * `GET /rmw/` — reads the session, increments `visits`, saves it; answers the new count.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use actix_session::config::{PersistentSession, SessionMiddlewareBuilder, TtlExtensionPolicy};
use actix_session::storage::{
    CookieSessionStore, LoadError, RedisSessionStore, SaveError, SessionKey, SessionStore,
    UpdateError,
};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::header::LOCATION;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use satchel::{Satchel, SessionConfig};
use serde::Deserialize;

use crate::raw;
use crate::targets::Target;

/// actix-session's session state (a private alias there).
type SessionState = HashMap<String, String>;

/// Signs the session cookies of every target that needs a key. A benchmark secret, never used
/// for anything else.
const SECRET_KEY: &str = "satchel-loadtest-secret-key-for-loopback-benchmarks-only-0123456789";

/// The loopback URL of a backend: `SATCHEL_<NAME>_URL` (as `.services/env.sh` exports it), or the
/// address `scripts/services.sh` starts it on.
pub(crate) fn backend_url(name: &str, default: &str) -> String {
    std::env::var(format!("SATCHEL_{name}_URL")).unwrap_or_else(|_| default.to_owned())
}

pub(crate) fn redis_url() -> String {
    backend_url("REDIS", "redis://127.0.0.1:6379")
}

/// `host:port`, as `SESSION_MEMCACHED` and the memcache client take it.
pub(crate) fn memcached_server() -> String {
    let url = backend_url("MEMCACHED", "memcache://127.0.0.1:11211");
    url.split_once("://").map_or(url.clone(), |(_, rest)| {
        rest.trim_end_matches('/').to_owned()
    })
}

pub(crate) fn mongodb_url() -> String {
    backend_url("MONGODB", "mongodb://127.0.0.1:27017")
}

pub(crate) fn postgres_url() -> String {
    backend_url(
        "POSTGRES",
        "postgres://satchel:satchel@127.0.0.1:5432/satchel",
    )
}

pub(crate) fn mysql_url() -> String {
    backend_url("MYSQL", "mysql://satchel:satchel@127.0.0.1:3306/satchel")
}

pub(crate) fn sqlite_url(data_dir: &Path, file: &str) -> String {
    format!("sqlite://{}", data_dir.join(file).display())
}

/// Connections per pool: `SATCHEL_POOL_SIZE` from the environment, else Satchel's default. The
/// raw references open this many per worker, as Satchel does for PostgreSQL, MySQL and
/// memcached, so both sides of a comparison hold the same number of connections.
pub(crate) fn pool_per_worker() -> u32 {
    std::env::var("SATCHEL_POOL_SIZE")
        .ok()
        .and_then(|size| size.parse().ok())
        .filter(|size| *size > 0)
        .unwrap_or(SessionConfig::default().pool_size)
}

/// Database, collection and table names the benchmark writes to, apart from the tests'.
pub(crate) const MONGODB_DB: &str = "satchel_bench";
pub(crate) const SATCHEL_TABLE: &str = "bench_sessions";

/// The Flask-named settings of one Satchel target, with every other setting at its default
/// (permanent sessions, refreshed on every request, msgpack).
fn satchel_config(target: Target, data_dir: &Path) -> anyhow::Result<SessionConfig> {
    let mut settings: Vec<(&str, String)> = vec![
        ("SECRET_KEY", SECRET_KEY.into()),
        ("SATCHEL_POOL_SIZE", pool_per_worker().to_string()),
    ];
    let sql = |url: String| {
        vec![
            ("SESSION_TYPE", "sqlalchemy".to_owned()),
            ("SESSION_SQLALCHEMY", url),
            ("SESSION_SQLALCHEMY_TABLE", SATCHEL_TABLE.to_owned()),
        ]
    };
    settings.extend(match target {
        Target::SatchelMemory => vec![("SESSION_TYPE", "memory".to_owned())],
        Target::RedisSatchel | Target::RedisSatchelNoRefresh | Target::RedisSatchelActix => {
            vec![
                ("SESSION_TYPE", "redis".to_owned()),
                ("SESSION_REDIS", redis_url()),
            ]
        }
        Target::MemcachedSatchel
        | Target::MemcachedSatchelNoRefresh
        | Target::MemcachedSatchelAsync
        | Target::MemcachedSatchelBlocking => vec![
            ("SESSION_TYPE", "memcached".to_owned()),
            ("SESSION_MEMCACHED", memcached_server()),
        ],
        Target::MongodbSatchel | Target::MongodbSatchelNoRefresh => vec![
            ("SESSION_TYPE", "mongodb".to_owned()),
            ("SESSION_MONGODB", mongodb_url()),
            ("SESSION_MONGODB_DB", MONGODB_DB.to_owned()),
        ],
        Target::PostgresSatchel | Target::PostgresSatchelNoRefresh => sql(postgres_url()),
        Target::MysqlSatchel | Target::MysqlSatchelNoRefresh => sql(mysql_url()),
        Target::SqliteSatchel | Target::SqliteSatchelNoRefresh => {
            sql(sqlite_url(data_dir, "satchel.sqlite3"))
        }
        Target::CookieSatchel | Target::CookieSatchelNoRefresh => {
            vec![("SESSION_TYPE", "cookie".to_owned())]
        }
        _ => anyhow::bail!("{} is not a Satchel target", target.name()),
    });
    if target.no_refresh() {
        settings.push(("SESSION_REFRESH_EACH_REQUEST", "false".to_owned()));
    }
    SessionConfig::from_lookup(|name| {
        settings
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })
    .context("session settings")
}

/// The login form; every login handler reads it, so the connection stays usable.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn login(session: Session, form: web::Form<LoginForm>) -> actix_web::Result<HttpResponse> {
    // A new id on login, as a login page should (and as the login example does).
    session.renew();
    session.insert("username", &form.username)?;
    Ok(HttpResponse::Found()
        .insert_header((LOCATION, "/read/"))
        .finish())
}

async fn read(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(match session.get::<String>("username")? {
        Some(name) => HttpResponse::Ok().body(format!("hello {name}")),
        None => HttpResponse::Unauthorized().finish(),
    })
}

async fn read_modify_write(session: Session) -> actix_web::Result<HttpResponse> {
    if session.get::<String>("username")?.is_none() {
        return Ok(HttpResponse::Unauthorized().finish());
    }
    let visits = session.get::<i64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(HttpResponse::Ok().body(visits.to_string()))
}

fn session_routes(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health))
        .route("/login/", web::post().to(login))
        .route("/read/", web::get().to(read))
        .route("/rmw/", web::get().to(read_modify_write));
}

async fn constant() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

async fn constant_login(_form: web::Form<LoginForm>) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, "/read/"))
        .finish()
}

/// `HttpServer::new(factory)` on 127.0.0.1 with the given worker count, run to the end. A macro
/// because each target's `App` has its own type.
macro_rules! serve_app {
    ($port:expr, $workers:expr, $factory:expr) => {
        HttpServer::new($factory)
            .workers($workers)
            .bind(("127.0.0.1", $port))
            .context("binding the port")?
            .run()
            .await
            .context("running the server")?
    };
}

/// [`serve_app!`] for a bare handler: the raw routes over `$store`, one built per worker by
/// `$connect`.
macro_rules! serve_raw {
    ($port:expr, $workers:expr, $store:ty, $connect:expr) => {{
        let connect = $connect;
        serve_app!($port, $workers, move || {
            App::new()
                .data_factory(connect.clone())
                .configure(raw::routes::<$store>)
        })
    }};
}

/// Runs the server of `target` until the process is killed.
pub(crate) fn serve(
    target: Target,
    port: u16,
    workers: usize,
    data_dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.to_path_buf();
    actix_web::rt::System::new().block_on(async move {
        match target {
            Target::Constant => serve_app!(port, workers, || {
                App::new()
                    .route("/health", web::get().to(health))
                    .route("/login/", web::post().to(constant_login))
                    .route("/read/", web::get().to(constant))
            }),
            Target::RedisSatchel
            | Target::RedisSatchelNoRefresh
            | Target::SatchelMemory
            | Target::MemcachedSatchel
            | Target::MemcachedSatchelNoRefresh
            | Target::MongodbSatchel
            | Target::MongodbSatchelNoRefresh
            | Target::PostgresSatchel
            | Target::PostgresSatchelNoRefresh
            | Target::MysqlSatchel
            | Target::MysqlSatchelNoRefresh
            | Target::SqliteSatchel
            | Target::SqliteSatchelNoRefresh
            | Target::CookieSatchel
            | Target::CookieSatchelNoRefresh => {
                let config = satchel_config(target, &data_dir)?;
                let sessions = Satchel::from_config(config)
                    .await
                    .context("Satchel::from_config")?;
                serve_app!(port, workers, move || {
                    App::new()
                        .wrap(sessions.middleware())
                        .configure(session_routes)
                })
            }
            Target::MemcachedSatchelAsync | Target::MemcachedSatchelBlocking => {
                // `Satchel::from_config` always takes the default mode, so both modes are built
                // alike by hand here: the same `Store`, the same actix-session cookie.
                let config = satchel_config(target, &data_dir)?;
                let mode = if target == Target::MemcachedSatchelBlocking {
                    satchel_memcached::ClientMode::Blocking
                } else {
                    satchel_memcached::ClientMode::Async
                };
                let backend = satchel_memcached::MemcachedBackend::connect_with(&config, mode)
                    .await
                    .context("MemcachedBackend::connect_with")?;
                let store = satchel::Store::new(backend, &config);
                serve_app!(port, workers, move || {
                    App::new()
                        .wrap(satchel_actix_middleware(store.clone(), &config))
                        .configure(session_routes)
                })
            }
            Target::RedisSatchelActix => {
                let config = satchel_config(target, &data_dir)?;
                let sessions = Satchel::from_config(config)
                    .await
                    .context("Satchel::from_config")?;
                serve_app!(port, workers, move || {
                    App::new()
                        .wrap(sessions.actix_middleware())
                        .configure(session_routes)
                })
            }
            Target::RedisActixSession | Target::RedisActixSessionRefresh => {
                // As actix-session's docs build it: one store in `main`, cloned into each worker.
                let store = RedisSessionStore::new(redis_url())
                    .await
                    .context("RedisSessionStore::new")?;
                let key = Key::generate();
                let renews = target == Target::RedisActixSessionRefresh;
                serve_app!(port, workers, move || {
                    App::new()
                        .wrap(actix_session_middleware(store.clone(), key.clone(), renews))
                        .configure(session_routes)
                })
            }
            Target::RedisActixSessionPerWorker => {
                let key = Key::generate();
                let url = redis_url();
                serve_app!(port, workers, move || {
                    let store = PerWorkerRedisStore {
                        url: url.clone(),
                        store: Rc::default(),
                    };
                    App::new()
                        .wrap(SessionMiddleware::new(store, key.clone()))
                        .configure(session_routes)
                })
            }
            Target::CookieActixSession | Target::CookieActixSessionRefresh => {
                let key = Key::generate();
                let renews = target == Target::CookieActixSessionRefresh;
                serve_app!(port, workers, move || {
                    App::new()
                        .wrap(actix_session_middleware(
                            CookieSessionStore::default(),
                            key.clone(),
                            renews,
                        ))
                        .configure(session_routes)
                })
            }
            Target::RedisRaw => {
                let client = raw::redis_client()?;
                serve_raw!(
                    port,
                    workers,
                    raw::RedisRaw,
                    move || raw::RedisRaw::connect(client.clone())
                )
            }
            Target::MemcachedRaw => {
                serve_raw!(port, workers, raw::MemcachedRaw, raw::MemcachedRaw::connect)
            }
            Target::MongodbRaw => {
                raw::MongodbRaw::prepare().await?;
                serve_raw!(port, workers, raw::MongodbRaw, raw::MongodbRaw::connect)
            }
            Target::PostgresRaw => {
                raw::PostgresRaw::prepare().await?;
                serve_raw!(port, workers, raw::PostgresRaw, raw::PostgresRaw::connect)
            }
            Target::PostgresRawHeld => {
                raw::PostgresRaw::prepare().await?;
                serve_raw!(port, workers, raw::PostgresHeld, raw::PostgresHeld::connect)
            }
            Target::MysqlRawHeld => {
                raw::MysqlRaw::prepare().await?;
                serve_raw!(port, workers, raw::MysqlHeld, raw::MysqlHeld::connect)
            }
            Target::SqliteRawHeld => {
                let url = sqlite_url(&data_dir, "raw.sqlite3");
                raw::SqliteRaw::prepare(&url).await?;
                serve_raw!(port, workers, raw::SqliteHeld, move || {
                    raw::SqliteHeld::connect(url.clone())
                })
            }
            Target::MysqlRaw => {
                raw::MysqlRaw::prepare().await?;
                serve_raw!(port, workers, raw::MysqlRaw, raw::MysqlRaw::connect)
            }
            Target::SqliteRaw => {
                let url = sqlite_url(&data_dir, "raw.sqlite3");
                raw::SqliteRaw::prepare(&url).await?;
                serve_raw!(port, workers, raw::SqliteRaw, move || {
                    raw::SqliteRaw::connect(url.clone())
                })
            }
        }
        Ok(())
    })
}

/// The actix-session middleware Satchel's `actix_middleware()` builds, over a store built by hand.
fn satchel_actix_middleware<S>(store: S, config: &SessionConfig) -> SessionMiddleware<S>
where
    S: SessionStore + Clone + 'static,
{
    let builder = SessionMiddleware::builder(
        store,
        satchel::cookie_key(&satchel::Secret::new(SECRET_KEY)),
    )
    .cookie_name(config.cookie_name.clone());
    renewing_every_request(builder, config.permanent_session_lifetime)
}

/// actix-session's middleware as its docs build it, or, when `renews` (the `-refresh` rows),
/// doing what Flask does by default for a permanent session: a cookie that lasts Flask's 31
/// days, sent again with every response, and the stored expiry renewed on every request.
fn actix_session_middleware<S>(store: S, key: Key, renews: bool) -> SessionMiddleware<S>
where
    S: SessionStore,
{
    let builder = SessionMiddleware::builder(store, key);
    if renews {
        renewing_every_request(builder, SessionConfig::default().permanent_session_lifetime)
    } else {
        builder.build()
    }
}

/// `builder` finished with a persistent cookie of `lifetime` and
/// `TtlExtensionPolicy::OnEveryRequest`: the cookie is sent again with every response and the
/// stored expiry renewed on every request.
fn renewing_every_request<S>(
    builder: SessionMiddlewareBuilder<S>,
    lifetime: std::time::Duration,
) -> SessionMiddleware<S>
where
    S: SessionStore,
{
    let ttl = CookieDuration::try_from(lifetime).unwrap_or(CookieDuration::MAX);
    builder
        .session_lifecycle(
            PersistentSession::default()
                .session_ttl(ttl)
                .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
        )
        .build()
}

/// actix-session's `RedisSessionStore`, connected on the worker's own runtime the first time the
/// worker needs it, so that its connection is driven by the thread that uses it.
#[derive(Clone)]
struct PerWorkerRedisStore {
    url: String,
    store: Rc<tokio::sync::OnceCell<RedisSessionStore>>,
}

impl PerWorkerRedisStore {
    async fn get(&self) -> anyhow::Result<&RedisSessionStore> {
        self.store
            .get_or_try_init(|| RedisSessionStore::new(self.url.clone()))
            .await
    }
}

impl SessionStore for PerWorkerRedisStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        self.get()
            .await
            .map_err(LoadError::Other)?
            .load(session_key)
            .await
    }

    async fn save(
        &self,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        self.get()
            .await
            .map_err(SaveError::Other)?
            .save(session_state, ttl)
            .await
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        self.get()
            .await
            .map_err(UpdateError::Other)?
            .update(session_key, session_state, ttl)
            .await
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        self.get().await?.update_ttl(session_key, ttl).await
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        self.get().await?.delete(session_key).await
    }
}
