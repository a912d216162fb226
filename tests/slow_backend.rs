//! A slow or stalled backend, through a whole app built by `Satchel::from_config`: the store's
//! operation timeout (`SATCHEL_OPERATION_TIMEOUT=1`) fires and the request fails cleanly with a
//! 5xx instead of hanging; when the backend answers again, the same app serves requests again,
//! each session with its own data (a reply that arrived late is never taken for another's).
//!
//! The backend is the real server (memcached: `SATCHEL_MEMCACHED_URL`, PostgreSQL:
//! `SATCHEL_POSTGRES_URL`, loopback defaults) behind [`SlowProxy`]. `SATCHEL_SKIP_MEMCACHED=1` /
//! `SATCHEL_SKIP_POSTGRES=1` skip; an unreachable server fails the test.
//!
//! No wall-clock assertion: a 30 s outer timeout only turns a hang into a failure.

#[path = "support/slow_proxy.rs"]
mod slow_proxy;

use std::time::Duration;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use satchel::{AnyBackend, Satchel, SessionConfig, SessionId, Store};
use satchel_core::testkit::skipped;
use slow_proxy::{SlowProxy, host_port, via};

/// Turns a hang into a failure; far above the 1 s operation timeout.
const HANG: Duration = Duration::from_secs(30);

async fn login(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.insert("username", name.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().body(session.get::<String>("username")?.unwrap_or_default()))
}

macro_rules! app {
    ($satchel:expr) => {
        test::init_service(
            App::new()
                .wrap($satchel.middleware())
                .route("/login/{name}", web::post().to(login))
                .route("/whoami", web::get().to(whoami)),
        )
        .await
    };
}

/// One request: `(status, body, session id set)`. An actix service error counts as the response
/// the server sends for it. Fails the test if the request hangs.
macro_rules! call {
    ($app:expr, $req:expr) => {{
        let outcome = tokio::time::timeout(HANG, test::try_call_service(&$app, $req.to_request()))
            .await
            .expect("the request hung instead of failing within the operation timeout");
        match outcome {
            Ok(response) => {
                let status = response.status();
                let id = set_id(&response);
                let body = test::read_body(response).await;
                (status, String::from_utf8_lossy(&body).into_owned(), id)
            }
            Err(error) => (error.error_response().status(), error.to_string(), None),
        }
    }};
}

fn set_id(response: &actix_web::dev::ServiceResponse) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let value = c.strip_prefix("session=")?.split(';').next()?;
            (!value.is_empty()).then(|| value.to_owned())
        })
}

fn get(uri: &str, id: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(uri)
        .insert_header((header::COOKIE, format!("session={id}")))
}

fn post(uri: &str) -> test::TestRequest {
    test::TestRequest::post().uri(uri)
}

fn post_as(uri: &str, id: &str) -> test::TestRequest {
    post(uri).insert_header((header::COOKIE, format!("session={id}")))
}

/// A config read the way an app reads it, with a one-second operation timeout.
fn config(settings: &[(&str, String)]) -> SessionConfig {
    let settings = settings.to_vec();
    SessionConfig::from_lookup(move |name| {
        settings
            .iter()
            .find(|(setting, _)| *setting == name)
            .map(|(_, value)| value.clone())
            .or_else(|| match name {
                "SATCHEL_OPERATION_TIMEOUT" => Some("1".into()),
                "SATCHEL_CONNECT_TIMEOUT" => Some("1".into()),
                _ => None,
            })
    })
    .expect("a valid test config")
}

