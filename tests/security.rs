//! What Satchel promises about session ids, signatures and fixation, checked end to end.
//!
//! * Ids are 32 bytes (256 bits) from the OS CSPRNG, 43 characters of base64url, never repeated.
//! * Signed cookies (`SESSION_USE_SIGNER`, and Flask's own cookie session) refuse any tampering.
//!   The comparison is constant-time by construction: `Signer::unsign` verifies with
//!   `hmac::Mac::verify_slice` (`subtle`'s constant-time equality). Timing is not measured here;
//!   a timing test on a shared machine proves nothing. These tests pin the behaviour.
//! * Fixation: `Session::renew()` moves the session to a new id and deletes the old entry, and an
//!   id the server did not issue (or no longer holds) is never adopted.

#[path = "support/configs.rs"]
mod configs;
use configs::{memory_config, sqlite_config};

use std::collections::HashSet;
use std::time::Duration;

use actix_session::Session;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use satchel::cookie_session::CookieSession;
use satchel::flask_cookie::{FLASK_SESSION_SALT, Signer};
use satchel::{Backend, Satchel, Secret, SessionConfig, SessionId};
use serde_json::json;

async fn login(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.insert("username", name.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

/// A login done right: a new id for the new privilege level.
async fn secure_login(
    session: Session,
    name: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    session.renew();
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
                .route("/secure-login/{name}", web::post().to(secure_login))
                .route("/whoami", web::get().to(whoami)),
        )
        .await
    };
}

/// The session id a response's Flask cookie carries, unless it deletes the cookie.
fn cookie_id(response: &ServiceResponse) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let value = c.strip_prefix("session=")?.split(';').next()?;
            (!value.is_empty()).then(|| value.to_owned())
        })
}

fn with_cookie(req: test::TestRequest, id: &str) -> test::TestRequest {
    req.insert_header((header::COOKIE, format!("session={id}")))
}

// ---------------------------------------------------------------------------------------------
// Ids

// `#[test]` would name actix-web's `test` module imported above; its attribute runs these.
#[actix_web::test]
async fn ids_are_43_characters_of_32_random_bytes() {
    assert_eq!(
        SessionConfig::default().id_length,
        32,
        "Flask-Session's 32 bytes"
    );
    for _ in 0..100 {
        let id = SessionId::generate(32).unwrap();
        assert_eq!(id.as_str().len(), 43);
        let raw = URL_SAFE_NO_PAD.decode(id.as_str()).unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&raw),
            id.as_str(),
            "canonical base64url"
        );
    }
}

// `#[test]` would name actix-web's `test` module imported above; its attribute runs these.
#[actix_web::test]
async fn ten_thousand_ids_are_distinct_and_every_bit_varies() {
    const N: usize = 10_000;
    let mut seen = HashSet::with_capacity(N);
    // How often each of the 256 bits is set: about N/2 for a uniform generator. The bounds
    // are more than 20 standard deviations wide, so only a broken generator (a stuck bit, a
    // counter, a constant) can fail them.
    let mut ones = [0usize; 256];
    for _ in 0..N {
        let id = SessionId::generate(32).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(id.as_str()).unwrap();
        for (bit, count) in ones.iter_mut().enumerate() {
            *count += usize::from(raw[bit / 8] >> (bit % 8) & 1);
        }
        assert!(seen.insert(String::from(id)), "an id repeated");
    }
    assert_eq!(seen.len(), N);
    for (bit, count) in ones.iter().enumerate() {
        assert!(
            (4_000..=6_000).contains(count),
            "bit {bit} set in {count} of {N} ids"
        );
    }
}

