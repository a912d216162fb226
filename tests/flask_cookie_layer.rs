//! The stack `Satchel::middleware()` builds speaks Flask-Session's cookie: the bare id (or
//! `id.signature`), Flask's attributes, Flask's deletion cookie, over Flask-Session's data.

#[path = "support/configs.rs"]
mod configs;
use configs::memory_config;

use std::time::Duration;

use actix_session::Session;
use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use satchel::flask_cookie::{FLASK_SESSION_SALT, Signer};
use satchel::{Backend, Satchel, Secret};

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

async fn clear(session: Session) -> HttpResponse {
    session.clear();
    HttpResponse::Ok().finish()
}

macro_rules! app {
    ($satchel:expr) => {
        test::init_service(
            App::new()
                .wrap($satchel.middleware())
                .route("/login/{name}", web::post().to(login))
                .route("/whoami", web::get().to(whoami))
                .route("/logout", web::get().to(logout))
                .route("/clear", web::get().to(clear)),
        )
        .await
    };
}

/// What the store holds under a cookie's id, read straight from the backend.
async fn stored(satchel: &Satchel, id: &str) -> Option<Vec<u8>> {
    satchel
        .store()
        .unwrap()
        .backend()
        .load(&format!("session:{id}"))
        .await
        .unwrap()
}

fn set_cookies(response: &ServiceResponse) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
}

#[actix_web::test]
async fn login_sends_flask_sessions_cookie_and_stores_flask_sessions_bytes() {
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    let app = app!(satchel);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    let id = cookie_value(cookie);
    assert_eq!(id.len(), 43, "{cookie}");
    assert!(cookie.starts_with("session="));
    assert!(cookie.contains("; Expires="), "{cookie}");
    assert!(cookie.ends_with("; HttpOnly; Path=/"), "{cookie}");
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    assert_eq!(response.headers().get(header::VARY).unwrap(), "Cookie");

    let stored = stored(&satchel, id).await.unwrap();
    assert_eq!(stored, b"\x82\xaa_permanent\xc3\xa8username\xa5alice");

    let request = test::TestRequest::get()
        .uri("/whoami")
        .insert_header((header::COOKIE, format!("session={id}")))
        .to_request();
    assert_eq!(test::call_and_read_body(&app, request).await, "alice");
}

#[actix_web::test]
async fn a_session_flask_wrote_is_read_through_the_bare_id_cookie() {
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    let app = app!(satchel);
    // The bytes and id of the format doc's worked example (§4.2).
    let id = "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM";
    let flask_bytes = b"\x83\xaa_permanent\xc3\xa8username\xa5alice\xa1n\x03";
    satchel
        .store()
        .unwrap()
        .backend()
        .store(
            &format!("session:{id}"),
            flask_bytes,
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    let request = test::TestRequest::get()
        .uri("/whoami")
        .insert_header((header::COOKIE, format!("other=1; session={id}; more=2")))
        .to_request();
    let response = test::call_service(&app, request).await;
    // Permanent with refresh: the cookie is sent again with a new expiry, as Flask-Session does.
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1);
    assert!(
        cookies[0].starts_with(&format!("session={id}; Expires=")),
        "{cookies:?}"
    );
    assert_eq!(test::read_body(response).await, "alice");
}

