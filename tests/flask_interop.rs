//! Flask interop against the real thing: for each backend, Satchel apps (one per settings
//! variant) serve on loopback while `tests/interop/driver.py` drives a real Flask 3.1 +
//! Flask-Session 0.8 app over the same store, in both directions, and compares what each side
//! stores through the backend's own Python client.
//!
//! Needs the Python environment `scripts/python-env.sh` builds (`scripts/test.sh` runs it); set
//! `SATCHEL_INTEROP_PYTHON` to use another interpreter. `SATCHEL_SKIP_<BACKEND>=1` skips a
//! backend. The driver's output is printed in full when a check fails (run with
//! `--nocapture` to see it on success too).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_session::Session;
use actix_web::{App, HttpResponse, HttpServer, web};
use satchel::value::{Bytes, Timestamp};
use satchel::{Satchel, SessionConfig};
use serde_json::{Map, Value as Json, json};

/// Flask-style settings, by name, shared verbatim by the Satchel app and the Flask app.
type Settings = BTreeMap<String, String>;

// ----------------------------------------------------------------------------------------------
// The Satchel side: interop routes.

/// `POST /set` with a JSON object: each entry goes into the session as it is (tagged bytes
/// and datetimes as handlers write them); answers with the session's entries.
async fn set(
    session: Session,
    body: web::Json<Map<String, Json>>,
) -> actix_web::Result<HttpResponse> {
    for (key, value) in body.into_inner() {
        session.insert(key, value)?;
    }
    Ok(HttpResponse::Ok().json(entries(&session)))
}

/// `GET /get`: the session's entries as handlers see them.
async fn get(session: Session) -> HttpResponse {
    HttpResponse::Ok().json(entries(&session))
}

/// `POST /remove` with a JSON array of keys.
async fn remove(session: Session, keys: web::Json<Vec<String>>) -> HttpResponse {
    for key in keys.into_inner() {
        session.remove(&key);
    }
    HttpResponse::Ok().json(entries(&session))
}

/// `GET /clear`: `Session::clear`, which leaves an empty session (deleted, as in Flask).
async fn clear(session: Session) -> HttpResponse {
    session.clear();
    HttpResponse::Ok().json(json!({}))
}

/// `GET /purge`: `Session::purge`, i.e. log out.
async fn purge(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().json(json!({}))
}

/// `POST /renew`: a new id for the same data.
async fn renew(session: Session) -> HttpResponse {
    session.renew();
    HttpResponse::Ok().json(entries(&session))
}

/// `GET /typed`: reads the driver's sample keys with typed getters, as an app would.
async fn typed(session: Session) -> actix_web::Result<HttpResponse> {
    let bytes = session.get::<Bytes>("bytes")?.map(|b| hex(&b.0));
    let when = session
        .get::<Timestamp>("datetime")?
        .map(|t| t.0.unix_timestamp_nanos().to_string());
    Ok(HttpResponse::Ok().json(json!({
        "bytes_hex": bytes,
        "datetime_unix_nanos": when,
        "int_min": session.get::<i64>("int_min")?,
        "int_max": session.get::<i64>("int_max")?,
        "int_u64_max": session.get::<u64>("int_u64_max")?,
        "float": session.get::<f64>("float")?,
        "str": session.get::<String>("str")?,
        "bool_true": session.get::<bool>("bool_true")?,
        "none": session.get::<Option<i64>>("none")?,
        "list": session.get::<Json>("list")?,
    })))
}

