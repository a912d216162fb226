//! The store behind actix-session, end to end through an actix app: login flow, purge, renew,
//! expiry, tampered cookies, corrupt stored bytes.

use std::time::Duration;

use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{Cookie, Key};
use actix_web::dev::ServiceResponse;
use actix_web::{App, HttpResponse, test, web};
use satchel::{Backend, MemoryBackend, SessionConfig, Store};

const PREFIX: &str = "session:";

async fn login(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.renew();
    session.insert("username", name.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    let name = session.get::<String>("username")?.unwrap_or_default();
    Ok(HttpResponse::Ok().body(name))
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().finish()
}

fn config(lifetime: Duration) -> SessionConfig {
    let mut config = SessionConfig::default();
    config.permanent_session_lifetime = lifetime;
    config
}

/// An app whose cookie is signed, not encrypted, so the test can read the session id.
macro_rules! app {
    ($store:expr) => {
        app!($store, 3600)
    };
    ($store:expr, $ttl_secs:expr) => {
        test::init_service(
            App::new()
                .wrap(
                    SessionMiddleware::builder($store.clone(), Key::from(&[7u8; 64]))
                        .cookie_name("session".into())
                        .cookie_content_security(CookieContentSecurity::Signed)
                        .session_lifecycle(
                            BrowserSession::default()
                                .state_ttl(actix_web::cookie::time::Duration::seconds($ttl_secs)),
                        )
                        .build(),
                )
                .route("/login/{name}", web::post().to(login))
                .route("/whoami", web::get().to(whoami))
                .route("/logout", web::get().to(logout)),
        )
        .await
    };
}

fn session_cookie(response: &ServiceResponse) -> Option<Cookie<'static>> {
    response
        .response()
        .cookies()
        .find(|c| c.name() == "session")
        .map(Cookie::into_owned)
}

/// A signed cookie's value is the signature followed by the plain id.
fn id_of(cookie: &Cookie<'_>) -> String {
    let value = cookie.value();
    value[value.len() - 43..].to_owned()
}

#[actix_web::test]
async fn login_flow_stores_flask_session_bytes_under_prefix_and_id() {
    let store = Store::new(MemoryBackend::new(), &config(Duration::from_secs(3600)));
    let app = app!(store);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    assert!(response.status().is_success());
    let cookie = session_cookie(&response).expect("login sets the session cookie");
    let id = id_of(&cookie);

    let stored = store
        .backend()
        .load(&format!("{PREFIX}{id}"))
        .await
        .unwrap()
        .expect("entry stored");
    // fixmap(2){"_permanent": true, "username": "alice"}: what Flask-Session writes.
    assert_eq!(stored, b"\x82\xaa_permanent\xc3\xa8username\xa5alice");

    let request = test::TestRequest::get()
        .uri("/whoami")
        .cookie(cookie.clone())
        .to_request();
    assert_eq!(test::call_and_read_body(&app, request).await, "alice");
}

#[actix_web::test]
async fn renew_gives_a_new_id_and_deletes_the_old_entry() {
    let store = Store::new(MemoryBackend::new(), &config(Duration::from_secs(3600)));
    let app = app!(store);

    let first = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let first_cookie = session_cookie(&first).unwrap();
    let first_id = id_of(&first_cookie);

    let request = test::TestRequest::post()
        .uri("/login/bob")
        .cookie(first_cookie)
        .to_request();
    let second = test::call_service(&app, request).await;
    let second_id = id_of(&session_cookie(&second).expect("renew sets a new cookie"));

    assert_ne!(first_id, second_id);
    assert_eq!(
        store
            .backend()
            .load(&format!("{PREFIX}{first_id}"))
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .backend()
            .load(&format!("{PREFIX}{second_id}"))
            .await
            .unwrap()
            .is_some()
    );
}

