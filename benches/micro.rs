//! Micro benchmark of the per-request work that is Satchel's own (issue 8), with no network
//! and no backend server, so what it times is CPU work in this process.
//!
//! `cargo bench --bench micro` runs it all in about two minutes once built;
//! `cargo bench --bench micro -- codec` runs one group. The load benchmark (`scripts/bench.sh`)
//! shows that the `memory-satchel` server, which does no I/O at all, reaches only 0.45×
//! actix-web's floor; these groups split that per-request cost into its parts so a profiler
//! knows where to look.
//!
//! - `session_id`: [`SessionId::generate`] (every new session: OS random bytes + base64url) and
//!   [`SessionId::parse`] of a valid id and of an invalid one (every request with a cookie:
//!   the store validates the id before it builds a key).
//! - `codec`: [`Codec::encode`] and [`Codec::decode`] in MessagePack and JSON, for a `typical`
//!   session (5 keys, about 200 bytes: what a login page leaves) and a `large` one (100 keys,
//!   about 20 KB). Decoding runs on every request that loads a session, encoding on every
//!   request that changes one. The values look like real sessions: strings, ints, a bool
//!   (`_permanent`) and nested lists. Decoding JSON includes the failed MessagePack attempt
//!   first, as in production (Flask-Session reads MessagePack first).
//! - `store`: [`Store`]'s `SessionStore::load` and `update` over the in-process
//!   [`MemoryBackend`], for the same two sessions. This is the codec plus the bridge between
//!   stored values and the JSON text actix-session hands to handlers (`value.rs`, which has no
//!   public entry point of its own) plus id validation, key building and a map look-up under
//!   a mutex; `store` minus `codec` is roughly the bridge. `update` also times cloning the
//!   state it consumes, which a real request does not do.
//! - `zlib`: compressing the typical session's JSON with a new zlib compressor and with a reset
//!   one (`SESSION_TYPE=cookie` tries to compress every session it writes, as Flask does).
//! - `cookie_session`: Flask's own signed cookie session (`SESSION_TYPE=cookie`): `dumps`,
//!   `loads` and `resign` of the cookie codec, and the `CookieStore`'s `load` and `update` as
//!   actix-session calls them.
//! - `flask_cookie`: itsdangerous' `Signer` (sign; unsign a valid and a tampered value), reading
//!   the id out of a signed Flask-Session cookie value (`SESSION_USE_SIGNER`), writing the
//!   `Set-Cookie` value of a permanent session (with its `Expires` date), and the signed inner
//!   cookie the Flask cookie layer hands actix-session and verifies again on the way out
//!   (the same `cookie` crate calls as `flask_middleware.rs`, which keeps them private).
//! - `request`: one whole request through actix-web's test service
//!   (`test::init_service` + `call_service`, no HTTP parsing or socket) on an established
//!   typical session: `floor` is a constant handler with no session middleware; `actix_cookie`
//!   is actix-session's `SessionMiddleware` (its own encrypted cookie) over Satchel's `Store`
//!   on the memory backend ([`Satchel::actix_middleware`]); `flask_cookie` is Satchel's full
//!   Flask stack ([`Satchel::middleware`]). Each session stack runs `read` (reads the user
//!   name) and `rmw` (reads it, increments a counter, saves), with Satchel's defaults
//!   (permanent sessions, `SESSION_REFRESH_EACH_REQUEST=true`). `cookie_satchel` is
//!   `SESSION_TYPE=cookie` (Flask's signed cookie holds the whole session) and
//!   `cookie_actix_session` actix-session's own `CookieSessionStore`, its reference in the
//!   load benchmark. Requests run back to back
//!   inside one `block_on` per sample (`iter_custom`), so the runtime's entry cost is not
//!   counted; every response is checked to be a 200, so a lost session cannot turn into a
//!   cheap 401.

use std::hint::black_box;
use std::time::{Duration, Instant};

use actix_session::Session;
use actix_session::storage::{SessionKey, SessionStore};
use actix_web::body::MessageBody;
use actix_web::cookie::Key;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::rt::System;
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse, web};
use criterion::{BatchSize, Criterion, criterion_main};
use futures_util::FutureExt as _;
use satchel::flask_cookie::{FLASK_SESSION_SALT, FlaskCookie, Signer};
use satchel::{
    Backend, Codec, CookieStore, MemoryBackend, Satchel, Secret, SerializationFormat,
    SessionConfig, SessionData, SessionId, SessionType, Store,
};
use satchel_core::codec::{PERMANENT_KEY, json_to_value};
use serde_json::{Value as Json, json};

