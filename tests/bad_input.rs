//! Hostile or broken input, from the browser and from the store, through a whole actix app.
//!
//! * Cookies that are empty, huge, not UTF-8, wrongly signed, truncated, another app's, or carry
//!   `\r\n`, spaces, `*`, `%`, SQL or NoSQL operator text: a fresh session, never a 500, and
//!   nothing sent to the backend. Proved three ways: a counting [`Backend`] under the store; the
//!   facade on SQLite with its table dropped (any request reaching the backend would now fail);
//!   and the facade on memory by behaviour.
//! * Stored bytes that are truncated MessagePack, JSON that is not a map, a pickle calling
//!   `os.system`, lying length headers, 10 MB of garbage: no session plus a warning, never a
//!   panic or a 500.
//! * Logs never hold a whole session id or cookie value.

#[path = "support/configs.rs"]
mod configs;
use configs::{memory_config, sqlite_config};

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpResponse, test, web};
use satchel::flask_cookie::{FLASK_SESSION_SALT, Signer};
use satchel::{
    AnyBackend, Backend, BackendError, MemoryBackend, Satchel, Secret, SessionConfig, SessionId,
    Store,
};

const LONG: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// The app

async fn login(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.insert("username", name.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().body(session.get::<String>("username")?.unwrap_or_default()))
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().finish()
}

macro_rules! routes {
    ($app:expr) => {
        $app.route("/login/{name}", web::post().to(login))
            .route("/whoami", web::get().to(whoami))
            .route("/logout", web::get().to(logout))
    };
}

/// The Flask-compatible app `Satchel::from_config` builds.
macro_rules! facade_app {
    ($satchel:expr) => {
        test::init_service(routes!(App::new().wrap($satchel.middleware()))).await
    };
}

fn set_cookies(response: &ServiceResponse) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value of the `session` cookie a response sets, unless it deletes it.
fn session_value(response: &ServiceResponse) -> Option<String> {
    set_cookies(response).iter().find_map(|c| {
        let value = c.strip_prefix("session=")?.split(';').next()?;
        (!value.is_empty()).then(|| value.to_owned())
    })
}

fn request(method: &str, uri: &str, cookie: Option<&[u8]>) -> test::TestRequest {
    let mut req = match method {
        "POST" => test::TestRequest::post(),
        _ => test::TestRequest::get(),
    }
    .uri(uri);
    if let Some(cookie) = cookie {
        req = req.insert_header((header::COOKIE, HeaderValue::from_bytes(cookie).unwrap()));
    }
    req
}

fn fresh_id() -> String {
    SessionId::generate(32).unwrap().into()
}

