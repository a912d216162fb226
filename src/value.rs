//! How stored values look to actix-session handlers, and back.
//!
//! actix-session hands handlers each value as JSON text. Most of Flask's types map one to one
//! (str, int, float, bool, None, list, dict). Two MessagePack types have no JSON form, so they are
//! written as one-key objects with the tags Flask's own tagged JSON uses, which keeps them exact
//! through a Rust handler and back to Flask:
//!
//! | stored (MessagePack)          | handler sees (JSON)                          | Rust type        |
//! |-------------------------------|----------------------------------------------|------------------|
//! | bin (Python `bytes`)          | `{" b": "<standard base64>"}`                | [`Bytes`]        |
//! | timestamp ext -1 (aware datetime) | `{" d": "2024-01-02T03:04:05.123456Z"}` | [`Timestamp`]    |
//! | other extension types         | `{" x": [type, "<base64>"]}`                 | —                |
//! | float `inf`, `-inf`, `nan`    | `{" f": "inf"}`, `{" f": "-inf"}`, `{" f": "nan"}` | —          |
//!
//! A dict that itself has exactly one key that is a tag is escaped as Flask does:
//! `{" di": {"<key>__": value}}`.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use satchel_core::codec::{
    TIMESTAMP_EXT, datetime_to_rfc3339, datetime_to_timestamp, timestamp_to_datetime,
};
use satchel_core::rmpv::Value;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;

const TAG_BYTES: &str = " b";
const TAG_DATETIME: &str = " d";
const TAG_EXT: &str = " x";
const TAG_DICT: &str = " di";
/// Satchel's own tag for floats JSON cannot write: `inf`, `-inf`, `nan`.
const TAG_FLOAT: &str = " f";
const TAGS: [&str; 5] = [TAG_BYTES, TAG_DATETIME, TAG_EXT, TAG_DICT, TAG_FLOAT];

/// Bytes in a session (Python `bytes`), stored as MessagePack bin.
///
/// ```
/// # async fn handler(session: actix_session::Session) -> Result<(), actix_web::Error> {
/// use satchel::value::Bytes;
/// session.insert("avatar", Bytes(vec![0x89, b'P', b'N', b'G']))?;
/// let avatar: Option<Bytes> = session.get("avatar")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = HashMap::with_capacity(1);
        map.insert(TAG_BYTES, STANDARD.encode(&self.0));
        map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = HashMap::<String, String>::deserialize(deserializer)?;
        let text = map
            .get(TAG_BYTES)
            .ok_or_else(|| serde::de::Error::custom("expected {\" b\": base64}"))?;
        STANDARD
            .decode(text)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// An aware UTC datetime in a session (Python `datetime` with a time zone), stored as the
/// MessagePack timestamp extension that msgspec writes, so Flask reads back a `datetime`.
///
/// ```
/// # async fn handler(session: actix_session::Session) -> Result<(), actix_web::Error> {
/// use satchel::value::Timestamp;
/// session.insert("login_at", Timestamp(time::OffsetDateTime::now_utc()))?;
/// let when: Option<Timestamp> = session.get("login_at")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub OffsetDateTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = datetime_to_rfc3339(self.0)
            .ok_or_else(|| serde::ser::Error::custom("datetime outside RFC 3339's range"))?;
        let mut map = HashMap::with_capacity(1);
        map.insert(TAG_DATETIME, text);
        map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = HashMap::<String, String>::deserialize(deserializer)?;
        let text = map
            .get(TAG_DATETIME)
            .ok_or_else(|| serde::de::Error::custom("expected {\" d\": RFC 3339 text}"))?;
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// The state actix-session keeps: each value as JSON text.
pub(crate) type ActixState = HashMap<String, String>;

/// Stored session → the JSON texts handlers see.
pub(crate) fn to_actix(session: impl IntoIterator<Item = (String, Value)>) -> ActixState {
    session
        .into_iter()
        .map(|(key, value)| (key, to_json_text(value)))
        .collect()
}

/// The JSON text of one value, as `to_json(value)` would print it. Scalars, most of what
/// sessions hold, are written straight out without building a `serde_json::Value` first: this
/// runs for every key on every request.
fn to_json_text(value: Value) -> String {
    match value {
        Value::Nil => "null".to_owned(),
        Value::Boolean(true) => "true".to_owned(),
        Value::Boolean(false) => "false".to_owned(),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(u)) => u.to_string(),
            (None, None) => "null".to_owned(),
        },
        Value::String(s) => match s.into_str() {
            // Serializing a string or a `serde_json::Value` cannot fail (its keys are strings).
            Some(s) => serde_json::to_string(&s).unwrap_or_else(|_| "null".to_owned()),
            None => "null".to_owned(),
        },
        other => serde_json::to_string(&to_json(other)).unwrap_or_else(|_| "null".to_owned()),
    }
}