/// A typical session as a login page leaves it (besides `_permanent`): a user name and a CSRF
/// token (strings), a visit counter (int), recently viewed pages (a nested list).
fn typical_entries() -> Vec<(String, Json)> {
    vec![
        ("username".into(), json!("alice.johnson@example.com")),
        (
            "csrf_token".into(),
            json!("6f1c2e9a0b7d4e3f8a5c1d2e3f4a5b6c7d8e9f0a"),
        ),
        ("visits".into(), json!(17)),
        (
            "recent".into(),
            json!([
                ["/orders/1042", 1_764_171_609],
                ["/cart/", 1_764_171_588],
                ["/account/settings", 1_764_171_500],
                ["/products/espresso-machine", 1_764_171_420]
            ]),
        ),
    ]
}

/// A large session (besides `_permanent`): 99 keys cycling through a long string, an int, a
/// bool and a nested list of records.
fn large_entries() -> Vec<(String, Json)> {
    (0..99u32)
        .map(|i| {
            let value = match i % 4 {
                0 => json!(format!(
                    "note {i}: {}",
                    "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(8)
                )),
                1 => json!(i * 7919),
                2 => json!(i % 3 == 0),
                _ => Json::Array(
                    (0..6u32)
                        .map(|j| {
                            json!([
                                format!("/catalogue/section-{i}/product-{j:04}-slug"),
                                i * 100 + j,
                                j % 2 == 0
                            ])
                        })
                        .collect(),
                ),
            };
            (format!("pref_{i:03}"), value)
        })
        .collect()
}

/// The stored session: `_permanent` first, as Flask-Session writes it.
fn session_data(entries: Vec<(String, Json)>) -> SessionData {
    let mut session = SessionData::with_capacity(entries.len() + 1);
    session.insert(PERMANENT_KEY.into(), true.into());
    for (key, value) in entries {
        session.insert(key, json_to_value(value));
    }
    session
}

fn sessions() -> [(&'static str, SessionData); 2] {
    [
        ("typical", session_data(typical_entries())),
        ("large", session_data(large_entries())),
    ]
}

fn memory_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.session_type = SessionType::Memory;
    config
}

fn cookie_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.session_type = SessionType::Cookie;
    config.secret_key = Some(Secret::new("bench secret key"));
    config
}