/// `POST /set_typed`: writes values with the typed API (`Bytes`, `Timestamp`, plain Rust types).
async fn set_typed(session: Session) -> actix_web::Result<HttpResponse> {
    session.insert("rust_bytes", Bytes(vec![0, 1, 0x7f, 0x80, 0xfe, 0xff]))?;
    // 2024-01-02T03:04:05.123456Z
    let when = time::OffsetDateTime::from_unix_timestamp_nanos(1_704_164_645_123_456_000)
        .map_err(actix_web::error::ErrorInternalServerError)?;
    session.insert("rust_datetime", Timestamp(when))?;
    session.insert("rust_float", 2.5_f64)?;
    session.insert("rust_i64_max", i64::MAX)?;
    session.insert("rust_i64_min", i64::MIN)?;
    session.insert("rust_list", vec!["a", "ü"])?;
    session.insert("rust_none", None::<i64>)?;
    session.insert("rust_text", "héllo ☃ 日本")?;
    session.insert("rust_u64_max", u64::MAX)?;
    Ok(HttpResponse::Ok().json(entries(&session)))
}

fn entries(session: &Session) -> Map<String, Json> {
    session
        .entries()
        .iter()
        .map(|(key, text)| {
            let value = serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()));
            (key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Satchel app serving on 127.0.0.1 from its own thread and actix `System`.
struct RustApp {
    url: String,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RustApp {
    fn drop(&mut self) {
        // Stopping the server ends `server.await`, so the app's thread and System end too.
        actix_web::rt::System::new().block_on(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start_rust_app(settings: &Settings) -> Result<RustApp, String> {
    let config = SessionConfig::from_lookup(|name| settings.get(name).cloned())
        .map_err(|e| format!("SessionConfig::from_lookup: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (tx, rx) = mpsc::channel::<Result<actix_web::dev::ServerHandle, String>>();
    let thread = std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        let started = tx.clone();
        let result = system.block_on(async move {
            let satchel = match Satchel::from_config(config).await {
                Ok(satchel) => satchel,
                Err(e) => return Err(format!("Satchel::from_config: {e}")),
            };
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(satchel.middleware())
                    .route("/set", web::post().to(set))
                    .route("/get", web::get().to(get))
                    .route("/remove", web::post().to(remove))
                    .route("/clear", web::get().to(clear))
                    .route("/purge", web::get().to(purge))
                    .route("/renew", web::post().to(renew))
                    .route("/typed", web::get().to(typed))
                    .route("/set_typed", web::post().to(set_typed))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .map_err(|e| format!("listen: {e}"))?
            .run();
            let _ = started.send(Ok(server.handle()));
            server.await.map_err(|e| format!("server: {e}"))
        });
        if let Err(e) = result {
            // Reaches the test if the app never started; otherwise only the log.
            let _ = tx.send(Err(e.clone()));
            eprintln!("satchel app: {e}");
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(server)) => Ok(RustApp {
            url,
            server,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(e) => Err(format!("the Satchel app did not start within 60 s: {e}")),
    }
}

// ----------------------------------------------------------------------------------------------
// Variants and the driver.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    match std::env::var_os("SATCHEL_INTEROP_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => repo().join(".venv-interop/bin/python"),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn skipped(backend: &str) -> bool {
    let var = format!("SATCHEL_SKIP_{backend}");
    let skip = std::env::var(&var)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    if skip {
        eprintln!("SKIPPED: Flask interop on {backend} ({var} is set)");
    }
    skip
}

/// A short random tag, so keys, prefixes and tables of parallel runs never meet.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// The settings variants every backend runs: each of signer on/off, default/custom prefix,
/// permanent/non-permanent, and a long (memcached: absolute expiry) and a short lifetime
/// appears at least once, plus Flask-Session's JSON format.
fn variants(base: &Settings) -> Vec<(String, Settings)> {
    let tag = run_tag();
    let with = |pairs: &[(&str, String)]| {
        let mut settings = base.clone();
        for (name, value) in pairs {
            settings.insert((*name).to_owned(), value.clone());
        }
        settings
    };
    let secret = "interop secret ☃ key".to_owned();
    vec![
        ("defaults".to_owned(), with(&[])),
        (
            "signer+custom-prefix+permanent".to_owned(),
            with(&[
                ("SESSION_USE_SIGNER", "True".into()),
                ("SECRET_KEY", secret.clone()),
                ("SESSION_KEY_PREFIX", format!("interop_{tag}:")),
                ("SESSION_PERMANENT", "True".into()),
                ("PERMANENT_SESSION_LIFETIME", "3600".into()),
            ]),
        ),
        (
            "custom-prefix+non-permanent".to_owned(),
            with(&[
                ("SESSION_KEY_PREFIX", format!("np_{tag}_")),
                ("SESSION_PERMANENT", "False".into()),
                ("PERMANENT_SESSION_LIFETIME", "7200".into()),
            ]),
        ),
        (
            "signer+non-permanent".to_owned(),
            with(&[
                ("SESSION_USE_SIGNER", "True".into()),
                ("SECRET_KEY", secret),
                ("SESSION_PERMANENT", "False".into()),
            ]),
        ),
        (
            "json-format".to_owned(),
            with(&[
                ("SESSION_SERIALIZATION_FORMAT", "json".into()),
                ("SESSION_KEY_PREFIX", format!("json_{tag}:")),
            ]),
        ),
    ]
}

/// Starts one Satchel app per variant, runs the driver against them, and fails with its
/// output when any check fails.
fn run_interop(backend: &str, base: Settings) {
    run_interop_with(backend, variants(&base));
}

/// `SESSION_TYPE=cookie` has no store, prefix or id signer: its variants are permanence, the
/// lifetime and key rotation (`SECRET_KEY_FALLBACKS`).
fn cookie_variants(base: &Settings) -> Vec<(String, Settings)> {
    let with = |pairs: &[(&str, &str)]| {
        let mut settings = base.clone();
        for (name, value) in pairs {
            settings.insert((*name).to_owned(), (*value).to_owned());
        }
        settings
    };
    vec![
        ("defaults".to_owned(), with(&[])),
        (
            "non-permanent+short-lifetime".to_owned(),
            with(&[
                ("SESSION_PERMANENT", "False"),
                ("PERMANENT_SESSION_LIFETIME", "3600"),
            ]),
        ),
        (
            "rotated-key".to_owned(),
            with(&[
                ("SECRET_KEY", "the new key"),
                (
                    "SECRET_KEY_FALLBACKS",
                    "interop cookie secret ☃, an older key",
                ),
            ]),
        ),
    ]
}

fn run_interop_with(backend: &str, variants: Vec<(String, Settings)>) {
    let python = python();
    assert!(
        python.exists(),
        "the Flask interop tests need the Python environment: run scripts/python-env.sh \
         (scripts/test.sh does), or set SATCHEL_INTEROP_PYTHON (looked for {})",
        python.display()
    );
    let started = Instant::now();
    // Flask first: Flask-Session creates the SQL table, and Satchel then works on Flask's table,
    // as when a Flask app's routes move to Rust.
    let prepared: Vec<Json> = variants
        .iter()
        .map(|(name, settings)| json!({"name": name, "url": "", "settings": settings}))
        .collect();
    let output = driver(&python, backend, &prepared, &["--prepare"]);
    assert!(
        output.status.success(),
        "{backend}: building the Flask apps failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut apps = Vec::new();
    let mut described = Vec::new();
    for (name, settings) in variants {
        let app = start_rust_app(&settings).unwrap_or_else(|e| {
            panic!("{backend}/{name}: the Satchel app did not start: {e}\nsettings: {settings:?}")
        });
        described.push(json!({"name": name, "url": app.url, "settings": settings}));
        apps.push(app);
    }
    let output = driver(&python, backend, &described, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Flask interop on {backend} failed ({}):\n{stdout}\n--- driver stderr ---\n{stderr}",
        output.status
    );
    println!("{stdout}");
    drop(apps);
    eprintln!(
        "Flask interop on {backend}: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn driver(
    python: &std::path::Path,
    backend: &str,
    variants: &[Json],
    args: &[&str],
) -> std::process::Output {
    Command::new(python)
        .arg(repo().join("tests/interop/driver.py"))
        .args(args)
        .env("SATCHEL_INTEROP_BACKEND", backend)
        .env(
            "SATCHEL_INTEROP_VARIANTS",
            Json::Array(variants.to_vec()).to_string(),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()))
}

fn settings(pairs: &[(&str, String)]) -> Settings {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

/// SQLAlchemy's driver-qualified URL for a server URL Satchel reads.
fn sqlalchemy_url(url: &str, driver: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("{driver}://{rest}")
}

#[test]
fn flask_interop_sqlite() {
    if skipped("SQLITE") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("sessions.sqlite3");
    let path = path.to_str().expect("UTF-8 temporary path");
    run_interop(
        "sqlite",
        settings(&[
            ("SESSION_TYPE", "sqlalchemy".into()),
            // sqlx: `sqlite://` + absolute path; SQLAlchemy: `sqlite:///` + absolute path.
            ("SESSION_SQLALCHEMY", format!("sqlite://{path}")),
            ("SQLALCHEMY_DATABASE_URI", format!("sqlite:///{path}")),
        ]),
    );
}

#[test]
fn flask_interop_postgres() {
    if skipped("POSTGRES") {
        return;
    }
    let url = env_or(
        "SATCHEL_POSTGRES_URL",
        "postgres://satchel:satchel@127.0.0.1:5432/satchel",
    );
    run_interop(
        "postgres",
        settings(&[
            ("SESSION_TYPE", "sqlalchemy".into()),
            ("SESSION_SQLALCHEMY", url.clone()),
            (
                "SQLALCHEMY_DATABASE_URI",
                sqlalchemy_url(&url, "postgresql+psycopg2"),
            ),
            (
                "SESSION_SQLALCHEMY_TABLE",
                format!("flask_interop_{}", run_tag()),
            ),
        ]),
    );
}

#[test]
fn flask_interop_mysql() {
    if skipped("MYSQL") {
        return;
    }
    let url = env_or(
        "SATCHEL_MYSQL_URL",
        "mysql://satchel:satchel@127.0.0.1:3306/satchel",
    );
    run_interop(
        "mysql",
        settings(&[
            ("SESSION_TYPE", "sqlalchemy".into()),
            ("SESSION_SQLALCHEMY", url.clone()),
            (
                "SQLALCHEMY_DATABASE_URI",
                sqlalchemy_url(&url, "mysql+pymysql"),
            ),
            (
                "SESSION_SQLALCHEMY_TABLE",
                format!("flask_interop_{}", run_tag()),
            ),
        ]),
    );
}

#[test]
fn flask_interop_redis() {
    if skipped("REDIS") {
        return;
    }
    let url = env_or("SATCHEL_REDIS_URL", "redis://127.0.0.1:6379");
    run_interop(
        "redis",
        settings(&[("SESSION_TYPE", "redis".into()), ("SESSION_REDIS", url)]),
    );
}

#[test]
fn flask_interop_memcached() {
    if skipped("MEMCACHED") {
        return;
    }
    let url = env_or("SATCHEL_MEMCACHED_URL", "memcache://127.0.0.1:11211");
    run_interop(
        "memcached",
        settings(&[
            ("SESSION_TYPE", "memcached".into()),
            ("SESSION_MEMCACHED", url),
        ]),
    );
}

#[test]
fn flask_interop_mongodb() {
    if skipped("MONGODB") {
        return;
    }
    let url = env_or("SATCHEL_MONGODB_URL", "mongodb://127.0.0.1:27017");
    run_interop(
        "mongodb",
        settings(&[("SESSION_TYPE", "mongodb".into()), ("SESSION_MONGODB", url)]),
    );
}

#[test]
fn flask_interop_cookie() {
    if skipped("COOKIE") {
        return;
    }
    let base = settings(&[
        ("SESSION_TYPE", "cookie".into()),
        ("SECRET_KEY", "interop cookie secret ☃".into()),
    ]);
    run_interop_with("cookie", cookie_variants(&base));
}
