//! A soak at full speed on Redis and on PostgreSQL: 10,000 distinct sessions, each client
//! checking its own counter on every request, so a lost write or a session mixed up with
//! another fails the test; and the process's memory stays bounded.
//!
//! Runs for `SATCHEL_SOAK_SECONDS` (default 60) per backend; `scripts/test.sh` runs it.

use std::time::{Duration, Instant};

use actix_session::Session;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use satchel::{Satchel, SessionConfig};

const SESSIONS: usize = 10_000;
const CLIENTS: usize = 64;

async fn incr(session: Session, owner: web::Path<usize>) -> actix_web::Result<HttpResponse> {
    let owner = owner.into_inner();
    if let Some(stored) = session.get::<usize>("owner")? {
        if stored != owner {
            return Ok(
                HttpResponse::Conflict().body(format!("session of {stored} served to {owner}"))
            );
        }
    }
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("owner", owner)?;
    session.insert("n", n)?;
    Ok(HttpResponse::Ok().body(n.to_string()))
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

async fn soak(settings: &[(&str, String)]) {
    // The soak checks for lost writes and growing memory, not latency. It shares the machine
    // with the rest of the suite (a test's own PostgreSQL being created, stalled backends), where
    // one statement can wait longer than the 5 s default; failing in time is what the outage and
    // slow-backend tests check. So the timeouts here only turn a hang into a failure.
    let config = SessionConfig::from_lookup(|name| {
        settings
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| match name {
                "SATCHEL_OPERATION_TIMEOUT" | "SATCHEL_CONNECT_TIMEOUT" => Some("30".into()),
                _ => None,
            })
    })
    .unwrap();
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = test::init_service(
        App::new()
            .wrap(satchel.middleware())
            .route("/incr/{owner}", web::post().to(incr)),
    )
    .await;
    let seconds: u64 = std::env::var("SATCHEL_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let app = &app;

    // Each client owns SESSIONS / CLIENTS sessions and cycles through them.
    let clients = (0..CLIENTS).map(|client| async move {
        let owned: Vec<usize> = (client..SESSIONS).step_by(CLIENTS).collect();
        let mut cookies: Vec<Option<String>> = vec![None; owned.len()];
        let mut counts = vec![0u64; owned.len()];
        let mut done = 0u64;
        'run: loop {
            for (i, owner) in owned.iter().enumerate() {
                if Instant::now() >= deadline {
                    break 'run;
                }
                let mut request = test::TestRequest::post().uri(&format!("/incr/{owner}"));
                if let Some(cookie) = &cookies[i] {
                    request = request.insert_header((header::COOKIE, cookie.clone()));
                }
                let response = test::call_service(app, request.to_request()).await;
                let status = response.status();
                if let Some(set) = response.headers().get(header::SET_COOKIE) {
                    let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
                    cookies[i] = Some(pair);
                }
                let body = test::read_body(response).await;
                assert!(status.is_success(), "session {owner}: {status} {body:?}");
                counts[i] += 1;
                assert_eq!(body, counts[i].to_string(), "session {owner} lost a write");
                done += 1;
            }
        }
        done
    });
    let watcher = async {
        tokio::time::sleep(Duration::from_secs(seconds / 4)).await;
        resident_kib()
    };
    let (counts, baseline_kib) = tokio::join!(futures_util::future::join_all(clients), watcher);
    let requests: u64 = counts.iter().sum();
    let end_kib = resident_kib();
    println!(
        "soak {seconds}s: {requests} requests; resident memory {baseline_kib} KiB at 1/4, {end_kib} KiB at the end"
    );
    assert!(
        requests as usize >= CLIENTS,
        "the soak made hardly any requests"
    );
    // Stable memory: a leak per request would grow with the requests made after the first quarter.
    assert!(
        end_kib < baseline_kib + 64 * 1024,
        "resident memory grew from {baseline_kib} KiB to {end_kib} KiB"
    );
}

#[actix_web::test]
async fn soak_redis_ten_thousand_sessions() {
    if satchel_core::testkit::skipped("REDIS") {
        return;
    }
    let url =
        std::env::var("SATCHEL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    soak(&[
        ("SESSION_TYPE", "redis".into()),
        ("SESSION_REDIS", url),
        ("SESSION_KEY_PREFIX", "soak:".into()),
    ])
    .await;
}

#[actix_web::test]
async fn soak_postgres_ten_thousand_sessions() {
    if satchel_core::testkit::skipped("POSTGRES") {
        return;
    }
    let url = std::env::var("SATCHEL_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://satchel:satchel@127.0.0.1:5432/satchel".into());
    soak(&[
        ("SESSION_TYPE", "sqlalchemy".into()),
        ("SESSION_SQLALCHEMY", url),
        ("SESSION_SQLALCHEMY_TABLE", "soak_sessions".into()),
    ])
    .await;
}
