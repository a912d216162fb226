//! What each fuzz target does with one input, shared with the root package's
//! `tests/fuzz_regressions.rs`, which replays every kept crash input through these same functions
//! on stable Rust (`#[path]`-included there and in each target).
//!
//! Every function must return normally for any input: a panic is a bug, either in the library
//! (a crash) or in an invariant asserted here (each says why it must hold).

use std::sync::OnceLock;
use std::time::Duration;

use actix_session::storage::{SessionKey, SessionStore};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::FutureExt as _;
use satchel::cookie_session::{COOKIE_SESSION_SALT, CookieSession};
use satchel::flask_cookie::{FLASK_SESSION_SALT, FlaskCookie, Signer};
use satchel::value::{Bytes, Timestamp};
use satchel::{
    Backend, Codec, CookieStore, MemoryBackend, Secret, SerializationFormat, SessionConfig,
    SessionId, SessionType, Store,
};
use satchel_core::session_id::{encoded_len, redact};

/// One target's work on one input.
pub(crate) type Check = fn(&[u8]);

/// The targets, by the name of their `fuzz_targets/<name>.rs` and `regressions/<name>/`.
pub(crate) const TARGETS: [(&str, Check); 6] = [
    ("session_id", session_id),
    ("codec_decode", codec_decode),
    ("pickle_decode", pickle_decode),
    ("flask_signer", flask_signer),
    ("cookie_session", cookie_session),
    ("value_bridge", value_bridge),
];

const SECRET: &str = "secret_key";
const OLD_SECRET: &str = "an older secret_key";
/// An id in the format Flask-Session writes (the format doc's worked example).
const ID: &str = "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM";

/// Runs a future that never waits: everything here is in-process (memory backend, cookie codec),
/// so each future is ready on its first poll.
fn ready<F: std::future::Future>(future: F) -> F::Output {
    future
        .now_or_never()
        .expect("in-process stores complete without waiting")
}

/// `SessionId::parse`: the first byte picks the id length in bytes, the rest is the text.
pub(crate) fn session_id(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    for bytes in [usize::from(n), 16, 32] {
        if let Ok(id) = SessionId::parse(&text, bytes) {
            // An id that reaches a backend key is exactly the text, of the right length, in
            // base64url: no separators, wildcards, quotes, control characters or operators.
            assert_eq!(id.as_str(), text);
            assert_eq!(text.len(), encoded_len(bytes));
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            // Logging an id never shows it whole.
            assert!(!format!("{id:?}").contains(id.as_str()));
            assert!(!id.to_string().contains(id.as_str()));
        }
    }
    // Redaction cuts on character boundaries, whatever the text.
    let _ = redact(&text);
}

/// `Codec::decode` (MessagePack, then JSON, then legacy pickle) with each reading codec, and
/// what Satchel writes for whatever it read.
pub(crate) fn codec_decode(data: &[u8]) {
    for codec in [
        Codec::default(),
        Codec::new(SerializationFormat::Json),
        Codec::default().with_legacy_pickle(false),
    ] {
        if let Ok(session) = codec.decode(data) {
            rewrite(&session);
        }
    }
}

/// A decoded session written back in either format reads again, and writing what was read
/// gives the same bytes: a session read once is stable under later writes.
fn rewrite(session: &satchel::SessionData) {
    for format in [SerializationFormat::Msgpack, SerializationFormat::Json] {
        let codec = Codec::new(format);
        let Ok(bytes) = codec.encode(session) else {
            // Some values have no JSON form (binary, extension types); refusing is fine.
            continue;
        };
        let again = Codec::default()
            .decode(&bytes)
            .expect("what Satchel writes, Satchel reads");
        assert_eq!(
            codec
                .encode(&again)
                .expect("re-encoding what was just read"),
            bytes,
            "{} re-encoding is stable",
            format.as_str()
        );
    }
}

/// `satchel_core::pickle::decode` directly (the codec reaches it only for input that is neither
/// MessagePack nor JSON).
pub(crate) fn pickle_decode(data: &[u8]) {
    if let Ok(session) = satchel_core::pickle::decode(data) {
        rewrite(&session);
        // The codec reads the same pickle the same way (MessagePack and JSON never accept a
        // pickle, which starts with 0x80 or an opcode letter).
        if let Ok(via_codec) = Codec::default().decode(data) {
            let msgpack = Codec::default();
            assert_eq!(
                msgpack.encode(&via_codec).ok(),
                msgpack.encode(&session).ok()
            );
        }
    }
}

struct Signers {
    /// `SECRET_KEY` then an older key: signs with the first, verifies with either.
    both: Signer,
    current: Signer,
    old: Signer,
    /// Flask-Session's cookie with `SESSION_USE_SIGNER`, and without.
    signed_cookie: FlaskCookie,
    plain_cookie: FlaskCookie,
}

fn signers() -> &'static Signers {
    static SIGNERS: OnceLock<Signers> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        let both = Signer::new(
            &[Secret::new(SECRET), Secret::new(OLD_SECRET)],
            FLASK_SESSION_SALT,
        );
        let current = Signer::new(&[Secret::new(SECRET)], FLASK_SESSION_SALT);
        let old = Signer::new(&[Secret::new(OLD_SECRET)], FLASK_SESSION_SALT);
        let mut config = SessionConfig::default();
        config.use_signer = true;
        config.secret_key = Some(Secret::new(SECRET));
        let signed = FlaskCookie::new(&config).expect("signer config");
        let plain = FlaskCookie::new(&SessionConfig::default()).expect("default config");
        Signers {
            both,
            current,
            old,
            signed_cookie: signed,
            plain_cookie: plain,
        }
    })
}

