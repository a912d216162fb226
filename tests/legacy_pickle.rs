//! Sessions pickled by the real Flask-Session 0.5.0 (fixtures made by
//! `tests/interop/make_pickle_fixture.sh`) are read, and re-encode to exactly the MessagePack
//! bytes Flask-Session 0.8 writes after reading them; a pickle that needs a class is refused.

use satchel::Codec;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/interop/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&fixture("flask_session_0.5.0.json")).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn flask_session_0_5_pickles_become_flask_session_0_8_msgpack() {
    let manifest = manifest();
    for name in [
        "flask_session_0.5.0_redis.pickle",
        "flask_session_0.5.0_memcached.pickle",
    ] {
        let expected = manifest["files"][name]["msgpack_hex"].as_str().unwrap();
        let session = Codec::default()
            .decode(&fixture(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let keys: Vec<&str> = session.keys().map(String::as_str).collect();
        let expected_keys: Vec<&str> = manifest["files"][name]["keys_in_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, expected_keys, "{name}");
        let msgpack = Codec::default().encode(&session).unwrap();
        assert_eq!(hex(&msgpack), expected, "{name}");
    }
}

#[test]
fn a_pickle_that_needs_a_class_is_refused() {
    assert!(
        Codec::default()
            .decode(&fixture("flask_session_0.5.0_redis_datetime.pickle"))
            .is_err()
    );
}

#[test]
fn the_pickle_fallback_can_be_turned_off() {
    let codec = Codec::default().with_legacy_pickle(false);
    assert!(
        codec
            .decode(&fixture("flask_session_0.5.0_redis.pickle"))
            .is_err()
    );
}