#[actix_web::test]
async fn the_cookie_carries_a_fresh_43_character_id() {
    let satchel = Satchel::from_config(memory_config()).await.unwrap();
    let app = app!(satchel);
    let mut ids = HashSet::new();
    for _ in 0..50 {
        let response = test::call_service(
            &app,
            test::TestRequest::post().uri("/login/alice").to_request(),
        )
        .await;
        let id = cookie_id(&response).unwrap();
        assert!(SessionId::parse(&id, 32).is_ok(), "{id}");
        assert_eq!(URL_SAFE_NO_PAD.decode(&id).unwrap().len(), 32);
        assert!(ids.insert(id));
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// Every variation of a signed value that is not the signed value itself is refused.
fn assert_only_the_exact_signature_verifies(signer: &Signer, signed: &str) {
    let (value, signature) = signed.rsplit_once('.').unwrap();
    assert_eq!(signer.unsign(signed), Some(value));
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // Every character of the signature replaced by every other base64url character.
    for (i, original) in signature.char_indices() {
        for replacement in alphabet.chars().filter(|&c| c != original) {
            let mut forged = signature.to_owned();
            forged.replace_range(i..=i, &replacement.to_string());
            let forged = format!("{value}.{forged}");
            assert_eq!(signer.unsign(&forged), None, "{forged}");
        }
    }
    // Every character of the value changed, under the original signature.
    for (i, original) in value.char_indices() {
        let replacement = if original == 'A' { "B" } else { "A" };
        let mut forged = value.to_owned();
        forged.replace_range(i..i + original.len_utf8(), replacement);
        assert_eq!(signer.unsign(&format!("{forged}.{signature}")), None);
    }
    // Truncated, extended, padded, re-encoded, duplicated or missing signatures.
    for cut in 0..signature.len() {
        assert_eq!(
            signer.unsign(&format!("{value}.{}", &signature[..cut])),
            None
        );
    }
    for forged in [
        format!("{value}.{signature}A"),
        format!("{value}.{signature}="),
        format!("{value}.{signature}.{signature}"),
        format!("{value}.{}", signature.replace('-', "+").replace('_', "/")),
        format!("{value}.{}", signature.to_ascii_uppercase()),
        format!("{value}{signature}"),
        value.to_owned(),
        format!(".{signature}"),
        format!("{value}.{}", "A".repeat(signature.len())),
    ] {
        if forged != signed {
            assert_eq!(signer.unsign(&forged), None, "{forged}");
        }
    }
}

// `#[test]` would name actix-web's `test` module imported above; its attribute runs these.
#[actix_web::test]
async fn flask_session_signatures_refuse_every_tampering() {
    let signer = Signer::new(&[Secret::new("secret_key")], FLASK_SESSION_SALT);
    let id = String::from(SessionId::generate(32).unwrap());
    let signed = signer.sign(&id);
    assert_only_the_exact_signature_verifies(&signer, &signed);

    // Another key, another salt (another purpose), or the signature of another value.
    let other_key = Signer::new(&[Secret::new("secret_key2")], FLASK_SESSION_SALT);
    let other_salt = Signer::new(&[Secret::new("secret_key")], b"cookie-session");
    assert_eq!(other_key.unsign(&signed), None);
    assert_eq!(other_salt.unsign(&signed), None);
    let other = signer.sign(&String::from(SessionId::generate(32).unwrap()));
    let (_, other_signature) = other.rsplit_once('.').unwrap();
    assert_eq!(signer.unsign(&format!("{id}.{other_signature}")), None);
}

// `#[test]` would name actix-web's `test` module imported above; its attribute runs these.
#[actix_web::test]
async fn flask_cookie_session_signatures_refuse_every_tampering() {
    let codec = CookieSession::new(&Secret::new("secret_key"), &[], Duration::from_secs(3600));
    let session = json!({"username": "alice", "admin": false});
    let now = 1_700_000_000;
    let cookie = codec.dumps(session.as_object().unwrap(), now);
    assert!(codec.loads(&cookie, now).is_ok());

    let signer = Signer::new(&[Secret::new("secret_key")], b"cookie-session");
    assert_only_the_exact_signature_verifies(&signer, &cookie);
    // The payload promoted to admin, re-encoded, under the old signature.
    let (signed_part, signature) = cookie.rsplit_once('.').unwrap();
    let (_, timestamp) = signed_part.split_once('.').unwrap();
    let admin = URL_SAFE_NO_PAD.encode(br#"{"admin":true,"username":"alice"}"#);
    let forged = format!("{admin}.{timestamp}.{signature}");
    assert!(codec.loads(&forged, now).is_err());
    // A later timestamp (to outlive the lifetime) under the old signature.
    let later = URL_SAFE_NO_PAD.encode((now + 10_000).to_be_bytes());
    let payload = signed_part.split_once('.').unwrap().0;
    assert!(
        codec
            .loads(&format!("{payload}.{later}.{signature}"), now + 10_000)
            .is_err()
    );
    // Signed with a key that is not SECRET_KEY or a fallback.
    let stranger = CookieSession::new(&Secret::new("stranger"), &[], Duration::from_secs(3600));
    assert!(
        codec
            .loads(&stranger.dumps(session.as_object().unwrap(), now), now)
            .is_err()
    );
}

#[actix_web::test]
async fn a_tampered_signed_cookie_reads_as_a_fresh_session() {
    let mut config = memory_config();
    config.use_signer = true;
    config.secret_key = Some(Secret::new("a strong secret_key"));
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);
    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/alice").to_request(),
    )
    .await;
    let signed = cookie_id(&response).unwrap();
    let (id, signature) = signed.rsplit_once('.').unwrap();
    let last = signature.chars().last().unwrap();
    let flipped = format!(
        "{id}.{}{}",
        &signature[..signature.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    for (cookie, expected) in [(signed.as_str(), "alice"), (id, ""), (flipped.as_str(), "")] {
        let response = test::call_service(
            &app,
            with_cookie(test::TestRequest::get().uri("/whoami"), cookie).to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(test::read_body(response).await, expected, "{cookie}");
    }
}

// ---------------------------------------------------------------------------------------------
// Fixation

async fn renew_moves_the_session_and_deletes_the_old_entry(config: SessionConfig) {
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);
    let backend = satchel.store().unwrap().backend();

    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/guest").to_request(),
    )
    .await;
    let old = cookie_id(&response).unwrap();
    assert!(
        backend
            .load(&format!("session:{old}"))
            .await
            .unwrap()
            .is_some()
    );

    let response = test::call_service(
        &app,
        with_cookie(test::TestRequest::post().uri("/secure-login/alice"), &old).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let new = cookie_id(&response).expect("renew sends the new id");
    assert_ne!(new, old);
    assert!(SessionId::parse(&new, 32).is_ok());
    assert_eq!(
        backend.load(&format!("session:{old}")).await.unwrap(),
        None,
        "the old entry is deleted"
    );
    assert!(
        backend
            .load(&format!("session:{new}"))
            .await
            .unwrap()
            .is_some()
    );

    for (id, expected) in [(&old, ""), (&new, "alice")] {
        let response = test::call_service(
            &app,
            with_cookie(test::TestRequest::get().uri("/whoami"), id).to_request(),
        )
        .await;
        assert_eq!(test::read_body(response).await, expected);
    }
}

#[actix_web::test]
async fn renew_gives_a_new_id_and_deletes_the_old_entry_on_memory() {
    renew_moves_the_session_and_deletes_the_old_entry(memory_config()).await;
}

#[actix_web::test]
async fn renew_gives_a_new_id_and_deletes_the_old_entry_on_sqlite() {
    let (config, _dir) = sqlite_config();
    renew_moves_the_session_and_deletes_the_old_entry(config).await;
}

/// The classic fixation attack: the attacker plants an id in the victim's browser (one they
/// made up, or their own live session) and waits for the victim to log in.
async fn planted_ids_are_never_adopted(config: SessionConfig) {
    let satchel = Satchel::from_config(config).await.unwrap();
    let app = app!(satchel);
    let backend = satchel.store().unwrap().backend();

    // A made-up id in the right format: even a login that does not renew gets a new id.
    for route in ["/login/alice", "/secure-login/alice"] {
        let planted = String::from(SessionId::generate(32).unwrap());
        let response = test::call_service(
            &app,
            with_cookie(test::TestRequest::post().uri(route), &planted).to_request(),
        )
        .await;
        let issued = cookie_id(&response).unwrap();
        assert_ne!(issued, planted, "{route} adopted a client-chosen id");
        assert_eq!(
            backend.load(&format!("session:{planted}")).await.unwrap(),
            None
        );
        let response = test::call_service(
            &app,
            with_cookie(test::TestRequest::get().uri("/whoami"), &planted).to_request(),
        )
        .await;
        assert_eq!(test::read_body(response).await, "", "{route}");
    }

    // The attacker's own live session: after the victim's renewing login, the attacker's
    // cookie is worth nothing.
    let response = test::call_service(
        &app,
        test::TestRequest::post().uri("/login/mallory").to_request(),
    )
    .await;
    let attackers = cookie_id(&response).unwrap();
    let response = test::call_service(
        &app,
        with_cookie(
            test::TestRequest::post().uri("/secure-login/alice"),
            &attackers,
        )
        .to_request(),
    )
    .await;
    let victims = cookie_id(&response).unwrap();
    assert_ne!(victims, attackers);
    let response = test::call_service(
        &app,
        with_cookie(test::TestRequest::get().uri("/whoami"), &attackers).to_request(),
    )
    .await;
    assert_eq!(
        test::read_body(response).await,
        "",
        "the attacker rode the login"
    );
}

#[actix_web::test]
async fn planted_ids_are_never_adopted_on_memory() {
    planted_ids_are_never_adopted(memory_config()).await;
}

#[actix_web::test]
async fn planted_ids_are_never_adopted_on_sqlite() {
    let (config, _dir) = sqlite_config();
    planted_ids_are_never_adopted(config).await;
}
