//! Through the whole actix stack on Redis: a read-only request costs one round trip of two
//! read commands (`GET` and `PTTL`, pipelined; no write while the expiry is fresh) and a
//! request that changes the session one more command, its `SET`. Counted with `INFO
//! commandstats` on a private redis-server, so other tests' traffic cannot disturb the count.

use std::collections::BTreeMap;

use actix_session::Session;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use satchel::{Satchel, SessionConfig};
use satchel_redis::testing::{CommandCounter, RedisServer};

async fn login(session: Session) -> actix_web::Result<HttpResponse> {
    session.insert("username", "alice")?;
    Ok(HttpResponse::Ok().finish())
}

async fn read(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().body(session.get::<String>("username")?.unwrap_or_default()))
}

async fn count_visit(session: Session) -> actix_web::Result<HttpResponse> {
    let visits = session.get::<i64>("visits")?.unwrap_or(0);
    session.insert("visits", visits + 1)?;
    Ok(HttpResponse::Ok().finish())
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

#[actix_web::test]
async fn read_only_request_reads_only_and_changing_request_adds_one_set() {
    if satchel_core::testkit::skipped("REDIS") {
        return;
    }
    let server = RedisServer::start();
    let url = server.url();
    let config = SessionConfig::from_lookup(|name| match name {
        "SESSION_TYPE" => Some("redis".into()),
        "SESSION_REDIS" => Some(url.clone()),
        _ => None,
    })
    .unwrap();
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = test::init_service(
        App::new()
            .wrap(satchel.middleware())
            .route("/login", web::post().to(login))
            .route("/read", web::get().to(read))
            .route("/visit", web::post().to(count_visit)),
    )
    .await;
    let mut counter = CommandCounter::new(&server.url()).await;

    let response =
        test::call_service(&app, test::TestRequest::post().uri("/login").to_request()).await;
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // Several rounds, so each of the backend's shared connections serves one.
    for round in 0..6 {
        counter.reset().await;
        let request = test::TestRequest::get()
            .uri("/read")
            .insert_header((header::COOKIE, cookie.clone()))
            .to_request();
        assert_eq!(test::call_and_read_body(&app, request).await, "alice");
        let counts = counter.counts().await;
        assert_eq!(
            total(&counts),
            2,
            "read-only request, round {round}: {counts:?}"
        );
        assert_eq!(
            (counts.get("get"), counts.get("pttl")),
            (Some(&1), Some(&1)),
            "a sliding read of a fresh session is GET + PTTL, no write: {counts:?}"
        );

        counter.reset().await;
        let request = test::TestRequest::post()
            .uri("/visit")
            .insert_header((header::COOKIE, cookie.clone()))
            .to_request();
        assert!(
            test::call_service(&app, request)
                .await
                .status()
                .is_success()
        );
        let counts = counter.counts().await;
        assert_eq!(
            total(&counts),
            3,
            "changing request, round {round}: {counts:?}"
        );
        assert_eq!(counts.get("set"), Some(&1), "{counts:?}");
    }
}
