//! `SESSION_TYPE=cookie` through an actix app built by `Satchel::from_config`: Flask's own
//! signed cookie session, read and written as Flask 3.1 does.
//!
//! The checks against real Flask run when a Python with Flask 3.1.3 is found
//! (`SATCHEL_INTEROP_PYTHON`, else `.venv-interop/bin/python`, which `scripts/python-env.sh`
//! creates); without one they print that they were skipped, and the pinned cookies below (made
//! by Flask 3.1.3) still check the Rust side.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use actix_session::Session;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::test::TestRequest;
use actix_web::{App, HttpResponse, test, web};
use satchel::cookie_session::CookieSession;
use satchel::value::{Bytes, Timestamp};
use satchel::{SameSite, Satchel, Secret, SessionConfig, SessionType};
use serde_json::{Value as Json, json};

const SECRET: &str = "secret_key";

/// Made by Flask 3.1.3 with SECRET_KEY="secret_key" at time 1700000000 (format doc §6): the
/// tagged sample, and two flashed messages.
const FLASK_TAGGED: &str = ".eJyrVkpSsqpWUgCSSo6OrrZKtTpKKWARIKkUUpqqo2BgpOCVmKdgZGBkomBgbGVgYmVgquDuGwJWmglRC6FK4uOBmiqUaoEyOUpW0YY61UqJSlZGtbE6SrlgFUBSySbJrsJGP8kOpL8Eog-s1igWKFAKFgCSSgb4gSHQFgCOHS5X.ZVPxAA.2LfctW5gJL0OBwDKs3Cs2N5rXAU";
const FLASK_FLASH: &str = ".eJyrVopPy0kszkgtVrKKrlZSKAFSSrmpxcWJ6alKOkoZqTk5-UqxtTowqdSiovwioERSYgpQOLYWAKmsFNY.ZVPxAA.Lly5Yw7h1BIF32GZBo4F-WePLI4";

/// Flask writes a session with every tagged type and prints the cookie value.
const FLASK_WRITE: &str = r#"
import sys, datetime, uuid
from flask import Flask, session, flash
from markupsafe import Markup
app = Flask("interop")
app.secret_key = sys.argv[1]
@app.route("/")
def index():
    session["name"] = "Zo\u00eb \u2603 \U0001F600"
    session["n"] = 2**62
    session["f"] = 1.5
    session["t"] = (1, "a")
    session["b"] = b"\x00\xff"
    session["u"] = uuid.UUID(int=1)
    session["d"] = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    session["m"] = Markup("<b>x</b>")
    session["nested"] = {"k": [None, True]}
    session["one"] = {" t": 1}
    flash("hello")
    session.permanent = True
    return ""
r = app.test_client().get("/")
print(r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1])
"#;

/// Flask's `SecureCookieSessionInterface` opens a cookie value; prints the session's items as
/// Python sees them, whether it is permanent, and the JSON Flask itself would write for it.
const FLASK_READ: &str = r#"
import sys
from flask import Flask, request
app = Flask("interop")
app.secret_key = sys.argv[2]
app.config["PERMANENT_SESSION_LIFETIME"] = int(sys.argv[3])
app.config["SECRET_KEY_FALLBACKS"] = sys.argv[4:]
with app.test_request_context(headers={"Cookie": "session=" + sys.argv[1]}):
    s = app.session_interface.open_session(app, request)
    print(repr(sorted(s.items())))
    print(s.permanent)
    print(app.session_interface.get_signing_serializer(app).serializer.dumps(dict(s)))
"#;

/// The Python that has Flask 3.1.3, if any.
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("SATCHEL_INTEROP_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-interop/bin/python"),
        PathBuf::from,
    );
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: the Flask side of this test (no Python at {}; run scripts/python-env.sh)",
            path.display()
        );
        None
    }
}

fn run_python(python: &PathBuf, script: &str, args: &[&str]) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python prints UTF-8")
}