/// itsdangerous' `Signer::unsign` and Flask-Session's cookie → id.
pub(crate) fn flask_signer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Signers {
        both,
        current,
        old,
        signed_cookie,
        plain_cookie,
    } = signers();
    if let Some(value) = both.unsign(&text) {
        // Only the one canonical signature of a value verifies (base64 with stray bits or
        // padding does not), so a signed cookie cannot be varied into another accepted one.
        assert!(
            text == both.sign(value) || text == old.sign(value),
            "a non-canonical signature was accepted"
        );
        assert!(text.starts_with(value));
    }
    // Signing any text (dots included) and unsigning it gives the text back.
    let signed = both.sign(&text);
    assert_eq!(both.unsign(&signed), Some(&*text));
    assert_eq!(
        old.unsign(&signed),
        None,
        "another key's signature verified"
    );

    // Flask-Session verifies with SECRET_KEY only.
    assert_eq!(signed_cookie.session_id(&text), current.unsign(&text));
    assert_eq!(plain_cookie.session_id(&text), Some(&*text));
}

fn cookie_codec() -> &'static (CookieSession, Signer, CookieStore) {
    static CODEC: OnceLock<(CookieSession, Signer, CookieStore)> = OnceLock::new();
    CODEC.get_or_init(|| {
        let codec = CookieSession::new(
            &Secret::new(SECRET),
            &[Secret::new(OLD_SECRET)],
            Duration::from_secs(3600),
        );
        let signer = Signer::new(&[Secret::new(SECRET)], COOKIE_SESSION_SALT);
        let mut config = SessionConfig::default();
        config.session_type = SessionType::Cookie;
        config.secret_key = Some(Secret::new(SECRET));
        let store = CookieStore::new(&config).expect("cookie store config");
        (codec, signer, store)
    })
}

/// itsdangerous' timestamp encoding: big-endian, leading zero bytes stripped, base64url.
fn timestamp(unix: i64) -> String {
    let bytes = unix.to_be_bytes();
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    URL_SAFE_NO_PAD.encode(&bytes[start..])
}

/// Flask's signed cookie session (`SESSION_TYPE=cookie`): `CookieSession::loads` on the raw
/// text, and on the text signed with the key (so the fuzzer reaches the timestamp, base64, zlib
/// and tagged-JSON decoders behind the signature), then through `CookieStore` as actix-session
/// calls it.
pub(crate) fn cookie_session(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (codec, signer, store) = cookie_codec();
    let now = 1_700_000_000;
    let _ = codec.loads(&text, now);
    let _ = codec.resign(&text, now);

    // `text` as the whole signed part (`payload.timestamp`), and as the payload alone.
    for signed in [
        signer.sign(&text),
        signer.sign(&format!("{text}.{}", timestamp(now))),
    ] {
        if let Ok(session) = codec.loads(&signed, now) {
            // What Satchel writes for a session it read, Satchel (and so Flask) reads back.
            let cookie = codec.dumps(&session, now);
            codec
                .loads(&cookie, now)
                .expect("a cookie Satchel wrote reads back");
        }
        // Re-signing renews the timestamp only (it checks the signature, not the age: the
        // cookie layer re-signs cookies the store has just accepted), so the session is kept.
        if let (Ok(session), Some(resigned)) =
            (codec.loads(&signed, now), codec.resign(&signed, now))
        {
            assert_eq!(codec.loads(&resigned, now), Ok(session));
        }
    }

    // The store as actix-session drives it: load, write back unchanged, load again.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(now, |d| i64::try_from(d.as_secs()).unwrap_or(now));
    let signed = signer.sign(&format!("{text}.{}", timestamp(unix)));
    let Ok(key) = SessionKey::try_from(signed) else {
        return;
    };
    let Some(state) = ready(store.load(&key)).expect("the cookie store never fails a load") else {
        return;
    };
    let ttl = time::Duration::hours(1);
    if let Ok(new_key) = ready(store.update(key, state.clone(), &ttl)) {
        let again = ready(store.load(&new_key)).expect("the cookie store never fails a load");
        assert_eq!(
            again,
            Some(state),
            "a session written back unchanged reads the same"
        );
    }
}

fn memory_store() -> &'static Store<MemoryBackend> {
    static STORE: OnceLock<Store<MemoryBackend>> = OnceLock::new();
    STORE.get_or_init(|| Store::new(MemoryBackend::new(), &SessionConfig::default()))
}

/// The value bridge (stored MessagePack/JSON/pickle values ↔ the JSON texts actix-session
/// handlers see), through `Store` over the memory backend, and the handler-side types.
pub(crate) fn value_bridge(data: &[u8]) {
    let _ = serde_json::from_slice::<Bytes>(data);
    let _ = serde_json::from_slice::<Timestamp>(data);

    let store = memory_store();
    let backend_key = format!("session:{ID}");
    let ttl = Duration::from_secs(3600);
    ready(store.backend().store(&backend_key, data, ttl)).expect("memory store");
    let key = || SessionKey::try_from(ID.to_owned()).expect("an id is a session key");
    let loaded = ready(store.load(&key())).expect("a corrupt entry is no session, not an error");
    let Some(state) = loaded else {
        return;
    };
    // Written back unchanged by a handler, the session reads the same: the bridge loses
    // nothing a handler saw.
    let only_permanent = state.keys().all(|k| k == "_permanent");
    let actix_ttl = time::Duration::hours(1);
    ready(store.update(key(), state.clone(), &actix_ttl))
        .expect("writing back a session that was just read");
    let again = ready(store.load(&key())).expect("reading back");
    if only_permanent {
        // Flask-Session removes a session holding nothing but `_permanent`.
        assert_eq!(again, None);
    } else {
        assert_eq!(
            again,
            Some(state),
            "a session written back unchanged reads the same"
        );
    }
}