#[actix_web::test]
async fn purge_deletes_the_entry_and_the_cookie() {
    let store = Store::new(MemoryBackend::new(), &config(Duration::from_secs(3600)));
    let app = app!(store);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookie = session_cookie(&response).unwrap();
    let id = id_of(&cookie);

    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/logout")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;
    let removal = session_cookie(&response).expect("logout sends a removal cookie");
    assert_eq!(removal.value(), "");
    assert_eq!(
        store
            .backend()
            .load(&format!("{PREFIX}{id}"))
            .await
            .unwrap(),
        None
    );

    let request = test::TestRequest::get()
        .uri("/whoami")
        .cookie(cookie)
        .to_request();
    assert_eq!(test::call_and_read_body(&app, request).await, "");
}

#[actix_web::test]
async fn expired_session_reads_as_a_fresh_one() {
    let store = Store::new(MemoryBackend::new(), &config(Duration::from_secs(1)));
    let app = app!(store, 1);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookie = session_cookie(&response).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let request = test::TestRequest::get()
        .uri("/whoami")
        .cookie(cookie)
        .to_request();
    let response = test::call_service(&app, request).await;
    assert!(response.status().is_success());
    assert_eq!(test::read_body(response).await, "");
}

#[actix_web::test]
async fn tampered_or_foreign_cookies_give_a_fresh_session_not_an_error() {
    let store = Store::new(MemoryBackend::new(), &config(Duration::from_secs(3600)));
    let app = app!(store);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let good = session_cookie(&response).unwrap().value().to_owned();
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };

    for value in [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() - 5].to_owned(),
        String::new(),
        "x".repeat(9000),
        "' OR 1=1 --".into(),
        r#"{"$ne": null}"#.into(),
        "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM".into(),
    ] {
        let request = test::TestRequest::get()
            .uri("/whoami")
            .cookie(Cookie::new("session", value.clone()))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert!(
            response.status().is_success(),
            "cookie {value:?} gave {}",
            response.status()
        );
        assert_eq!(test::read_body(response).await, "", "cookie {value:?}");
    }
}

#[actix_web::test]
async fn corrupt_stored_bytes_give_a_fresh_session_not_a_500() {
    let store = Store::new(MemoryBackend::new(), &config(Duration::from_secs(3600)));
    let app = app!(store);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookie = session_cookie(&response).unwrap();
    let key = format!("{PREFIX}{}", id_of(&cookie));

    for corrupt in [
        &b"\x83\xaa_permanent"[..],
        b"[1,2,3]",
        b"\x93\x01\x02\x03",
        b"\xff\xfe\xfd",
    ] {
        store
            .backend()
            .store(&key, corrupt, Duration::from_secs(60))
            .await
            .unwrap();
        let request = test::TestRequest::get()
            .uri("/whoami")
            .cookie(cookie.clone())
            .to_request();
        let response = test::call_service(&app, request).await;
        assert!(response.status().is_success(), "{corrupt:?}");
        assert_eq!(test::read_body(response).await, "");
    }
}

#[actix_web::test]
async fn an_update_after_expiry_saves_under_a_new_id() {
    let store = Store::new(MemoryBackend::new(), &config(Duration::from_secs(3600)));
    let app = app!(store);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookie = session_cookie(&response).unwrap();
    let old_key = format!("{PREFIX}{}", id_of(&cookie));

    // The handler loads the session, then the entry vanishes before the update is written.
    let vanish = web::resource("/vanish").route(web::get().to({
        let store = store.clone();
        move |session: Session| {
            let store = store.clone();
            let key = old_key.clone();
            async move {
                let _ = session.get::<String>("username");
                store.backend().delete(&key).await.unwrap();
                session.insert("step", 2).unwrap();
                HttpResponse::Ok().finish()
            }
        }
    }));
    let app2 = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), Key::from(&[7u8; 64]))
                    .cookie_name("session".into())
                    .cookie_content_security(CookieContentSecurity::Signed)
                    .build(),
            )
            .service(vanish),
    )
    .await;
    let _ = app;
    let request = test::TestRequest::get()
        .uri("/vanish")
        .cookie(cookie.clone())
        .to_request();
    let response = test::call_service(&app2, request).await;
    let new_cookie = session_cookie(&response).expect("a new cookie for the re-saved session");
    assert_ne!(id_of(&new_cookie), id_of(&cookie));
    assert_eq!(
        store
            .backend()
            .load(&format!("{PREFIX}{}", id_of(&cookie)))
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .backend()
            .load(&format!("{PREFIX}{}", id_of(&new_cookie)))
            .await
            .unwrap()
            .is_some()
    );
}

