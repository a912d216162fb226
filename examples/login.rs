//! The Flask tutorial's login app, in Rust, on Satchel.
//!
//! Configured from the environment exactly like the library (`SESSION_TYPE`, `SECRET_KEY`,
//! `SESSION_SQLALCHEMY`, …) plus `BIND` (default `127.0.0.1:8080`). With nothing set, sessions
//! go to `satchel-sessions.sqlite3` in the working directory:
//!
//! ```sh
//! cargo run --example login
//! curl -i -d username=alice http://127.0.0.1:8080/login/
//! ```

use actix_session::Session;
use actix_web::cookie::{Cookie, time::Duration as CookieDuration};
use actix_web::http::header::{ContentType, LOCATION};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, get, post, web};
use satchel::{Satchel, Secret, SessionConfig};
use serde::Deserialize;

/// Used only when `SECRET_KEY` is unset, so that the example's sessions survive a restart.
const DEVELOPMENT_SECRET: &str = "satchel-login-example-development-key-do-not-use-in-production";

#[derive(Deserialize)]
struct LoginForm {
    username: String,
}

fn redirect_to_login() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, "/login/"))
        .finish()
}

#[get("/login/")]
async fn login_page(session: Session) -> actix_web::Result<HttpResponse> {
    let username = session.get::<String>("username")?.unwrap_or_default();
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>login</title></head><body>\n\
         <h3>欢迎:{}</h3>\n\
         <form method=\"post\" action=\"/login/\">\n\
         <input type=\"text\" name=\"username\"><input type=\"submit\" value=\"login\">\n\
         </form>\n<a href=\"/logout/\">logout</a>\n</body></html>\n",
        html_escape::encode_text(&username)
    );
    Ok(HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(body))
}

#[post("/login/")]
async fn login(session: Session, form: web::Form<LoginForm>) -> actix_web::Result<HttpResponse> {
    // A new id on login, so an id planted before login (fixation) is worthless after it.
    session.renew();
    session.insert("username", &form.username)?;
    Ok(redirect_to_login())
}

#[get("/logout/")]
async fn logout(session: Session) -> HttpResponse {
    session.purge();
    redirect_to_login()
}

#[get("/setcookie/")]
async fn set_cookie() -> HttpResponse {
    let cookie = Cookie::build("name", "cocoococo")
        .path("/")
        .max_age(CookieDuration::days(30))
        .finish();
    HttpResponse::Ok().cookie(cookie).body("cookie set")
}

#[get("/getcookie/")]
async fn get_cookie(request: HttpRequest) -> HttpResponse {
    let value = request
        .cookie("name")
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(value)
}

#[get("/delcookie/")]
async fn del_cookie() -> HttpResponse {
    let mut cookie = Cookie::build("name", "").path("/").finish();
    cookie.make_removal();
    HttpResponse::Ok().cookie(cookie).body("cookie deleted")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let mut config = match SessionConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid session settings");
            std::process::exit(2);
        }
    };
    if config.secret_key.is_none() {
        tracing::warn!(
            "SECRET_KEY is not set: using the example's fixed development key; \
             set SECRET_KEY to a long random value in production"
        );
        config.secret_key = Some(Secret::new(DEVELOPMENT_SECRET));
    }
    let session_type = config.session_type;
    let sessions = match Satchel::from_config(config).await {
        Ok(sessions) => sessions,
        Err(error) => {
            tracing::error!(%error, "session store could not start");
            std::process::exit(2);
        }
    };

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    tracing::info!(%bind, session_type = session_type.as_str(), "login example listening");
    HttpServer::new(move || {
        App::new()
            .wrap(sessions.middleware())
            .service(login_page)
            .service(login)
            .service(logout)
            .service(set_cookie)
            .service(get_cookie)
            .service(del_cookie)
    })
    .bind(bind)?
    .run()
    .await
}
