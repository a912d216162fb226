//! Start-up fails with a message that names the setting, the value and what is accepted.

use satchel::{Satchel, SessionConfig, SessionType};

#[actix_web::test]
async fn unknown_session_type_lists_what_is_accepted() {
    let error = SessionConfig::from_lookup(|n| (n == "SESSION_TYPE").then(|| "couchdb".into()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("SESSION_TYPE"), "{error}");
    assert!(error.contains("couchdb"), "{error}");
    assert!(
        error.contains("redis, memcached, mongodb, sqlalchemy (or sql), cookie, memory"),
        "{error}"
    );
}

#[actix_web::test]
async fn malformed_lifetime_names_the_setting() {
    let error = SessionConfig::from_lookup(|n| {
        (n == "PERMANENT_SESSION_LIFETIME").then(|| "a month".into())
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("PERMANENT_SESSION_LIFETIME"), "{error}");
}

#[actix_web::test]
async fn memory_backend_starts_from_config() {
    let mut config = SessionConfig::default();
    config.session_type = SessionType::Memory;
    assert!(Satchel::from_config(config).await.is_ok());
}