fn session_id(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_id");
    let valid = SessionId::generate(32).expect("32 bytes is a valid id length");
    let valid = valid.as_str().to_owned();
    // Right length, one character outside base64url: the whole string is scanned.
    let invalid = format!("{}*", &valid[..valid.len() - 1]);
    group.bench_function("generate", |b| {
        b.iter(|| SessionId::generate(black_box(32)))
    });
    group.bench_function("parse_valid", |b| {
        b.iter(|| SessionId::parse(black_box(&valid), 32))
    });
    group.bench_function("parse_invalid", |b| {
        b.iter(|| SessionId::parse(black_box(&invalid), 32))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (format, name) in [
        (SerializationFormat::Msgpack, "msgpack"),
        (SerializationFormat::Json, "json"),
    ] {
        let codec = Codec::new(format);
        for (size, session) in sessions() {
            let bytes = codec.encode(&session).expect("the session encodes");
            assert_eq!(codec.decode(&bytes).expect("it decodes"), session);
            eprintln!(
                "codec: {size} session, {} keys, {name} {} bytes",
                session.len(),
                bytes.len()
            );
            group.bench_function(format!("encode/{name}/{size}"), |b| {
                b.iter(|| codec.encode(black_box(&session)))
            });
            group.bench_function(format!("decode/{name}/{size}"), |b| {
                b.iter(|| codec.decode(black_box(&bytes)))
            });
        }
    }
    group.finish();
}

fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    let config = memory_config();
    let store = Store::new(MemoryBackend::new(), &config);
    let codec = Codec::new(config.serialization_format);
    let ttl = actix_web::cookie::time::Duration::seconds(3600);
    for (size, session) in sessions() {
        let id = SessionId::generate(config.id_length).expect("valid id length");
        let bytes = codec.encode(&session).expect("the session encodes");
        // The memory backend never waits, so its futures are ready on the first poll.
        store
            .backend()
            .store(
                &config.store_key(id.as_str()),
                &bytes,
                Duration::from_secs(3600),
            )
            .now_or_never()
            .expect("memory backend is ready at once")
            .expect("memory backend stores");
        let id = String::from(id);
        let session_key =
            |id: &String| SessionKey::try_from(id.clone()).expect("a Satchel id is a session key");
        let key = session_key(&id);
        let state = store
            .load(&key)
            .now_or_never()
            .expect("memory backend is ready at once")
            .expect("the session loads")
            .expect("the session is there");
        assert_eq!(state.len(), session.len());
        group.bench_function(format!("load/{size}"), |b| {
            b.iter(|| store.load(black_box(&key)).now_or_never())
        });
        group.bench_function(format!("update/{size}"), |b| {
            b.iter_batched(
                || (session_key(&id), state.clone()),
                |(key, state)| store.update(key, state, &ttl).now_or_never(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Why `SESSION_TYPE=cookie` keeps one zlib compressor per thread: Flask tries to compress
/// every session it writes, and what a fresh compressor costs beside a reset one, on the JSON
/// of the typical session (python's `zlib.compress` settings, as `cookie_session.rs` uses).
fn zlib(c: &mut Criterion) {
    use flate2::{Compress, Compression, FlushCompress};
    let mut group = c.benchmark_group("zlib");
    let session: serde_json::Map<String, Json> = typical_entries().into_iter().collect();
    let json = serde_json::to_vec(&session).expect("a JSON object");
    let compress = |deflate: &mut Compress| {
        let mut out = Vec::with_capacity(json.len());
        deflate
            .compress_vec(&json, &mut out, FlushCompress::Finish)
            .map(|_| out)
    };
    group.bench_function("new_compressor", |b| {
        b.iter(|| compress(&mut Compress::new(Compression::new(6), true)))
    });
    let mut reused = Compress::new(Compression::new(6), true);
    group.bench_function("reset_compressor", |b| {
        b.iter(|| {
            reused.reset();
            compress(&mut reused)
        })
    });
    group.finish();
}

fn cookie_session(c: &mut Criterion) {
    let mut group = c.benchmark_group("cookie_session");
    let store = CookieStore::new(&cookie_config()).expect("a valid cookie config");
    let ttl = actix_web::cookie::time::Duration::seconds(3600);
    let now = 1_700_000_000;
    for (size, entries) in [("typical", typical_entries()), ("large", large_entries())] {
        let session: serde_json::Map<String, Json> = entries.into_iter().collect();
        let cookie = store.codec().dumps(&session, now);
        group.bench_function(format!("dumps/{size}"), |b| {
            b.iter(|| store.codec().dumps(black_box(&session), now))
        });
        group.bench_function(format!("loads/{size}"), |b| {
            b.iter(|| store.codec().loads(black_box(&cookie), now + 1))
        });
        group.bench_function(format!("resign/{size}"), |b| {
            b.iter(|| store.codec().resign(black_box(&cookie), now + 1))
        });
        // What actix-session calls: the same, plus the bridge to its JSON-text state. The
        // store reads the clock, so this cookie is signed now.
        let cookie = store
            .codec()
            .dumps(&session, time::OffsetDateTime::now_utc().unix_timestamp());
        let session_key = |cookie: &String| SessionKey::try_from(cookie.clone());
        let Ok(key) = session_key(&cookie) else {
            // Too long for actix-session's session key: not a session a cookie can carry.
            continue;
        };
        let state = store
            .load(&key)
            .now_or_never()
            .expect("the cookie store is ready at once")
            .expect("the cookie loads")
            .expect("the cookie verifies");
        group.bench_function(format!("store_load/{size}"), |b| {
            b.iter(|| store.load(black_box(&key)).now_or_never())
        });
        group.bench_function(format!("store_update/{size}"), |b| {
            b.iter_batched(
                || (session_key(&cookie).ok(), state.clone()),
                |(key, state)| key.map(|key| store.update(key, state, &ttl).now_or_never()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn flask_cookie(c: &mut Criterion) {
    let mut group = c.benchmark_group("flask_cookie");
    let secret = Secret::new("a SECRET_KEY as long as a real one, 32+ chars");
    let signer = Signer::new(std::slice::from_ref(&secret), FLASK_SESSION_SALT);
    let id = SessionId::generate(32).expect("valid id length");
    let id = id.as_str();
    let signed = signer.sign(id);
    // One character of the id changed: the signature no longer verifies.
    let tampered = format!("A{}", &signed[1..]);
    let tampered = if tampered == signed {
        format!("B{}", &signed[1..])
    } else {
        tampered
    };
    assert_eq!(signer.unsign(&signed), Some(id));
    assert_eq!(signer.unsign(&tampered), None);

    let mut config = memory_config();
    config.use_signer = true;
    config.secret_key = Some(secret);
    let cookie = FlaskCookie::new(&config).expect("a signer with a secret key");
    let now = time::OffsetDateTime::now_utc();

    group.bench_function("sign", |b| b.iter(|| signer.sign(black_box(id))));
    group.bench_function("unsign_valid", |b| {
        b.iter(|| signer.unsign(black_box(&signed)).is_some())
    });
    group.bench_function("unsign_tampered", |b| {
        b.iter(|| signer.unsign(black_box(&tampered)).is_some())
    });
    group.bench_function("read_signed_cookie", |b| {
        b.iter(|| {
            cookie
                .session_id(black_box(&signed))
                .map(|id| SessionId::parse(id, 32))
        })
    });
    group.bench_function("set_cookie_permanent", |b| {
        b.iter(|| cookie.set_cookie(black_box(id), true, now))
    });
    group.finish();
}

async fn login(session: Session) -> actix_web::Result<HttpResponse> {
    session.renew();
    for (key, value) in typical_entries() {
        session.insert(key, value)?;
    }
    Ok(HttpResponse::Ok().finish())
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

async fn constant() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

fn session_routes(config: &mut web::ServiceConfig) {
    config
        .route("/login/", web::post().to(login))
        .route("/read/", web::get().to(read))
        .route("/rmw/", web::get().to(read_modify_write));
}

/// Runs `iters` requests back to back and returns the time they took.
async fn drive<S, R, B>(app: &S, iters: u64, request: &impl Fn() -> R) -> Duration
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let start = Instant::now();
    for _ in 0..iters {
        let response = test::call_service(app, request()).await;
        assert!(response.status().is_success(), "{}", response.status());
        black_box(response);
    }
    start.elapsed()
}

/// Logs in and returns the `Cookie` header that carries the new session.
async fn log_in<S, R, B>(app: &S, login: R) -> HeaderValue
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, login).await;
    assert!(response.status().is_success(), "{}", response.status());
    let cookie = response
        .response()
        .cookies()
        .find(|c| c.name() == "session")
        .expect("login sets the session cookie");
    HeaderValue::from_str(&format!("session={}", cookie.value())).expect("a cookie is a header")
}

/// A `GET path` request with `cookie`, built anew for every call as a server would.
macro_rules! get {
    ($path:expr, $cookie:expr) => {{
        let cookie: HeaderValue = $cookie.clone();
        let path: &'static str = $path;
        move || {
            TestRequest::get()
                .uri(path)
                .insert_header((header::COOKIE, cookie.clone()))
                .to_request()
        }
    }};
}

fn request(c: &mut Criterion) {
    let system = System::new();
    let mut group = c.benchmark_group("request");

    let floor = system.block_on(test::init_service(
        App::new().route("/read/", web::get().to(constant)),
    ));
    // The same cookie header as the session stacks get, unread.
    let some_cookie =
        HeaderValue::from_static("session=KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM");
    let request = get!("/read/", some_cookie);
    group.bench_function("floor/read", |b| {
        b.iter_custom(|iters| system.block_on(drive(&floor, iters, &request)))
    });

    // One session stack: log in once, then time read and rmw. A macro, as the stacks'
    // middleware types differ.
    macro_rules! bench_stack {
        ($name:literal, $middleware:expr) => {
            let app = system.block_on(test::init_service(
                App::new().wrap($middleware).configure(session_routes),
            ));
            let cookie = system.block_on(log_in(
                &app,
                TestRequest::post().uri("/login/").to_request(),
            ));
            for path in ["read", "rmw"] {
                let request = get!(if path == "read" { "/read/" } else { "/rmw/" }, cookie);
                group.bench_function(format!("{}/{path}", $name), |b| {
                    b.iter_custom(|iters| system.block_on(drive(&app, iters, &request)))
                });
            }
        };
    }
    let satchel = |config| {
        system
            .block_on(Satchel::from_config(config))
            .expect("an in-process backend")
    };
    bench_stack!("actix_cookie", satchel(memory_config()).actix_middleware());
    bench_stack!("flask_cookie", satchel(memory_config()).middleware());
    // SESSION_TYPE=cookie against the reference of issue 8's `cookie` target.
    bench_stack!("cookie_satchel", satchel(cookie_config()).middleware());
    bench_stack!(
        "cookie_actix_session",
        actix_session::SessionMiddleware::builder(
            actix_session::storage::CookieSessionStore::default(),
            Key::generate(),
        )
        .cookie_name("session".to_owned())
        .build()
    );
    group.finish();
}

fn short() -> Criterion {
    // About 4 s per benchmark, 26 benchmarks: the run takes about two minutes on 2 cores.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

// `criterion_group!` writes an undocumented `pub fn micro`; the module doc above says what it runs.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group! {
        name = micro;
        config = super::short();
        targets = super::session_id, super::codec, super::store, super::zlib, super::cookie_session,
            super::flask_cookie, super::request
    }
}
criterion_main!(group::micro);