/// The JSON texts handlers left → the session to store. `first` keys are written first, in
/// the given order (Flask puts `_permanent` first); the rest follow sorted, so equal
/// sessions encode to equal bytes.
pub(crate) fn from_actix(state: ActixState) -> Vec<(String, Value)> {
    let mut entries: Vec<(String, String)> = state.into_iter().collect();
    entries.sort_unstable_by(|a, b| {
        let rank = |k: &str| k != satchel_core::codec::PERMANENT_KEY;
        (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0))
    });
    entries
        .into_iter()
        .map(|(key, text)| {
            let value = from_json_text(text);
            (key, value)
        })
        .collect()
}

/// The value of one JSON text from actix-session. actix-session only ever stores serde_json
/// output here; anything else is kept as the text it is rather than dropped. Strings and
/// integers, most of what sessions hold, skip building a `serde_json::Value`.
fn from_json_text(text: String) -> Value {
    match text.as_bytes().first() {
        Some(b'"') => {
            if let Ok(s) = serde_json::from_str::<String>(&text) {
                return Value::String(s.into());
            }
        }
        Some(b'-' | b'0'..=b'9') => {
            // Only JSON's own integer spelling: serde_json reads `-0` as a float, and `007`
            // is not JSON at all (kept as text below).
            let digits = text.strip_prefix('-').unwrap_or(&text);
            let canonical = !digits.starts_with('0') || text == "0";
            if canonical {
                if let Ok(i) = text.parse::<i64>() {
                    return Value::from(i);
                }
            }
        }
        _ => {}
    }
    match serde_json::from_str::<Json>(&text) {
        Ok(json) => from_json(json),
        Err(_) => Value::String(text.into()),
    }
}

fn tagged(tag: &str, value: Json) -> Json {
    let mut map = Map::with_capacity(1);
    map.insert(tag.to_owned(), value);
    Json::Object(map)
}

fn to_json(value: Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(i), _) => Json::from(i),
            (None, Some(u)) => Json::from(u),
            (None, None) => Json::Null,
        },
        Value::F32(f) => float_json(f64::from(f)),
        Value::F64(f) => float_json(f),
        Value::String(s) => match s.into_str() {
            Some(s) => Json::String(s),
            // msgspec only writes valid UTF-8; other writers' broken text has no JSON form.
            None => Json::Null,
        },
        Value::Binary(bytes) => tagged(TAG_BYTES, Json::String(STANDARD.encode(bytes))),
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let key = match key {
                    Value::String(s) => s.into_str().unwrap_or_default(),
                    // JSON keys are text; msgspec's JSON writes integer keys as decimal text too.
                    other => other.to_string(),
                };
                map.insert(key, to_json(value));
            }
            if map.len() == 1 && map.keys().all(|k| TAGS.contains(&k.as_str())) {
                let escaped = map
                    .into_iter()
                    .map(|(k, v)| (format!("{k}__"), v))
                    .collect();
                return tagged(TAG_DICT, Json::Object(escaped));
            }
            Json::Object(map)
        }
        Value::Ext(TIMESTAMP_EXT, data) => {
            match timestamp_to_datetime(&data).and_then(datetime_to_rfc3339) {
                Some(text) => tagged(TAG_DATETIME, Json::String(text)),
                None => ext_json(TIMESTAMP_EXT, &data),
            }
        }
        Value::Ext(kind, data) => ext_json(kind, &data),
    }
}

fn float_json(f: f64) -> Json {
    match serde_json::Number::from_f64(f) {
        Some(n) => Json::Number(n),
        // JSON has no infinities or NaN; tag them so they come back as floats, not None.
        None => {
            let text = if f.is_nan() {
                "nan"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            tagged(TAG_FLOAT, Json::String(text.into()))
        }
    }
}

fn ext_json(kind: i8, data: &[u8]) -> Json {
    tagged(
        TAG_EXT,
        Json::Array(vec![Json::from(kind), Json::String(STANDARD.encode(data))]),
    )
}

fn from_json(json: Json) -> Value {
    match json {
        Json::Object(map) if map.len() == 1 => {
            let Some((key, inner)) = map.into_iter().next() else {
                return Value::Map(Vec::new());
            };
            match untag(&key, inner) {
                Ok(value) => value,
                Err(inner) => Value::Map(vec![(Value::String(key.into()), from_json(inner))]),
            }
        }
        Json::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (Value::String(k.into()), from_json(v)))
                .collect(),
        ),
        Json::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        other => satchel_core::codec::json_to_value(other),
    }
}