/// The fault scenario on an app whose backend sits behind `proxy`.
async fn stalls_fail_cleanly_and_the_app_recovers(satchel: &Satchel, proxy: &SlowProxy) {
    let app = app!(satchel);

    // Healthy: log in, read back.
    let (status, _, alice) = call!(app, post("/login/alice"));
    assert_eq!(status, StatusCode::OK);
    let alice = alice.expect("login sets the session cookie");
    assert!(SessionId::parse(&alice, 32).is_ok());
    assert_eq!(call!(app, get("/whoami", &alice)).1, "alice");

    // Slow but within the timeout: served.
    proxy.delay(Duration::from_millis(100));
    let (status, body, _) = call!(app, get("/whoami", &alice));
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));

    // Stalled: every kind of request fails with a 5xx (after the operation timeout) and returns.
    proxy.stall();
    for _ in 0..3 {
        let (status, body, _) = call!(app, get("/whoami", &alice));
        assert!(
            status.is_server_error(),
            "read while stalled: {status} {body}"
        );
        let (status, body, _) = call!(app, post("/login/bob"));
        assert!(
            status.is_server_error(),
            "new session while stalled: {status} {body}"
        );
        let (status, body, _) = call!(app, post_as("/login/carol", &alice));
        assert!(
            status.is_server_error(),
            "update while stalled: {status} {body}"
        );
    }

    // Slower than the timeout: the same clean failure.
    proxy.delay(Duration::from_secs(3));
    let (status, body, _) = call!(app, get("/whoami", &alice));
    assert!(
        status.is_server_error(),
        "read slower than the timeout: {status} {body}"
    );

    // Resumed: the same app serves again without a restart, and every session reads its own
    // data. Replies already delayed still take their 3 s, and the SQL pool lets connects begun
    // while the server was slow finish (within SATCHEL_CONNECT_TIMEOUT) rather than abandon
    // them, so the first requests may still fail cleanly for a few seconds.
    proxy.resume();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, body, _) = call!(app, get("/whoami", &alice));
        if (status, body.as_str()) == (StatusCode::OK, "alice") {
            break;
        }
        assert!(
            status.is_server_error() && attempts < 20,
            "request {attempts} after resume: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _, bob) = call!(app, post("/login/bob"));
    assert_eq!(status, StatusCode::OK);
    let bob = bob.expect("login sets the session cookie");
    for _ in 0..20 {
        assert_eq!(call!(app, get("/whoami", &alice)).1, "alice");
        assert_eq!(call!(app, get("/whoami", &bob)).1, "bob");
    }
}

#[actix_web::test]
async fn a_stalled_memcached_fails_requests_cleanly_and_recovers() {
    if skipped("MEMCACHED") {
        return;
    }
    let url = std::env::var("SATCHEL_MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".into());
    let target = satchel_memcached::config::parse_servers(&url)
        .expect("SATCHEL_MEMCACHED_URL names a memcached server")
        .remove(0);
    let proxy = SlowProxy::start(&target).await.unwrap();
    let satchel = Satchel::from_config(config(&[
        ("SESSION_TYPE", "memcached".into()),
        ("SESSION_MEMCACHED", proxy.addr().to_string()),
    ]))
    .await
    .unwrap_or_else(|e| panic!("memcached at {target} must be running for this test: {e}"));
    stalls_fail_cleanly_and_the_app_recovers(&satchel, &proxy).await;
}

#[actix_web::test]
async fn a_stalled_postgres_fails_requests_cleanly_and_recovers() {
    if skipped("POSTGRES") {
        return;
    }
    let url = std::env::var("SATCHEL_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://satchel:satchel@127.0.0.1:5432/satchel".into());
    let proxy = SlowProxy::start(&host_port(&url, 5432)).await.unwrap();
    // A table of its own, so parallel runs never meet.
    let table: String = String::from(SessionId::generate(16).unwrap())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    let table = format!("sessions_slow_{table}");
    let satchel = Satchel::from_config(config(&[
        ("SESSION_TYPE", "sqlalchemy".into()),
        ("SESSION_SQLALCHEMY", via(&url, proxy.addr())),
        ("SESSION_SQLALCHEMY_TABLE", table.clone()),
        ("SATCHEL_PURGE_INTERVAL", "0".into()),
        ("SATCHEL_POOL_SIZE", "4".into()),
    ]))
    .await
    .unwrap_or_else(|e| panic!("PostgreSQL at {url} must be running for this test: {e}"));

    stalls_fail_cleanly_and_the_app_recovers(&satchel, &proxy).await;

    let Some(AnyBackend::Sql(sql)) = satchel.store().map(Store::backend) else {
        panic!("SESSION_TYPE=sqlalchemy gives the SQL backend");
    };
    let pool = sql
        .postgres_pool()
        .expect("a PostgreSQL URL gives a PostgreSQL pool");
    // The name is built above from [a-z0-9] only, so it is safe to splice in.
    satchel_sql::sqlx::query(satchel_sql::sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

#[actix_web::test]
async fn urls_are_pointed_at_the_proxy() {
    let addr: std::net::SocketAddr = "127.0.0.1:4242".parse().unwrap();
    assert_eq!(
        via(
            "postgres://satchel:satchel@127.0.0.1:5432/satchel?sslmode=disable",
            addr
        ),
        "postgres://satchel:satchel@127.0.0.1:4242/satchel?sslmode=disable"
    );
    assert_eq!(via("postgres://db/x", addr), "postgres://127.0.0.1:4242/x");
    assert_eq!(
        host_port("postgres://u:p@10.0.0.1:6543/x", 5432),
        "10.0.0.1:6543"
    );
    assert_eq!(host_port("postgres://u:p@db/x", 5432), "db:5432");
}