/// What Flask makes of a cookie: (items repr, permanent, Flask's own JSON for the session).
fn flask_reads(python: &PathBuf, cookie: &str, lifetime: u64) -> (String, String, String) {
    let lifetime = lifetime.to_string();
    let out = run_python(python, FLASK_READ, &[cookie, SECRET, &lifetime]);
    let mut lines = out.lines().map(str::to_owned);
    (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    )
}

fn config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.session_type = SessionType::Cookie;
    config.secret_key = Some(Secret::new(SECRET));
    config
}

fn codec(config: &SessionConfig) -> CookieSession {
    CookieSession::from_config(config).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn login(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.insert("username", name.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().body(session.get::<String>("username")?.unwrap_or_default()))
}

async fn visit(session: Session) -> actix_web::Result<HttpResponse> {
    let visits = session.get::<i64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(HttpResponse::Ok().finish())
}

/// Every value as the JSON text actix-session holds, as one JSON object.
async fn dump(session: Session) -> HttpResponse {
    let entries: serde_json::Map<String, Json> = session
        .entries()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap()))
        .collect();
    HttpResponse::Ok().json(entries)
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().finish()
}

async fn clear(session: Session) -> HttpResponse {
    session.clear();
    HttpResponse::Ok().finish()
}

async fn hoard(session: Session, size: web::Path<usize>) -> actix_web::Result<HttpResponse> {
    session.insert("blob", incompressible(size.into_inner()))?;
    Ok(HttpResponse::Ok().finish())
}

/// Text zlib cannot shrink much, so the cookie grows with it.
fn incompressible(len: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    [(state % 62) as usize],
            )
        })
        .collect()
}

macro_rules! app {
    ($satchel:expr) => {
        test::init_service(
            App::new()
                .wrap($satchel.middleware())
                .route("/login/{name}", web::post().to(login))
                .route("/whoami", web::get().to(whoami))
                .route("/visit", web::post().to(visit))
                .route("/dump", web::get().to(dump))
                .route("/logout", web::get().to(logout))
                .route("/clear", web::get().to(clear))
                .route("/hoard/{size}", web::post().to(hoard)),
        )
        .await
    };
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

fn with_cookie(request: TestRequest, value: &str) -> TestRequest {
    request.insert_header((header::COOKIE, format!("session={value}")))
}

#[actix_web::test]
async fn login_sets_flasks_own_session_cookie() {
    let mut config = config();
    // Flask's own default: sessions are not permanent unless the app says so.
    config.permanent = false;
    let satchel = Satchel::from_config(config.clone()).await.unwrap();
    assert!(satchel.store().is_none(), "nothing is stored on a server");
    let app = app!(satchel);

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert!(cookie.ends_with("; HttpOnly; Path=/"), "{cookie}");
    assert!(!cookie.contains("Expires"), "{cookie}");
    let value = cookie_value(cookie);
    // The worked example's payload; the timestamp is now.
    assert!(value.starts_with("eyJ1c2VybmFtZSI6ImFsaWNlIn0."), "{value}");
    assert_eq!(
        codec(&config).loads(value, now()).unwrap(),
        *json!({"username": "alice"}).as_object().unwrap()
    );

    let request = with_cookie(test::TestRequest::get().uri("/whoami"), value).to_request();
    assert_eq!(test::call_and_read_body(&app, request).await, "alice");

    if let Some(python) = python() {
        let (items, permanent, _) = flask_reads(&python, value, 31 * 24 * 3600);
        assert_eq!(items, "[('username', 'alice')]");
        assert_eq!(permanent, "False");
    }
}

#[actix_web::test]
async fn permanent_sessions_carry_permanent_and_expires() {
    let config = config();
    let satchel = Satchel::from_config(config.clone()).await.unwrap();
    let app = app!(satchel);
    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let cookie = set_cookies(&response).remove(0);
    assert!(cookie.contains("; Expires="), "{cookie}");
    assert!(cookie.ends_with("; HttpOnly; Path=/"), "{cookie}");
    let value = cookie_value(&cookie);
    // The permanent worked example's payload.
    assert!(
        value.starts_with("eyJfcGVybWFuZW50Ijp0cnVlLCJ1c2VybmFtZSI6ImFsaWNlIn0."),
        "{value}"
    );
    if let Some(python) = python() {
        let (items, permanent, _) = flask_reads(&python, value, 31 * 24 * 3600);
        assert_eq!(items, "[('_permanent', True), ('username', 'alice')]");
        assert_eq!(permanent, "True");
    }
}

#[actix_web::test]
async fn cookies_flask_wrote_are_read_with_bytes_and_datetimes_for_rust() {
    let mut config = config();
    // The pinned cookies were signed in 2023; a long lifetime keeps them valid.
    config.permanent_session_lifetime = Duration::from_secs(100 * 365 * 24 * 3600);
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);

    let request = with_cookie(test::TestRequest::get().uri("/dump"), FLASK_TAGGED).to_request();
    let response = test::call_service(&app, request).await;
    assert!(
        set_cookies(&response).is_empty(),
        "an unchanged, non-permanent session is not sent again"
    );
    let dumped: Json = test::read_body_json(response).await;
    assert_eq!(
        dumped,
        json!({
            "b": {" b": "AAE="},
            "d": {" d": "2024-01-02T03:04:05Z"},
            "di": {" di": {" t__": "x"}},
            "l": [1, {"a": 2}],
            "m": {" m": "<b>x</b>"},
            "t": {" t": [1, 2]},
            "u": {" u": "00000000000000000000000000000001"},
        })
    );
    assert_eq!(
        serde_json::from_value::<Bytes>(dumped["b"].clone()).unwrap(),
        Bytes(vec![0, 1])
    );
    assert_eq!(
        serde_json::from_value::<Timestamp>(dumped["d"].clone())
            .unwrap()
            .0,
        time::macros::datetime!(2024-01-02 03:04:05 UTC)
    );

    let request = with_cookie(test::TestRequest::get().uri("/dump"), FLASK_FLASH).to_request();
    let dumped: Json = test::call_and_read_body_json(&app, request).await;
    assert_eq!(
        dumped,
        json!({"_flashes": [{" t": ["message", "hello"]}, {" t": ["error", "bad"]}]})
    );
}

