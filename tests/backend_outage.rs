//! The backend stops while 64 clients use the app, and comes back: every request either
//! succeeds or fails with a clean 5xx within the operation timeout (`SATCHEL_OPERATION_TIMEOUT=1`),
//! nothing panics or hangs, and once the backend is back the same app, never restarted, serves
//! every session its own data again.
//!
//! The app is built as a user builds it (`Satchel::from_config`, `App::wrap`, handlers on
//! `actix_session::Session`). The backend is the real shared server (`SATCHEL_<BACKEND>_URL`,
//! loopback defaults) behind a [`SlowProxy`] that the test takes down (port closed, every
//! connection closed) and brings back up on the same port: a stopped and restarted server as the
//! clients see it, without stopping a server other tests use. Each test keeps its data apart (a
//! table, database or random session ids of its own). `SATCHEL_SKIP_<BACKEND>=1` skips; an
//! unreachable server fails the test.
//!
//! No wall-clock assertion: a 15 s bound per request only turns a hang into a failure.

#[path = "support/slow_proxy.rs"]
mod slow_proxy;

use std::time::Duration;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use futures_util::future::join_all;
use satchel::{AnyBackend, Satchel, SessionConfig, SessionId, Store};
use satchel_core::testkit::skipped;
use slow_proxy::{SlowProxy, host_port, via};
use tokio::time::{Instant, sleep};

/// Concurrent clients, each with a session of its own.
const CLIENTS: usize = 64;
/// How long the clients keep sending requests.
const LOAD: Duration = Duration::from_secs(3);
/// When, into the load, the backend goes down (it stays down until the load ends).
const DOWN_AFTER: Duration = Duration::from_secs(1);
/// Turns a hang into a failure; far above the 1 s operation timeout.
const HANG: Duration = Duration::from_secs(15);
/// Attempts a client gets to succeed with the backend up: to log in on a busy machine, and, once
/// the backend is back, while the pools reconnect. Only a starved machine needs more than a few.
const ATTEMPTS: u32 = 30;
/// A client's pause before it tries again, the same for every client and attempt: the backends
/// must recover under clients that keep retrying, not only under polite ones.
const RETRY_AFTER: Duration = Duration::from_millis(250);

async fn login(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.insert("username", name.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().body(session.get::<String>("username")?.unwrap_or_default()))
}

/// What came back for one request: an actix service error counts as the response the server
/// sends for it.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: String,
    session_id: Option<String>,
}

/// Successful and failed (5xx) requests while the backend went down.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ok: usize,
    failed: usize,
}

/// A config read the way an app reads it, with one-second connect and operation timeouts.
fn config(settings: &[(&str, String)]) -> SessionConfig {
    let settings = settings.to_vec();
    SessionConfig::from_lookup(move |name| {
        settings
            .iter()
            .find(|(setting, _)| *setting == name)
            .map(|(_, value)| value.clone())
            .or_else(|| match name {
                "SATCHEL_OPERATION_TIMEOUT" | "SATCHEL_CONNECT_TIMEOUT" => Some("1".into()),
                _ => None,
            })
    })
    .expect("a valid test config")
}