/// Reads a one-key tagged object; gives the inner value back when it is not a valid tag.
fn untag(key: &str, inner: Json) -> Result<Value, Json> {
    match (key, inner) {
        (TAG_BYTES, Json::String(text)) => match STANDARD.decode(&text) {
            Ok(bytes) => Ok(Value::Binary(bytes)),
            Err(_) => Err(Json::String(text)),
        },
        (TAG_DATETIME, Json::String(text)) => {
            match OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339) {
                Ok(datetime) => Ok(datetime_to_timestamp(datetime)),
                Err(_) => Err(Json::String(text)),
            }
        }
        (TAG_FLOAT, Json::String(text)) => match text.as_str() {
            "inf" => Ok(Value::F64(f64::INFINITY)),
            "-inf" => Ok(Value::F64(f64::NEG_INFINITY)),
            "nan" => Ok(Value::F64(f64::NAN)),
            _ => Err(Json::String(text)),
        },
        (TAG_EXT, Json::Array(parts)) => match parts.as_slice() {
            [Json::Number(kind), Json::String(data)] => {
                match (
                    kind.as_i64().and_then(|k| i8::try_from(k).ok()),
                    STANDARD.decode(data),
                ) {
                    (Some(kind), Ok(data)) => Ok(Value::Ext(kind, data)),
                    _ => Err(Json::Array(parts)),
                }
            }
            _ => Err(Json::Array(parts)),
        },
        (TAG_DICT, Json::Object(map)) if map.len() == 1 => {
            let entries = map
                .into_iter()
                .map(|(k, v)| {
                    let k = k.strip_suffix("__").map(str::to_owned).unwrap_or(k);
                    (Value::String(k.into()), from_json(v))
                })
                .collect();
            Ok(Value::Map(entries))
        }
        (_, inner) => Err(inner),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_paths_read_and_write_what_serde_json_does() {
        let texts = [
            "0",
            "-0",
            "7",
            "-7",
            "007",
            "-007",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e3",
            "1.5",
            "\"\"",
            "\"a\\\"b\\u00e9\"",
            "\"unterminated",
            "true",
            "null",
            "[1]",
            "{\" b\": \"AA==\"}",
            "12abc",
            "-",
            "",
        ];
        for text in texts {
            let slow = match serde_json::from_str::<Json>(text) {
                Ok(json) => from_json(json),
                Err(_) => Value::String(text.into()),
            };
            let fast = from_json_text(text.to_owned());
            assert_eq!(fast, slow, "{text:?}");
            assert_eq!(
                to_json_text(fast.clone()),
                to_json(fast).to_string(),
                "{text:?}"
            );
        }
    }

    use super::*;
    use satchel_core::SessionData;

    fn round_trip(value: Value) -> Value {
        let mut session = SessionData::new();
        session.insert("k".into(), value);
        let mut entries = from_actix(to_actix(session));
        assert_eq!(entries.len(), 1);
        entries.remove(0).1
    }

    #[test]
    fn every_flask_type_survives_a_trip_through_actix_session() {
        let values = vec![
            Value::from("héllo ☃ 日本"),
            Value::from(i64::MIN),
            Value::from(u64::MAX),
            Value::F64(1.5),
            Value::F64(3.0),
            Value::Boolean(true),
            Value::Nil,
            Value::Binary(vec![0, 1, 255]),
            datetime_to_timestamp(time::macros::datetime!(2024-01-02 03:04:05.123456 UTC)),
            Value::Array(vec![Value::from(1), Value::from("a")]),
            Value::Map(vec![(Value::from("a"), Value::from(2))]),
            Value::Map(vec![(Value::from(" b"), Value::from("not bytes"))]),
            Value::Ext(5, vec![1, 2, 3]),
            Value::F64(f64::INFINITY),
            Value::F64(f64::NEG_INFINITY),
            Value::Map(vec![(Value::from(" f"), Value::from("inf"))]),
        ];
        for value in values {
            assert_eq!(round_trip(value.clone()), value);
        }
    }

    #[test]
    fn nan_survives_as_a_float() {
        let Value::F64(f) = round_trip(Value::F64(f64::NAN)) else {
            panic!("not a float")
        };
        assert!(f.is_nan());
    }

    #[test]
    fn handlers_see_tagged_bytes_and_datetimes() {
        let mut session = SessionData::new();
        session.insert("b".into(), Value::Binary(vec![0, 1]));
        session.insert(
            "d".into(),
            datetime_to_timestamp(time::macros::datetime!(2024-01-02 03:04:05 UTC)),
        );
        let state = to_actix(session);
        assert_eq!(state["b"], r#"{" b":"AAE="}"#);
        assert_eq!(state["d"], r#"{" d":"2024-01-02T03:04:05Z"}"#);
        let bytes: Bytes = serde_json::from_str(&state["b"]).unwrap();
        assert_eq!(bytes, Bytes(vec![0, 1]));
        let when: Timestamp = serde_json::from_str(&state["d"]).unwrap();
        assert_eq!(when.0, time::macros::datetime!(2024-01-02 03:04:05 UTC));
    }

    #[test]
    fn permanent_comes_first_then_keys_in_order() {
        let mut state = ActixState::new();
        state.insert("z".into(), "1".into());
        state.insert("a".into(), "2".into());
        state.insert("_permanent".into(), "true".into());
        let session = from_actix(state);
        let keys: Vec<&str> = session.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["_permanent", "a", "z"]);
    }
}
