//! Sessions saved before a Redis restart (with persistence) are there after it, through the
//! same running app, which reconnects by itself.

use actix_session::Session;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use satchel::{Satchel, SessionConfig};
use satchel_redis::testing::RedisServer;

async fn login(session: Session) -> actix_web::Result<HttpResponse> {
    session.insert("username", "alice")?;
    Ok(HttpResponse::Ok().finish())
}

async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().body(session.get::<String>("username")?.unwrap_or_default()))
}

#[actix_web::test]
async fn sessions_survive_a_redis_restart_with_persistence() {
    if satchel_core::testkit::skipped("REDIS") {
        return;
    }
    let mut server = RedisServer::start_persistent();
    let url = server.url();
    let config = SessionConfig::from_lookup(|name| match name {
        "SESSION_TYPE" => Some("redis".into()),
        "SESSION_REDIS" => Some(url.clone()),
        "SATCHEL_OPERATION_TIMEOUT" => Some("2".into()),
        _ => None,
    })
    .unwrap();
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = test::init_service(
        App::new()
            .wrap(satchel.middleware())
            .route("/login", web::post().to(login))
            .route("/whoami", web::get().to(whoami)),
    )
    .await;
    let response =
        test::call_service(&app, test::TestRequest::post().uri("/login").to_request()).await;
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let app = &app;
    let burst = |cookie: String| async move {
        // 64 concurrent requests, as 64 clients would send them.
        let requests = (0..64).map(|_| {
            let cookie = cookie.clone();
            async move {
                let request = test::TestRequest::get()
                    .uri("/whoami")
                    .insert_header((header::COOKIE, cookie))
                    .to_request();
                match test::try_call_service(app, request).await {
                    Ok(response) => (response.status(), test::read_body(response).await),
                    Err(error) => (error.as_response_error().status_code(), Default::default()),
                }
            }
        });
        futures_util::future::join_all(requests).await
    };

    server.stop();
    // While Redis is down every request fails cleanly: a 5xx, not a hang or a panic.
    for (status, _) in burst(cookie.clone()).await {
        assert!(status.is_server_error(), "{status}");
    }

    server.restart();
    for (status, body) in burst(cookie).await {
        assert!(status.is_success(), "{status}");
        assert_eq!(body, "alice");
    }
}