/// The app for `settings`; fails the test, naming `server` and `url`, when it cannot start.
async fn satchel(server: &str, url: &str, settings: &[(&str, String)]) -> Satchel {
    Satchel::from_config(config(settings))
        .await
        .unwrap_or_else(|e| panic!("{server} at {url} must be running for this test: {e}"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// A lower-case alphanumeric name no other run uses, for a table or database of this test's own.
fn private_name(prefix: &str) -> String {
    let random: String = String::from(SessionId::generate(16).expect("the OS random generator"))
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{prefix}_{}", random.to_ascii_lowercase())
}

/// Whether the request succeeded; fails the test unless it did or failed cleanly with a 5xx.
fn succeeded(reply: &Reply, name: &str, what: &str) -> bool {
    assert!(
        reply.status.is_success() || reply.status.is_server_error(),
        "{name}'s {what} gave {} instead of a success or a 5xx: {}",
        reply.status,
        reply.body
    );
    reply.status.is_success()
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

fn read_as(id: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri("/whoami")
        .insert_header((header::COOKIE, format!("session={id}")))
}

fn login_as(name: &str, id: Option<&str>) -> test::TestRequest {
    let request = test::TestRequest::post().uri(&format!("/login/{name}"));
    match id {
        Some(id) => request.insert_header((header::COOKIE, format!("session={id}"))),
        None => request,
    }
}

/// The scenario, on an app whose backend sits behind `proxy`: log in [`CLIENTS`] sessions; let
/// every client read and rewrite its session in a loop for [`LOAD`] while the backend goes down
/// after [`DOWN_AFTER`]; bring it back; every client reads its own session again, then writes a
/// new value and reads that back.
async fn outage_under_load_fails_cleanly_and_recovers(satchel: &Satchel, proxy: &mut SlowProxy) {
    let app = test::init_service(
        App::new()
            .wrap(satchel.middleware())
            .route("/login/{name}", web::post().to(login))
            .route("/whoami", web::get().to(whoami)),
    )
    .await;
    let app = &app;
    let call = |request: test::TestRequest| async move {
        let outcome = tokio::time::timeout(HANG, test::try_call_service(app, request.to_request()))
            .await
            .expect("a request hung instead of failing within the operation timeout");
        match outcome {
            Ok(response) => {
                let status = response.status();
                let session_id = set_id(&response);
                let body = test::read_body(response).await;
                let body = String::from_utf8_lossy(&body).into_owned();
                Reply {
                    status,
                    body,
                    session_id,
                }
            }
            Err(error) => Reply {
                status: error.error_response().status(),
                body: error.to_string(),
                session_id: None,
            },
        }
    };

    // Healthy: every client logs in and reads its session back. It may take a retry: 64
    // logins at once on a cold pool can outlast the 1 s timeout on a busy machine.
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("user{i}")).collect();
    let (names, call) = (&names, &call);
    let log_in = |i: usize| async move {
        let name = names[i].as_str();
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let login = call(login_as(name, None)).await;
            if succeeded(&login, name, "login") {
                let id = login.session_id.expect("login sets the session cookie");
                let read = call(read_as(&id)).await;
                if succeeded(&read, name, "read") {
                    assert_eq!(read.body, name, "{name} read another session's data");
                    return (id, attempt + 1);
                }
                last = Some(read);
            } else {
                last = Some(login);
            }
            sleep(RETRY_AFTER).await;
        }
        panic!("{name} could not log in with the backend up: {last:?}");
    };
    let (ids, attempts): (Vec<String>, Vec<u32>) =
        join_all((0..CLIENTS).map(log_in)).await.into_iter().unzip();
    eprintln!(
        "logged in: the slowest client in {} attempts",
        attempts.iter().max().unwrap_or(&0)
    );
    let ids = &ids;

    // Under load, the backend goes down. The value written is always the client's own name, so
    // any successful read must return exactly that, whichever writes landed.
    let end = Instant::now() + LOAD;
    let client = |i: usize| async move {
        let (name, id) = (names[i].as_str(), ids[i].as_str());
        let mut tally = Tally::default();
        while Instant::now() < end {
            for (what, request) in [("read", read_as(id)), ("write", login_as(name, Some(id)))] {
                let reply = call(request).await;
                if succeeded(&reply, name, what) {
                    if what == "read" {
                        assert_eq!(reply.body, name, "{name} read another session's data");
                    }
                    tally.ok += 1;
                } else {
                    tally.failed += 1;
                }
            }
            // A client's pause between requests; keeps 64 clients from spinning on refusals.
            sleep(Duration::from_millis(10)).await;
        }
        tally
    };
    let outage = async {
        sleep(DOWN_AFTER).await;
        proxy.down().await;
    };
    let ((), tallies) = tokio::join!(outage, join_all((0..CLIENTS).map(client)));
    let total = tallies.iter().fold(Tally::default(), |sum, t| Tally {
        ok: sum.ok + t.ok,
        failed: sum.failed + t.failed,
    });
    eprintln!("under load with the backend going down: {total:?}");
    assert!(
        total.failed > 0,
        "no request failed: the backend never went down for the app"
    );

    // Back up: every client reads its own session again, then writes and reads a new value.
    proxy
        .up()
        .await
        .expect("the proxy listens on its port again");
    let recover = |i: usize| async move {
        let (name, id) = (names[i].as_str(), ids[i].as_str());
        let again = format!("{name}-again");
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let read = call(read_as(id)).await;
            let write = call(login_as(&again, Some(id))).await;
            let reread = call(read_as(id)).await;
            // Checks every reply (mapped eagerly), not only those up to the first failure.
            let replies = [(&read, "read"), (&write, "write"), (&reread, "read")];
            if replies.map(|(reply, what)| succeeded(reply, name, what)) == [true; 3] {
                // The first read sees the name, or the new value from an earlier attempt
                // whose write landed though its reply failed.
                assert!(
                    read.body == name || read.body == again,
                    "{name} read {:?}",
                    read.body
                );
                assert_eq!(reread.body, again, "{name} read back another value");
                return attempt + 1;
            }
            last = Some((read, write, reread));
            sleep(RETRY_AFTER).await;
        }
        panic!("{name} still failing after the backend came back: {last:?}");
    };
    let attempts = join_all((0..CLIENTS).map(recover)).await;
    eprintln!(
        "back up: every client recovered, the slowest in {} attempts",
        attempts.iter().max().unwrap_or(&0)
    );
}

#[actix_web::test]
async fn a_memcached_outage_under_load_fails_requests_cleanly_and_recovers() {
    if skipped("MEMCACHED") {
        return;
    }
    let url = env_or("SATCHEL_MEMCACHED_URL", "127.0.0.1:11211");
    let target = satchel_memcached::config::parse_servers(&url)
        .expect("SATCHEL_MEMCACHED_URL names a memcached server")
        .remove(0);
    let mut proxy = SlowProxy::start(&target).await.unwrap();
    let satchel = satchel(
        "memcached",
        &url,
        &[
            ("SESSION_TYPE", "memcached".into()),
            ("SESSION_MEMCACHED", proxy.addr().to_string()),
        ],
    )
    .await;
    outage_under_load_fails_cleanly_and_recovers(&satchel, &mut proxy).await;
}

#[actix_web::test]
async fn a_redis_outage_under_load_fails_requests_cleanly_and_recovers() {
    if skipped("REDIS") {
        return;
    }
    let url = env_or("SATCHEL_REDIS_URL", "redis://127.0.0.1:6379");
    let mut proxy = SlowProxy::start(&host_port(&url, 6379)).await.unwrap();
    let satchel = satchel(
        "Redis",
        &url,
        &[
            ("SESSION_TYPE", "redis".into()),
            ("SESSION_REDIS", via(&url, proxy.addr())),
        ],
    )
    .await;
    outage_under_load_fails_cleanly_and_recovers(&satchel, &mut proxy).await;
}

#[actix_web::test]
async fn a_mongodb_outage_under_load_fails_requests_cleanly_and_recovers() {
    if skipped("MONGODB") {
        return;
    }
    let url = env_or("SATCHEL_MONGODB_URL", "mongodb://127.0.0.1:27017");
    let mut proxy = SlowProxy::start(&host_port(&url, 27017)).await.unwrap();
    let through_proxy = via(&url, proxy.addr());
    // directConnection: talk to the proxy only, never to the replica set members the server
    // names (which would bypass the proxy).
    let separator = match through_proxy.split_once("://").map(|(_, rest)| rest) {
        Some(rest) if rest.contains('?') => "&",
        Some(rest) if rest.contains('/') => "?",
        _ => "/?",
    };
    let db = private_name("satchel_outage");
    let satchel = satchel(
        "MongoDB",
        &url,
        &[
            ("SESSION_TYPE", "mongodb".into()),
            (
                "SESSION_MONGODB",
                format!("{through_proxy}{separator}directConnection=true"),
            ),
            ("SESSION_MONGODB_DB", db.clone()),
        ],
    )
    .await;

    outage_under_load_fails_cleanly_and_recovers(&satchel, &mut proxy).await;

    let Some(AnyBackend::Mongodb(mongo)) = satchel.store().map(Store::backend) else {
        panic!("SESSION_TYPE=mongodb gives the MongoDB backend");
    };
    mongo
        .collection()
        .client()
        .database(&db)
        .drop()
        .await
        .unwrap();
}

/// The scenario on `SESSION_TYPE=sqlalchemy` at `url`, in a table of its own, dropped after.
async fn sql_outage_under_load(server: &str, url: &str, default_port: u16) {
    let mut proxy = SlowProxy::start(&host_port(url, default_port))
        .await
        .unwrap();
    let table = private_name("sessions_outage");
    let satchel = satchel(
        server,
        url,
        &[
            ("SESSION_TYPE", "sqlalchemy".into()),
            ("SESSION_SQLALCHEMY", via(url, proxy.addr())),
            ("SESSION_SQLALCHEMY_TABLE", table.clone()),
            ("SATCHEL_PURGE_INTERVAL", "0".into()),
        ],
    )
    .await;

    outage_under_load_fails_cleanly_and_recovers(&satchel, &mut proxy).await;

    let Some(AnyBackend::Sql(sql)) = satchel.store().map(Store::backend) else {
        panic!("SESSION_TYPE=sqlalchemy gives the SQL backend");
    };
    // The name is built from [a-z0-9_] only, so it is safe to splice in.
    let drop = || satchel_sql::sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}"));
    if let Some(pool) = sql.postgres_pool() {
        satchel_sql::sqlx::query(drop())
            .execute(&pool)
            .await
            .unwrap();
    } else if let Some(pool) = sql.mysql_pool() {
        satchel_sql::sqlx::query(drop())
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[actix_web::test]
async fn a_postgres_outage_under_load_fails_requests_cleanly_and_recovers() {
    if skipped("POSTGRES") {
        return;
    }
    let url = env_or(
        "SATCHEL_POSTGRES_URL",
        "postgres://satchel:satchel@127.0.0.1:5432/satchel",
    );
    sql_outage_under_load("PostgreSQL", &url, 5432).await;
}

#[actix_web::test]
async fn a_mysql_outage_under_load_fails_requests_cleanly_and_recovers() {
    if skipped("MYSQL") {
        return;
    }
    let url = env_or(
        "SATCHEL_MYSQL_URL",
        "mysql://satchel:satchel@127.0.0.1:3306/satchel",
    );
    sql_outage_under_load("MariaDB/MySQL", &url, 3306).await;
}