#[actix_web::test]
async fn signed_cookies_use_itsdangerous_and_refuse_tampering() {
    let mut config = memory_config();
    config.use_signer = true;
    config.secret_key = Some(Secret::new("secret_key"));
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let value = cookie_value(&set_cookies(&response)[0]).to_owned();
    let signer = Signer::new(&[Secret::new("secret_key")], FLASK_SESSION_SALT);
    let id = signer
        .unsign(&value)
        .expect("cookie is id.signature under SECRET_KEY")
        .to_owned();
    assert_eq!(id.len(), 43);

    let request = test::TestRequest::get()
        .uri("/whoami")
        .insert_header((header::COOKIE, format!("session={value}")))
        .to_request();
    assert_eq!(test::call_and_read_body(&app, request).await, "alice");

    for forged in [
        id.clone(),
        format!("{id}.AAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        format!("{}x", &value[..value.len() - 1]),
    ] {
        let request = test::TestRequest::get()
            .uri("/whoami")
            .insert_header((header::COOKIE, format!("session={forged}")))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert!(response.status().is_success());
        assert_eq!(test::read_body(response).await, "", "{forged}");
    }
}

#[actix_web::test]
async fn logout_deletes_entry_and_sends_flasks_deletion_cookie() {
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    let app = app!(satchel);
    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let id = cookie_value(&set_cookies(&response)[0]).to_owned();

    for route in ["/logout", "/clear"] {
        let response = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/login/alice")
                .insert_header((header::COOKIE, format!("session={id}")))
                .to_request(),
        )
        .await;
        let id = cookie_value(&set_cookies(&response)[0]).to_owned();
        let request = test::TestRequest::get()
            .uri(route)
            .insert_header((header::COOKIE, format!("session={id}")))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(
            set_cookies(&response),
            ["session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"],
            "{route}"
        );
        assert_eq!(stored(&satchel, &id).await, None, "{route}");
    }
}

#[actix_web::test]
async fn non_permanent_sessions_get_a_browser_session_cookie_and_no_permanent_key() {
    let mut config = memory_config();
    config.permanent = false;
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);
    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookie = set_cookies(&response).remove(0);
    assert!(!cookie.contains("Expires"), "{cookie}");
    let id = cookie_value(&cookie);
    let stored = stored(&satchel, id).await.unwrap();
    assert_eq!(stored, b"\x81\xa8username\xa5alice");
}

#[actix_web::test]
async fn a_request_that_stores_nothing_sets_no_cookie() {
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    let app = app!(satchel);
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/whoami").to_request()).await;
    assert!(set_cookies(&response).is_empty());
    let request = test::TestRequest::get()
        .uri("/whoami")
        .insert_header((
            header::COOKIE,
            "session=nosuchsessionnosuchsessionnosuchsession123",
        ))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert!(response.status().is_success());
    assert!(
        set_cookies(&response).is_empty(),
        "{:?}",
        set_cookies(&response)
    );
}

#[actix_web::test]
async fn writing_back_the_loaded_value_is_no_change_and_a_new_value_is() {
    let mut config = memory_config();
    config.refresh_each_request = false;
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);
    let login = |name: &str, cookie: Option<String>| {
        let mut request = test::TestRequest::post().uri(&format!("/login/{name}"));
        if let Some(cookie) = cookie {
            request = request.insert_header((header::COOKIE, cookie));
        }
        request.to_request()
    };
    let response = test::call_service(&app, login("alice", None)).await;
    let id = cookie_value(&set_cookies(&response)[0]).to_owned();
    // The same session in Flask-Session's JSON form: it loads as what was stored, and any save
    // would replace it with MessagePack, so the bytes tell whether the store was written.
    let json = br#"{"_permanent": true, "username": "alice"}"#;
    let backend = satchel.store().unwrap().backend();
    let key = format!("session:{id}");
    backend
        .store(&key, json, Duration::from_secs(60))
        .await
        .unwrap();
    let before = stored(&satchel, &id).await;
    assert_eq!(before.as_deref(), Some(&json[..]));

    // The handler inserts "alice" again: the session is as it was loaded.
    let response = test::call_service(&app, login("alice", Some(format!("session={id}")))).await;
    assert!(response.status().is_success());
    assert!(
        set_cookies(&response).is_empty(),
        "{:?}",
        set_cookies(&response)
    );
    assert_eq!(response.headers().get(header::VARY).unwrap(), "Cookie");
    assert_eq!(stored(&satchel, &id).await, before);

    // A different value is a change: stored under the same id, and the cookie sent again.
    let response = test::call_service(&app, login("bob", Some(format!("session={id}")))).await;
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(cookie_value(&cookies[0]), id);
    assert_eq!(
        stored(&satchel, &id).await.unwrap(),
        b"\x82\xaa_permanent\xc3\xa8username\xa3bob"
    );
}