#[actix_web::test]
async fn a_session_flask_writes_now_round_trips_through_a_rust_handler() {
    let Some(python) = python() else { return };
    let config = config();
    let satchel = Satchel::from_config(config.clone()).await.unwrap();
    let app = app!(satchel);
    let flask_cookie = run_python(&python, FLASK_WRITE, &[SECRET])
        .trim()
        .to_owned();
    let (flask_items, _, flask_json) = flask_reads(&python, &flask_cookie, 3600);

    // Rust sees every value, with datetimes as RFC 3339 and non-ASCII text as text.
    let request = with_cookie(test::TestRequest::get().uri("/dump"), &flask_cookie).to_request();
    let response = test::call_service(&app, request).await;
    let resent = set_cookies(&response);
    assert_eq!(resent.len(), 1, "permanent + refresh: sent again");
    // Re-signed with the current time: equal to Flask's cookie when both fall in one second.
    let resent_value = cookie_value(&resent[0]).to_owned();
    let dumped: Json = test::read_body_json(response).await;
    assert_eq!(dumped["name"], "Zoë ☃ 😀");
    assert_eq!(dumped["d"], json!({" d": "2024-01-02T03:04:05Z"}));
    assert_eq!(dumped["t"], json!({" t": [1, "a"]}));
    assert_eq!(dumped["one"], json!({" di": {" t__": 1}}));
    // The refreshed cookie is the same session, which Flask reads as before.
    assert_eq!(flask_reads(&python, &resent_value, 3600).0, flask_items);

    // A Rust handler changes one key; everything else reads back in Flask unchanged, and the
    // JSON in Rust's cookie is byte for byte what Flask writes for that session.
    let request = with_cookie(test::TestRequest::post().uri("/visit"), &flask_cookie).to_request();
    let response = test::call_service(&app, request).await;
    let cookie = set_cookies(&response).remove(0);
    assert!(cookie.contains("; Expires="), "{cookie}");
    let value = cookie_value(&cookie);
    let (items, permanent, json_by_flask) = flask_reads(&python, value, 3600);
    let expected = format!("{}, ('visits', 1)]", &flask_items[..flask_items.len() - 1]);
    assert_eq!(items, expected, "Flask's view after the Rust change");
    assert_eq!(permanent, "True");
    let rust_session = codec(&config).loads(value, now()).unwrap();
    assert_eq!(
        satchel::cookie_session::dump_json(&Json::Object(rust_session)),
        json_by_flask
    );
    assert!(
        flask_json.ends_with(r#""u":{" u":"00000000000000000000000000000001"}}"#),
        "{flask_json}"
    );
}

#[actix_web::test]
async fn logout_and_clear_send_flasks_deletion_cookie() {
    let mut config = config();
    config.cookie_domain = Some("example.com".into());
    config.cookie_secure = true;
    config.cookie_samesite = Some(SameSite::Lax);
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);
    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let login_cookie = set_cookies(&response).remove(0);
    assert!(
        login_cookie.starts_with("session=")
            && login_cookie.contains("; Domain=example.com; Expires=")
            && login_cookie.ends_with("; Secure; HttpOnly; Path=/; SameSite=Lax"),
        "{login_cookie}"
    );
    let value = cookie_value(&login_cookie).to_owned();
    for route in ["/logout", "/clear"] {
        let response = test::call_service(
            &app,
            with_cookie(test::TestRequest::get().uri(route), &value).to_request(),
        )
        .await;
        // As Flask's SecureCookieSessionInterface (werkzeug's delete_cookie) sends it.
        assert_eq!(
            set_cookies(&response),
            [
                "session=; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:00 GMT; \
                 Max-Age=0; Secure; HttpOnly; Path=/; SameSite=Lax"
            ],
            "{route}"
        );
        assert_eq!(response.headers().get(header::VARY).unwrap(), "Cookie");
    }
}