/// Bytes that look random but are the same every run.
fn garbage(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The bad cookies

/// `(what, Cookie header bytes)` for every hostile session cookie. `\r\n` itself cannot be in a
/// header (HTTP forbids it and actix refuses to build it), so it arrives percent-encoded, which
/// actix-web's cookie parser decodes.
fn bad_cookie_headers(signed_with_other_key: &str) -> Vec<(&'static str, Vec<u8>)> {
    let id = fresh_id();
    let mut cases: Vec<(&'static str, String)> = vec![
        ("empty value", "session=".into()),
        ("empty quoted value", "session=\"\"".into()),
        ("name without value", "session".into()),
        ("only separators", ";;; ; =;".into()),
        (
            "huge (9000 chars, base64url alphabet)",
            format!("session={}", "A".repeat(9000)),
        ),
        (
            "huge (8 KB of mixed text)",
            format!("session={}", "x y%*'\"{}".repeat(1000)),
        ),
        ("truncated id", format!("session={}", &id[..42])),
        ("id one char too long", format!("session={id}A")),
        (
            "id with CRLF (percent-encoded)",
            format!("session={}%0D%0A", &id[..41]),
        ),
        (
            "id with CRLF and a header",
            format!("session={}%0D%0ASet-Cookie:%20x=1", &id[..10]),
        ),
        (
            "id with a space",
            format!("session={} {}", &id[..21], &id[22..]),
        ),
        ("id with a star", format!("session={}*", &id[..42])),
        ("all stars", format!("session={}", "*".repeat(43))),
        ("id with a percent", format!("session={}%", &id[..42])),
        (
            "percent-encoded id",
            format!("session=%{:02X}{}", id.as_bytes()[0], &id[1..]),
        ),
        ("SQL injection", "session=' OR 1=1 --".into()),
        (
            "SQL injection, id-length",
            format!("session={}' OR '1'='1", &id[..30]),
        ),
        (
            "SQL statement",
            "session=x'; DROP TABLE sessions; --".into(),
        ),
        ("NoSQL operator", r#"session={"$ne":null}"#.into()),
        (
            "NoSQL operator, percent-encoded",
            "session=%7B%22%24ne%22%3Anull%7D".into(),
        ),
        ("NoSQL regex", r#"session={"$regex":".*"}"#.into()),
        ("Redis/memcached glob", "session=*".into()),
        ("key-prefix traversal", format!("session=../{}", &id[..40])),
        (
            "Flask cookie-session value of another app",
            "session=eyJ1c2VybmFtZSI6ImFsaWNlIn0.ZVPxAA.jDL-dM1aUqc5lQ_lGpED313KSYI".into(),
        ),
        (
            "another app's signed session cookie",
            format!("session={signed_with_other_key}"),
        ),
        ("base64 padding", format!("session={}=", &id[..42])),
        ("NUL percent-encoded", format!("session={}%00", &id[..42])),
    ];
    // Only the second occurrence is valid-looking: werkzeug (and Satchel) read the first.
    cases.push((
        "bad first of two",
        format!("session=' OR 1=1 --; session={id}"),
    ));
    let mut out: Vec<(&'static str, Vec<u8>)> = cases
        .into_iter()
        .map(|(what, text)| (what, text.into_bytes()))
        .collect();
    out.push(("non-UTF-8 value", b"session=\xff\xfe\x80abc".to_vec()));
    let mut mixed = b"other=\xc3\x28; session=".to_vec();
    mixed.extend_from_slice(id.as_bytes());
    out.push(("valid-looking unknown id beside a non-UTF-8 cookie", mixed));
    let mut latin1 = b"session=".to_vec();
    latin1.extend_from_slice(&id.as_bytes()[..40]);
    latin1.extend_from_slice(b"\xe9\xe9\xe9");
    out.push(("Latin-1 bytes in the id", latin1));
    out
}

/// A signed actix-session cookie value from an app with a different key.
fn foreign_actix_cookie() -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(&Key::generate())
        .add(Cookie::new("session", fresh_id()));
    jar.get("session").unwrap().value().to_owned()
}

/// Every bad cookie: GET gives an empty session and 200 with no session cookie; POST /login
/// gives 200 and a brand-new valid id that then works.
async fn bad_cookies_give_fresh_sessions(satchel: &Satchel, extra: &[(&'static str, Vec<u8>)]) {
    let app = facade_app!(satchel);
    let app = &app;
    let mut cases = bad_cookie_headers(&foreign_actix_cookie());
    cases.extend_from_slice(extra);
    for (what, cookie) in &cases {
        let response =
            test::call_service(app, request("GET", "/whoami", Some(cookie)).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        assert_eq!(
            session_value(&response),
            None,
            "{what}: nothing stored, no cookie"
        );
        assert_eq!(test::read_body(response).await, "", "{what}");

        let response = test::call_service(
            app,
            request("POST", "/login/mallory", Some(cookie)).to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        let value = session_value(&response).unwrap_or_else(|| panic!("{what}: new session"));
        let sent = String::from_utf8_lossy(cookie);
        assert!(
            !sent.contains(&value),
            "{what}: the client's value was adopted"
        );
        let response = test::call_service(
            app,
            request(
                "GET",
                "/whoami",
                Some(format!("session={value}").as_bytes()),
            )
            .to_request(),
        )
        .await;
        assert_eq!(test::read_body(response).await, "mallory", "{what}");
    }
}

#[actix_web::test]
async fn bad_cookies_give_a_fresh_session_on_memory() {
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    bad_cookies_give_fresh_sessions(&satchel, &[]).await;
}

#[actix_web::test]
async fn bad_cookies_give_a_fresh_session_on_sqlite() {
    let (config, _dir) = sqlite_config();
    let satchel = Satchel::from_config(config).await.unwrap();
    bad_cookies_give_fresh_sessions(&satchel, &[]).await;
}

/// With `SESSION_USE_SIGNER`: unsigned, wrongly signed and truncated signatures are refused.
#[actix_web::test]
async fn wrongly_signed_cookies_give_a_fresh_session() {
    let mut config = memory_config();
    config.use_signer = true;
    config.secret_key = Some(Secret::new("the real secret_key"));
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = facade_app!(satchel);

    // A signature with `-` or `_` in it, so that its standard-base64 spelling differs (about
    // three logins in five give one; without it that case below would send the valid cookie).
    let mut good = String::new();
    for _ in 0..100 {
        let response =
            test::call_service(&app, request("POST", "/login/alice", None).to_request()).await;
        good = session_value(&response).unwrap();
        if good.rsplit_once('.').unwrap().1.contains(['-', '_']) {
            break;
        }
    }
    let (id, signature) = good.rsplit_once('.').unwrap();
    assert!(signature.contains(['-', '_']), "100 logins without - or _");
    let other = Signer::new(&[Secret::new("another secret_key")], FLASK_SESSION_SALT);
    let extra: Vec<(&'static str, Vec<u8>)> = vec![
        ("bare id of a live session", id.to_owned()),
        ("id with an empty signature", format!("{id}.")),
        ("signed with another key", other.sign(id)),
        ("truncated signature", good[..good.len() - 1].to_owned()),
        (
            "signature of another id",
            format!("{}.{signature}", fresh_id()),
        ),
        ("signature with padding", format!("{good}=")),
        (
            "signature in standard base64",
            format!("{id}.{}", signature.replace('-', "+").replace('_', "/")),
        ),
        ("flipped last signature char", {
            let mut v = good[..good.len() - 1].to_owned();
            v.push(if good.ends_with('A') { 'B' } else { 'A' });
            v
        }),
        ("signature twice", format!("{good}.{signature}")),
        ("id only the signature", signature.to_owned()),
    ]
    .into_iter()
    .map(|(what, value)| (what, format!("session={value}").into_bytes()))
    .collect();
    bad_cookies_give_fresh_sessions(&satchel, &extra).await;

    // The real cookie still works: refusals did not break the session.
    let response = test::call_service(
        &app,
        request("GET", "/whoami", Some(format!("session={good}").as_bytes())).to_request(),
    )
    .await;
    assert_eq!(test::read_body(response).await, "alice");
}

// ---------------------------------------------------------------------------------------------
// Proof that nothing reaches the backend

/// Every call a backend receives, with its key.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<(&'static str, String)>>>);

impl Calls {
    fn note(&self, operation: &'static str, key: &str) {
        self.0.lock().unwrap().push((operation, key.to_owned()));
    }

    fn take(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A real [`MemoryBackend`] that records every call made to it.
struct Counting {
    inner: MemoryBackend,
    calls: Calls,
}

impl Backend for Counting {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.calls.note("load", key);
        self.inner.load(key).await
    }

    async fn load_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        self.calls.note("load_and_touch", key);
        self.inner.load_and_touch(key, ttl).await
    }

    async fn insert(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        self.calls.note("insert", key);
        self.inner.insert(key, value, ttl).await
    }

    async fn store(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        self.calls.note("store", key);
        self.inner.store(key, value, ttl).await
    }

    async fn replace(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        self.calls.note("replace", key);
        self.inner.replace(key, value, ttl).await
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        self.calls.note("touch", key);
        self.inner.touch(key, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.calls.note("delete", key);
        self.inner.delete(key).await
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        self.calls.note("purge_expired", "");
        self.inner.purge_expired().await
    }

    fn name(&self) -> &'static str {
        "counting-memory"
    }
}

/// The ids a cookie can carry into the store. These are what the browser's cookie holds after
/// actix-session's own signature, so they reach `Store` exactly as written.
fn hostile_session_keys() -> Vec<(&'static str, String)> {
    let id = fresh_id();
    vec![
        ("empty", String::new()),
        ("truncated id", id[..42].to_owned()),
        ("id one char too long", format!("{id}A")),
        ("huge id (4000 chars)", "A".repeat(4000)),
        ("huge id (9000 chars)", "A".repeat(9000)),
        ("CRLF", format!("{}\r\n", &id[..41])),
        (
            "CRLF and a command",
            format!("{}\r\nFLUSHALL\r\n", &id[..20]),
        ),
        ("space", format!("{} {}", &id[..21], &id[22..])),
        ("star", format!("{}*", &id[..42])),
        ("all stars", "*".repeat(43)),
        ("percent", format!("{}%", &id[..42])),
        ("SQL injection", "' OR 1=1 --".into()),
        (
            "SQL injection, id-length",
            format!("{}' OR '1'='1", &id[..30]),
        ),
        ("NoSQL operator", r#"{"$ne":null}"#.into()),
        ("NoSQL regex", r#"{"$regex":".*"}"#.into()),
        ("glob", "*".into()),
        ("NUL", format!("{}\0", &id[..42])),
        (
            "non-ASCII of the right byte length",
            format!("{}é", &id[..41]),
        ),
        ("prefix traversal", format!("../{}", &id[..40])),
    ]
}

/// actix-session's signed cookie holding `session_key`, as a `Cookie` header.
fn actix_cookie_header(key: &Key, session_key: &str) -> Vec<u8> {
    let mut jar = CookieJar::new();
    jar.signed_mut(key)
        .add(Cookie::new("session", session_key.to_owned()));
    let cookie = jar.get("session").unwrap().clone();
    cookie.encoded().stripped().to_string().into_bytes()
}

#[actix_web::test]
async fn the_store_sends_nothing_to_the_backend_for_an_invalid_id() {
    let calls = Calls::default();
    let backend = Counting {
        inner: MemoryBackend::new(),
        calls: calls.clone(),
    };
    let store = Store::new(backend, &memory_config());
    let key = Key::from(&[7u8; 64]);
    let app = test::init_service(routes!(
        App::new().wrap(
            SessionMiddleware::builder(store.clone(), key.clone())
                .cookie_name("session".into())
                .cookie_content_security(CookieContentSecurity::Signed)
                .session_lifecycle(PersistentSession::default())
                .build(),
        )
    ))
    .await;

    // The counting backend sees calls for a well-formed id: the proof below is not vacuous.
    let id = fresh_id();
    let response = test::call_service(
        &app,
        request("GET", "/whoami", Some(&actix_cookie_header(&key, &id))).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.take().len(), 1, "a well-formed id is looked up once");

    for (what, session_key) in hostile_session_keys() {
        let cookie = actix_cookie_header(&key, &session_key);
        let response =
            test::call_service(&app, request("GET", "/whoami", Some(&cookie)).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        assert_eq!(test::read_body(response).await, "", "{what}");
        assert_eq!(calls.take(), [], "{what}: nothing may reach the backend");

        for uri in ["/logout", "/whoami"] {
            let response =
                test::call_service(&app, request("GET", uri, Some(&cookie)).to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "{what} {uri}");
            assert_eq!(
                calls.take(),
                [],
                "{what} {uri}: nothing may reach the backend"
            );
        }

        // A login with it stores under a fresh, valid id only.
        let response = test::call_service(
            &app,
            request("POST", "/login/mallory", Some(&cookie)).to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        let seen = calls.take();
        assert!(!seen.is_empty(), "{what}: the login was saved");
        for (operation, backend_key) in seen {
            assert_eq!(operation, "insert", "{what}: only a fresh insert");
            let new_id = backend_key.strip_prefix("session:").unwrap();
            assert!(SessionId::parse(new_id, 32).is_ok(), "{what}: {operation}");
            assert_ne!(new_id, session_key, "{what}");
        }
    }
}

/// The SQLite table is dropped after start-up, so any request that reaches the backend fails
/// with 500; every bad cookie still gets 200, so none of them reached it.
#[actix_web::test]
async fn bad_cookies_never_reach_the_sql_backend() {
    let (config, _dir) = sqlite_config();
    let table = config.sqlalchemy_table.clone();
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = facade_app!(satchel);
    let response =
        test::call_service(&app, request("POST", "/login/alice", None).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let good = session_value(&response).unwrap();

    let Some(AnyBackend::Sql(sql)) = satchel.store().map(Store::backend) else {
        panic!("SESSION_TYPE=sqlalchemy gives the SQL backend");
    };
    let pool = sql.sqlite_pool().expect("a SQLite URL gives a SQLite pool");
    assert_eq!(table, "sessions", "Flask-Session's default table");
    satchel_sql::sqlx::query("DROP TABLE sessions")
        .execute(pool)
        .await
        .unwrap();

    // Control: a cookie that does reach the backend now fails (the service error is what
    // actix-web's server turns into a 500).
    let status = match test::try_call_service(
        &app,
        request("GET", "/whoami", Some(format!("session={good}").as_bytes())).to_request(),
    )
    .await
    {
        Ok(response) => response.status(),
        Err(error) => error.error_response().status(),
    };
    assert!(
        status.is_server_error(),
        "with its table gone the backend fails: {status}"
    );

    for (what, cookie) in bad_cookie_headers(&foreign_actix_cookie()) {
        let response =
            test::call_service(&app, request("GET", "/whoami", Some(&cookie)).to_request()).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{what}: reached the backend (or failed otherwise)"
        );
        assert_eq!(test::read_body(response).await, "", "{what}");
    }
}

/// A Cookie header carrying UTF-8 in some other cookie (werkzeug reads such headers) must not
/// cost the user their session.
#[actix_web::test]
async fn a_non_ascii_neighbour_cookie_keeps_the_session() {
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    let app = facade_app!(satchel);
    let response =
        test::call_service(&app, request("POST", "/login/alice", None).to_request()).await;
    let id = session_value(&response).unwrap();
    let header = format!("pref=café; session={id}");
    let response = test::call_service(
        &app,
        request("GET", "/whoami", Some(header.as_bytes())).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(test::read_body(response).await, "alice");
}

// ---------------------------------------------------------------------------------------------
// Log capture

/// A tracing subscriber for this thread that writes plain text into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Bad stored data

/// `pickle.dumps` of `os.system(command)` (protocol 2), optionally inside a session dict: the
/// classic remote-code-execution pickle.
fn os_system_pickle(command: &str, in_dict: bool) -> Vec<u8> {
    let mut out = b"\x80\x02".to_vec();
    if in_dict {
        out.extend_from_slice(b"}X\x04\x00\x00\x00user");
    }
    out.extend_from_slice(b"cposix\nsystem\nX");
    out.extend_from_slice(&u32::try_from(command.len()).unwrap().to_le_bytes());
    out.extend_from_slice(command.as_bytes());
    out.extend_from_slice(b"\x85R");
    if in_dict {
        out.push(b's');
    }
    out.push(b'.');
    out
}

/// The same through protocol 4's `STACK_GLOBAL` with `builtins.eval`.
fn eval_pickle(expression: &str) -> Vec<u8> {
    let mut out = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93X".to_vec();
    out.extend_from_slice(&u32::try_from(expression.len()).unwrap().to_le_bytes());
    out.extend_from_slice(expression.as_bytes());
    out.extend_from_slice(b"\x85R.");
    out
}

/// `(what, stored bytes)` that are no session.
fn corrupt_values(canary: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    let valid = b"\x82\xaa_permanent\xc3\xa8username\xa5alice".to_vec();
    let touch = format!("touch {}", canary.display());
    vec![
        ("empty", Vec::new()),
        ("truncated MessagePack", valid[..valid.len() - 2].to_vec()),
        ("MessagePack cut after the map header", valid[..1].to_vec()),
        (
            "MessagePack with trailing bytes",
            [valid.as_slice(), b"\x00"].concat(),
        ),
        ("MessagePack array", b"\x93\x01\x02\x03".to_vec()),
        (
            "MessagePack map with an integer key",
            b"\x81\x01\xa1x".to_vec(),
        ),
        ("MessagePack string", b"\xa5alice".to_vec()),
        ("MessagePack nil", b"\xc0".to_vec()),
        (
            "bin32 claiming 4 GiB",
            b"\x81\xa1x\xc6\xff\xff\xff\xff".to_vec(),
        ),
        (
            "str32 claiming 4 GiB",
            b"\x81\xa1x\xdb\xff\xff\xff\xff".to_vec(),
        ),
        (
            "array32 claiming 4 G items",
            b"\x81\xa1x\xdd\xff\xff\xff\xff".to_vec(),
        ),
        (
            "map32 claiming 4 G entries",
            b"\xdf\xff\xff\xff\xff".to_vec(),
        ),
        ("nesting 100 000 deep", {
            let mut v = b"\x81\xa1x".to_vec();
            v.extend(std::iter::repeat_n(0x91u8, 100_000));
            v
        }),
        ("JSON array", b"[1, 2, 3]".to_vec()),
        ("JSON string", b"\"alice\"".to_vec()),
        ("JSON number", b"42".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("truncated JSON", b"{\"username\": \"ali".to_vec()),
        ("JSON nested 100 000 deep", {
            let mut v = b"{\"x\":".to_vec();
            v.extend(std::iter::repeat_n(b'[', 100_000));
            v
        }),
        ("pickle calling os.system", os_system_pickle(&touch, false)),
        (
            "session pickle calling os.system",
            os_system_pickle(&touch, true),
        ),
        (
            "pickle calling builtins.eval",
            eval_pickle(&format!("open('{}','w')", canary.display())),
        ),
        (
            "truncated pickle",
            b"\x80\x02}q\x00X\x01\x00\x00\x00nq\x01K".to_vec(),
        ),
        ("pickle of a list", b"\x80\x02]q\x00K\x01a.".to_vec()),
        ("garbage", garbage(4096)),
        ("10 MB of garbage", garbage(10 << 20)),
        ("10 MB of zero bytes", vec![0; 10 << 20]),
    ]
}

async fn corrupt_entries_give_no_session(config: SessionConfig) {
    let captured = Captured::default();
    let _guard = captured.install();
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = facade_app!(satchel);
    let backend = satchel.store().unwrap().backend();
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("pwned");

    for (what, bytes) in corrupt_values(&canary) {
        let id = fresh_id();
        backend
            .store(&format!("session:{id}"), &bytes, LONG)
            .await
            .unwrap_or_else(|e| panic!("{what}: storing the corrupt value: {e}"));
        captured.clear();
        let cookie = format!("session={id}");
        let response = test::call_service(
            &app,
            request("GET", "/whoami", Some(cookie.as_bytes())).to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        assert_eq!(test::read_body(response).await, "", "{what}");
        let log = captured.text();
        // Flask-Session reads an empty value as a miss, which is no warning.
        assert!(
            bytes.is_empty() || log.lines().any(|l| l.contains(" WARN ")),
            "{what}: a corrupt entry is logged as a warning; log was:\n{log}"
        );

        // Writing to it starts a new session under a new id.
        let response = test::call_service(
            &app,
            request("POST", "/login/bob", Some(cookie.as_bytes())).to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        let new = session_value(&response).unwrap();
        assert_ne!(new, id, "{what}");
        let response = test::call_service(
            &app,
            request("GET", "/whoami", Some(format!("session={new}").as_bytes())).to_request(),
        )
        .await;
        assert_eq!(test::read_body(response).await, "bob", "{what}");
    }
    assert!(!canary.exists(), "a stored pickle ran a command");
}

#[actix_web::test]
async fn corrupt_stored_values_give_no_session_and_a_warning_on_memory() {
    corrupt_entries_give_no_session(memory_config()).await;
}

#[actix_web::test]
async fn corrupt_stored_values_give_no_session_and_a_warning_on_sqlite() {
    let (config, _dir) = sqlite_config();
    corrupt_entries_give_no_session(config).await;
}

/// A well-formed but 10 MB session, beyond `SATCHEL_MAX_SESSION_SIZE` (1 MiB by default): no
/// session plus a warning, as for corrupt bytes. Serving it would hand every request 10 MB, and
/// the next change to it could never be saved (the size limit refuses it on write).
#[actix_web::test]
async fn a_stored_session_over_the_size_limit_gives_no_session_and_a_warning() {
    let captured = Captured::default();
    let _guard = captured.install();
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    let app = facade_app!(satchel);
    let id = fresh_id();
    let mut value = b"\x81\xa8username\xdb".to_vec();
    let name = "a".repeat(10 << 20);
    value.extend_from_slice(&u32::try_from(name.len()).unwrap().to_be_bytes());
    value.extend_from_slice(name.as_bytes());
    assert!(value.len() > satchel.config().max_session_size);
    satchel
        .store()
        .unwrap()
        .backend()
        .store(&format!("session:{id}"), &value, LONG)
        .await
        .unwrap();
    captured.clear();
    let response = test::call_service(
        &app,
        request("GET", "/whoami", Some(format!("session={id}").as_bytes())).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let served = test::read_body(response).await.len();
    let log = captured.text();
    assert_eq!(served, 0, "a 10 MB session was served");
    assert!(log.contains(" WARN "), "no warning; log was:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// Secrets in logs

async fn logs_never_hold_ids_or_cookie_values(mut config: SessionConfig) {
    config.use_signer = true;
    config.secret_key = Some(Secret::new("log test secret_key"));
    let captured = Captured::default();
    let _guard = captured.install();
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = facade_app!(satchel);
    let mut secrets: Vec<String> = Vec::new();

    // Login, then use the session.
    let response =
        test::call_service(&app, request("POST", "/login/alice", None).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let value = session_value(&response).unwrap();
    let id = value.rsplit_once('.').unwrap().0.to_owned();
    let cookie = format!("session={value}");
    let response = test::call_service(
        &app,
        request("GET", "/whoami", Some(cookie.as_bytes())).to_request(),
    )
    .await;
    assert_eq!(test::read_body(response).await, "alice");
    secrets.extend([value.clone(), id.clone()]);

    // A session whose stored bytes are corrupt.
    let corrupt_id = fresh_id();
    satchel
        .store()
        .unwrap()
        .backend()
        .store(&format!("session:{corrupt_id}"), b"\x82\xaa_perm", LONG)
        .await
        .unwrap();
    let signer = Signer::new(&[Secret::new("log test secret_key")], FLASK_SESSION_SALT);
    let corrupt_value = signer.sign(&corrupt_id);
    let response = test::call_service(
        &app,
        request(
            "GET",
            "/whoami",
            Some(format!("session={corrupt_value}").as_bytes()),
        )
        .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    secrets.extend([corrupt_id, corrupt_value]);

    // A tampered cookie: a live id with a forged signature.
    let tampered = format!("{id}.AAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let response = test::call_service(
        &app,
        request(
            "GET",
            "/whoami",
            Some(format!("session={tampered}").as_bytes()),
        )
        .to_request(),
    )
    .await;
    assert_eq!(test::read_body(response).await, "");
    secrets.push(tampered);

    // Malformed ids and the logout.
    for bad in ["' OR 1=1 --", &format!("{}*", &id[..42])] {
        let response = test::call_service(
            &app,
            request("GET", "/whoami", Some(format!("session={bad}").as_bytes())).to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = test::call_service(
        &app,
        request("GET", "/logout", Some(cookie.as_bytes())).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    let log = captured.text();
    assert!(
        log.contains(" WARN "),
        "the capture works: the corrupt entry was logged; log was:\n{log}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log holds a whole session id or cookie value ({}…):\n{log}",
            &secret[..6]
        );
    }
}

#[actix_web::test]
async fn logs_never_hold_a_whole_session_id_or_cookie_on_memory() {
    logs_never_hold_ids_or_cookie_values(memory_config()).await;
}

#[actix_web::test]
async fn logs_never_hold_a_whole_session_id_or_cookie_on_sqlite() {
    let (config, _dir) = sqlite_config();
    logs_never_hold_ids_or_cookie_values(config).await;
}