/// A backend whose every call fails, as a stopped server does.
struct DownBackend;

fn down() -> satchel::BackendError {
    satchel::BackendError::driver(
        "down",
        satchel_core::Operation::Load,
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
    )
}

impl Backend for DownBackend {
    async fn load(&self, _: &str) -> Result<Option<Vec<u8>>, satchel::BackendError> {
        Err(down())
    }
    async fn load_and_touch(
        &self,
        _: &str,
        _: Duration,
    ) -> Result<Option<Vec<u8>>, satchel::BackendError> {
        Err(down())
    }
    async fn insert(&self, _: &str, _: &[u8], _: Duration) -> Result<bool, satchel::BackendError> {
        Err(down())
    }
    async fn store(&self, _: &str, _: &[u8], _: Duration) -> Result<(), satchel::BackendError> {
        Err(down())
    }
    async fn touch(&self, _: &str, _: Duration) -> Result<bool, satchel::BackendError> {
        Err(down())
    }
    async fn delete(&self, _: &str) -> Result<(), satchel::BackendError> {
        Err(down())
    }
    async fn purge_expired(&self) -> Result<u64, satchel::BackendError> {
        Err(down())
    }
    fn name(&self) -> &'static str {
        "down"
    }
}

fn cookie_with_valid_id() -> Cookie<'static> {
    // A well-formed id, so the store does ask the backend.
    let id = satchel::SessionId::generate(32).unwrap();
    let mut jar = actix_web::cookie::CookieJar::new();
    jar.signed_mut(&Key::from(&[7u8; 64]))
        .add(Cookie::new("session", String::from(id)));
    jar.get("session").unwrap().clone()
}

#[actix_web::test]
async fn a_failed_load_fails_the_request_by_default() {
    let store = Store::new(DownBackend, &config(Duration::from_secs(3600)));
    let app = app!(store);
    let request = test::TestRequest::get()
        .uri("/whoami")
        .cookie(cookie_with_valid_id())
        .to_request();
    let response = test::try_call_service(&app, request).await;
    let status = match response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    assert_eq!(status, actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
}

#[actix_web::test]
async fn a_failed_load_continues_with_an_empty_session_when_configured() {
    let mut config = config(Duration::from_secs(3600));
    config.on_load_error = satchel::LoadErrorPolicy::Fresh;
    let store = Store::new(DownBackend, &config);
    let app = app!(store);
    let request = test::TestRequest::get()
        .uri("/whoami")
        .cookie(cookie_with_valid_id())
        .to_request();
    let response = test::call_service(&app, request).await;
    assert!(response.status().is_success());
    assert_eq!(test::read_body(response).await, "");
}

#[actix_web::test]
async fn a_session_over_the_size_limit_is_refused_with_a_500() {
    let mut config = config(Duration::from_secs(3600));
    config.max_session_size = 64;
    let store = Store::new(MemoryBackend::new(), &config);
    let app = app!(store);
    let name = "x".repeat(100);
    let request = test::TestRequest::post()
        .uri(&format!("/login/{name}"))
        .to_request();
    let status = match test::try_call_service(&app, request).await {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    assert_eq!(status, actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let request = test::TestRequest::post().uri("/login/bob").to_request();
    assert!(
        test::call_service(&app, request)
            .await
            .status()
            .is_success()
    );
}