#[actix_web::test]
async fn state_too_big_for_a_cookie_is_a_clear_500_not_a_panic() {
    let satchel = Satchel::from_config(config()).await.unwrap();
    let app = app!(satchel);
    let Err(error) = app
        .call(test::TestRequest::post().uri("/hoard/5000").to_request())
        .await
    else {
        panic!("a session over 4 KB cannot be saved");
    };
    assert_eq!(
        error.as_response_error().status_code(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let detail = format!("{error:?}");
    assert!(detail.contains("does not fit in a cookie"), "{detail}");
    assert!(detail.contains("server-side SESSION_TYPE"), "{detail}");

    // A session that fits is fine, and the app keeps serving.
    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/hoard/2000").to_request(),
    )
    .await;
    assert!(response.status().is_success());
    assert!(cookie_value(&set_cookies(&response)[0]).len() < 4000);
}

#[actix_web::test]
async fn flask_refreshes_only_permanent_unchanged_sessions() {
    let config = config();
    let signed_earlier = |permanent: bool| {
        let session = if permanent {
            json!({"_permanent": true, "username": "alice"})
        } else {
            json!({"username": "alice"})
        };
        codec(&config).dumps(session.as_object().unwrap(), now() - 1000)
    };

    let satchel = Satchel::from_config(config.clone()).await.unwrap();
    let app = app!(satchel);
    let old = signed_earlier(true);
    let response = test::call_service(
        &app,
        with_cookie(test::TestRequest::get().uri("/whoami"), &old).to_request(),
    )
    .await;
    let cookie = set_cookies(&response).remove(0);
    assert!(cookie.contains("; Expires="), "{cookie}");
    let value = cookie_value(&cookie);
    let (payload, rest) = old.split_once('.').unwrap();
    assert!(value.starts_with(&format!("{payload}.")), "payload kept");
    assert_ne!(value.split_once('.').unwrap().1, rest, "timestamp renewed");
    // Signed now: a lifetime of 100 s accepts it, which the old cookie's 1000 s age would not.
    let mut short = config.clone();
    short.permanent_session_lifetime = Duration::from_secs(100);
    assert!(codec(&short).loads(value, now()).is_ok());
    assert!(codec(&short).loads(&old, now()).is_err());

    let non_permanent = signed_earlier(false);
    let response = test::call_service(
        &app,
        with_cookie(test::TestRequest::get().uri("/whoami"), &non_permanent).to_request(),
    )
    .await;
    assert!(
        set_cookies(&response).is_empty(),
        "Flask does not resend it"
    );
    assert_eq!(test::read_body(response).await, "alice");

    let mut no_refresh = config.clone();
    no_refresh.refresh_each_request = false;
    let app = app!(Satchel::from_config(no_refresh).await.unwrap());
    let response = test::call_service(
        &app,
        with_cookie(test::TestRequest::get().uri("/whoami"), &old).to_request(),
    )
    .await;
    assert!(set_cookies(&response).is_empty());
    assert_eq!(test::read_body(response).await, "alice");
}

#[actix_web::test]
async fn expired_future_tampered_and_oversized_cookies_read_as_an_empty_session() {
    let mut config = config();
    config.permanent_session_lifetime = Duration::from_secs(3600);
    let codec = codec(&config);
    let alice = json!({"username": "alice"});
    let alice = alice.as_object().unwrap();
    let valid = codec.dumps(alice, now());
    let app = app!(Satchel::from_config(config).await.unwrap());

    let request = with_cookie(test::TestRequest::get().uri("/whoami"), &valid).to_request();
    assert_eq!(test::call_and_read_body(&app, request).await, "alice");

    for bad in [
        codec.dumps(alice, now() - 3700),
        codec.dumps(alice, now() + 600),
        format!("{}x", &valid[..valid.len() - 1]),
        valid.replacen("eyJ1", "eyJ2", 1),
        format!("{valid}{}", "A".repeat(5000)),
        "a;b".to_owned(),
        "\"quoted\"".to_owned(),
        "%%%".to_owned(),
    ] {
        let request = with_cookie(test::TestRequest::get().uri("/whoami"), &bad).to_request();
        let response = test::call_service(&app, request).await;
        assert!(response.status().is_success(), "{bad:.60}");
        assert!(set_cookies(&response).is_empty(), "{bad:.60}");
        assert_eq!(test::read_body(response).await, "", "{bad:.60}");
    }
}

#[actix_web::test]
async fn rotated_secret_keys_read_old_cookies_and_sign_with_the_new_one() {
    let old_config = config();
    let old_cookie =
        codec(&old_config).dumps(json!({"username": "alice"}).as_object().unwrap(), now());
    let mut config = config();
    config.secret_key = Some(Secret::new("new secret"));
    config.secret_key_fallbacks = vec![Secret::new("older"), Secret::new(SECRET)];
    let app = app!(Satchel::from_config(config.clone()).await.unwrap());

    let request = with_cookie(test::TestRequest::post().uri("/visit"), &old_cookie).to_request();
    let response = test::call_service(&app, request).await;
    let value = cookie_value(&set_cookies(&response)[0]).to_owned();
    assert!(codec(&old_config).loads(&value, now()).is_err());
    let mut new_only = config.clone();
    new_only.secret_key_fallbacks.clear();
    assert_eq!(
        codec(&new_only).loads(&value, now()).unwrap(),
        *json!({"username": "alice", "visits": 1})
            .as_object()
            .unwrap()
    );
}

#[actix_web::test]
async fn cookie_sessions_need_a_secret_key() {
    let mut config = config();
    config.secret_key = None;
    let Err(error) = Satchel::from_config(config).await else {
        panic!("no SECRET_KEY, no cookie session");
    };
    let error = error.to_string();
    assert!(error.contains("SECRET_KEY"), "{error}");
}
