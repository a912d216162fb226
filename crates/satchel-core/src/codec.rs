//! The value codec: a session map to bytes and back, in Flask-Session's formats.
//!
//! Flask-Session 0.7+ stores `msgspec.msgpack.encode(dict(session))` (or msgspec JSON) and reads
//! whichever of the two it finds, MessagePack first. This module does the same with `rmpv`, whose
//! encoder picks the smallest width for every integer, string, array and map exactly as msgspec
//! does, so Satchel writes the same bytes Flask-Session writes for the same session.
//!
//! The session map keeps insertion order (Flask's dict order) and keeps the `_permanent` key.

use base64::Engine as _;
use indexmap::IndexMap;
use rmpv::Value;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use time::OffsetDateTime;

use crate::error::CodecError;

/// A decoded session: Flask's dict, keys in insertion order, values in MessagePack's data model.
pub type SessionData = IndexMap<String, Value>;

/// The key Flask-Session stores for permanent sessions (`"_permanent": true`).
pub const PERMANENT_KEY: &str = "_permanent";

/// MessagePack's extension type for timestamps, which msgspec uses for aware datetimes.
pub const TIMESTAMP_EXT: i8 = -1;

/// Nesting deeper than this is refused when decoding, so hostile bytes cannot exhaust the stack.
const MAX_DEPTH: usize = 256;

/// How sessions are written (`SESSION_SERIALIZATION_FORMAT`). Reading accepts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerializationFormat {
    /// MessagePack, Flask-Session's default (`msgpack`).
    #[default]
    #[serde(alias = "messagepack")]
    Msgpack,
    /// JSON (`json`).
    Json,
}

impl SerializationFormat {
    /// The name Flask-Session uses for this format.
    pub fn as_str(self) -> &'static str {
        match self {
            SerializationFormat::Msgpack => "msgpack",
            SerializationFormat::Json => "json",
        }
    }
}

/// Encodes sessions in one format; decodes MessagePack, JSON and (unless turned off) the pickles
/// Flask-Session 0.4–0.6 wrote.
///
/// # Example
///
/// ```
/// use satchel_core::{Codec, SerializationFormat, SessionData};
///
/// let mut session = SessionData::new();
/// session.insert("_permanent".into(), true.into());
/// session.insert("username".into(), "alice".into());
/// session.insert("n".into(), 3.into());
///
/// let bytes = Codec::new(SerializationFormat::Msgpack).encode(&session).unwrap();
/// // The exact bytes Flask-Session 0.8 stores for the same session.
/// assert_eq!(bytes[0], 0x83);
/// assert_eq!(bytes.len(), 31);
/// assert_eq!(Codec::default().decode(&bytes).unwrap(), session);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    format: SerializationFormat,
    legacy_pickle: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new(SerializationFormat::default())
    }
}

impl Codec {
    /// A codec that writes `format` and reads MessagePack, JSON and legacy pickles.
    pub fn new(format: SerializationFormat) -> Codec {
        Codec {
            format,
            legacy_pickle: true,
        }
    }

    /// Whether to read values pickled by Flask-Session 0.4–0.6 (plain data only, see
    /// [`crate::pickle`]) when they are neither MessagePack nor JSON. On by default
    /// (`SESSION_PICKLE_FALLBACK`); a session read this way is written back in this codec's
    /// format on its next write.
    ///
    /// ```
    /// use satchel_core::{Codec, SerializationFormat};
    ///
    /// // python3 -c "import pickle,sys; sys.stdout.buffer.write(pickle.dumps({'n': 3}, protocol=2))"
    /// let pickled = b"\x80\x02}q\x00X\x01\x00\x00\x00nq\x01K\x03s.";
    /// let codec = Codec::new(SerializationFormat::Msgpack);
    /// assert_eq!(codec.decode(pickled).unwrap()["n"], rmpv::Value::from(3));
    /// assert!(codec.with_legacy_pickle(false).decode(pickled).is_err());
    /// ```
    pub fn with_legacy_pickle(self, enabled: bool) -> Codec {
        Codec {
            legacy_pickle: enabled,
            ..self
        }
    }

    /// The format this codec writes.
    pub fn format(&self) -> SerializationFormat {
        self.format
    }

    /// Whether this codec reads legacy pickles.
    pub fn legacy_pickle(&self) -> bool {
        self.legacy_pickle
    }

    /// Encodes a session in this codec's format.
    pub fn encode(&self, session: &SessionData) -> Result<Vec<u8>, CodecError> {
        self.encode_entries(session.iter().map(|(key, value)| (key.as_str(), value)))
    }

    /// Encodes entries in the order given, with distinct keys: the same bytes as
    /// [`Codec::encode`] of a map that holds them in that order. For callers that have the
    /// entries in a list already; building a [`SessionData`] first costs a hash and an index
    /// slot per key on every request.
    ///
    /// ```
    /// use satchel_core::{Codec, SessionData};
    ///
    /// let entries = [("_permanent".to_owned(), rmpv::Value::from(true))];
    /// let codec = Codec::default();
    /// let bytes = codec.encode_entries(entries.iter().map(|(k, v)| (k.as_str(), v))).unwrap();
    /// let map: SessionData = entries.into_iter().collect();
    /// assert_eq!(bytes, codec.encode(&map).unwrap());
    /// ```
    pub fn encode_entries<'a, I>(&self, entries: I) -> Result<Vec<u8>, CodecError>
    where
        I: ExactSizeIterator<Item = (&'a str, &'a Value)> + Clone,
    {
        match self.format {
            SerializationFormat::Msgpack => encode_msgpack(entries),
            SerializationFormat::Json => {
                serde_json::to_vec(&JsonMap(entries)).map_err(|e| CodecError::Unencodable {
                    format: "json",
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Decodes stored bytes: MessagePack first, then JSON, then (if enabled) a legacy pickle,
    /// as Flask-Session reads them.
    pub fn decode(&self, bytes: &[u8]) -> Result<SessionData, CodecError> {
        self.decode_entries(bytes)
            .map(|entries| entries.into_iter().collect())
    }

    /// Decodes stored bytes as [`Codec::decode`] does, into a list of entries in stored order,
    /// for callers that move them on without lookups. A key stored twice (MessagePack allows
    /// it) appears twice; a map keeps the last value, as Python's dict does.
    ///
    /// ```
    /// use satchel_core::Codec;
    ///
    /// let entries = Codec::default().decode_entries(br#"{"n": 3}"#).unwrap();
    /// assert_eq!(entries, [("n".to_owned(), rmpv::Value::from(3))]);
    /// ```
    pub fn decode_entries(&self, bytes: &[u8]) -> Result<Vec<(String, Value)>, CodecError> {
        decode_msgpack(bytes)
            .or_else(|| decode_json(bytes))
            .or_else(|| {
                self.decode_legacy_pickle(bytes)
                    .map(|session| session.into_iter().collect())
            })
            .ok_or(CodecError::Undecodable { len: bytes.len() })
    }

    fn decode_legacy_pickle(&self, bytes: &[u8]) -> Option<SessionData> {
        if !self.legacy_pickle {
            return None;
        }
        match crate::pickle::decode(bytes) {
            Ok(session) => {
                tracing::debug!(
                    format = self.format.as_str(),
                    "read a legacy pickled session"
                );
                Some(session)
            }
            Err(error) => {
                tracing::debug!(%error, "stored session is not a plain-data pickle either");
                None
            }
        }
    }
}

fn encode_msgpack<'a>(
    entries: impl ExactSizeIterator<Item = (&'a str, &'a Value)>,
) -> Result<Vec<u8>, CodecError> {
    fn unencodable(e: impl std::fmt::Display) -> CodecError {
        CodecError::Unencodable {
            format: "msgpack",
            reason: e.to_string(),
        }
    }
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail for I/O reasons; errors here would be length overflows.
    rmp::encode::write_map_len(&mut out, map_len(entries.len())?).map_err(unencodable)?;
    for (key, value) in entries {
        rmp::encode::write_str(&mut out, key).map_err(unencodable)?;
        rmpv::encode::write_value(&mut out, value).map_err(unencodable)?;
    }
    Ok(out)
}

fn map_len(len: usize) -> Result<u32, CodecError> {
    u32::try_from(len).map_err(|_| CodecError::Unencodable {
        format: "msgpack",
        reason: format!("{len} keys is more than MessagePack allows"),
    })
}

fn decode_msgpack(bytes: &[u8]) -> Option<Vec<(String, Value)>> {
    let mut rest = bytes;
    // Borrowing from the slice first, then copying each value once, skips the `io::Read`
    // plumbing of rmpv's `read_value` for every string (see `codec/decode` in benches/micro.rs).
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rest, MAX_DEPTH).ok()?;
    // Trailing bytes mean this was not MessagePack (JSON's `{` is a valid positive fixint).
    if !rest.is_empty() {
        return None;
    }
    let rmpv::ValueRef::Map(entries) = value else {
        return None;
    };
    let mut session = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let rmpv::ValueRef::String(key) = key else {
            return None;
        };
        session.push((key.into_str()?.to_owned(), value.to_owned()));
    }
    Some(session)
}

fn decode_json(bytes: &[u8]) -> Option<Vec<(String, Value)>> {
    let serde_json::Value::Object(map) = serde_json::from_slice(bytes).ok()? else {
        return None;
    };
    Some(
        map.into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    )
}

/// Converts a JSON value into MessagePack's data model (integers stay integers).
pub fn json_to_value(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(s.into()),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(json_to_value).collect())
        }
        serde_json::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (Value::String(k.into()), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Reads a MessagePack timestamp extension (type -1, in its 4-, 8- or 12-byte forms).
///
/// ```
/// use satchel_core::codec::{datetime_to_timestamp, timestamp_to_datetime};
/// let t = time::macros::datetime!(2024-01-02 03:04:05.5 UTC);
/// let rmpv::Value::Ext(-1, bytes) = datetime_to_timestamp(t) else { unreachable!() };
/// assert_eq!(timestamp_to_datetime(&bytes), Some(t));
/// ```
pub fn timestamp_to_datetime(data: &[u8]) -> Option<OffsetDateTime> {
    let (secs, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let packed = u64::from_be_bytes(data.try_into().ok()?);
            ((packed & 0x3_ffff_ffff) as i64, (packed >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..12].try_into().ok()?),
            u32::from_be_bytes(data[0..4].try_into().ok()?),
        ),
        _ => return None,
    };
    if nanos >= 1_000_000_000 {
        return None;
    }
    let base = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    Some(base + time::Duration::nanoseconds(i64::from(nanos)))
}

/// Writes a datetime as a MessagePack timestamp extension in the smallest form that holds it,
/// as msgspec does for aware datetimes.
pub fn datetime_to_timestamp(datetime: OffsetDateTime) -> Value {
    let secs = datetime.unix_timestamp();
    let nanos = datetime.nanosecond();
    let data = if nanos == 0 && (0..=i64::from(u32::MAX)).contains(&secs) {
        (secs as u32).to_be_bytes().to_vec()
    } else if (0..(1i64 << 34)).contains(&secs) {
        ((u64::from(nanos) << 34) | secs as u64)
            .to_be_bytes()
            .to_vec()
    } else {
        let mut data = nanos.to_be_bytes().to_vec();
        data.extend_from_slice(&secs.to_be_bytes());
        data
    };
    Value::Ext(TIMESTAMP_EXT, data)
}

/// RFC 3339 text for a datetime, with `Z` for UTC as msgspec writes it.
pub fn datetime_to_rfc3339(datetime: OffsetDateTime) -> Option<String> {
    datetime
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Serialises session entries as a JSON object in their order, the way msgspec's JSON encoder
/// does: bytes as padded standard base64, timestamps as RFC 3339 text.
struct JsonMap<I>(I);

impl<'a, I> serde::Serialize for JsonMap<I>
where
    I: ExactSizeIterator<Item = (&'a str, &'a Value)> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0.clone() {
            map.serialize_entry(key, &JsonValue(value))?;
        }
        map.end()
    }
}

struct JsonValue<'a>(&'a Value);

/// A finite float as msgspec writes it: the shortest text that reads back exactly, with
/// exponents as `1e300`. serde_json writes `1e+300`, which reads the same but is not the same
/// bytes, so the float is formatted with `ryu` and passed through as raw JSON.
fn json_float<S: serde::Serializer>(f: f64, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(f).to_owned();
    let raw = serde_json::value::RawValue::from_string(text).map_err(S::Error::custom)?;
    serde::Serialize::serialize(&raw, serializer)
}

impl serde::Serialize for JsonValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Nil => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
                (Some(i), _) => serializer.serialize_i64(i),
                (None, Some(u)) => serializer.serialize_u64(u),
                (None, None) => Err(S::Error::custom("integer out of range")),
            },
            // msgspec writes non-finite floats as null.
            Value::F32(f) if f.is_finite() => json_float(f64::from(*f), serializer),
            Value::F64(f) if f.is_finite() => json_float(*f, serializer),
            Value::F32(_) | Value::F64(_) => serializer.serialize_unit(),
            Value::String(s) => match s.as_str() {
                Some(s) => serializer.serialize_str(s),
                None => Err(S::Error::custom("string is not valid UTF-8")),
            },
            Value::Binary(bytes) => {
                serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&JsonValue(item))?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    match key {
                        Value::String(s) => map.serialize_key(s.as_str().unwrap_or_default())?,
                        // JSON keys are text; msgspec turns integer keys into their decimal text.
                        Value::Integer(i) => map.serialize_key(&i.to_string())?,
                        _ => return Err(S::Error::custom("map key is neither text nor integer")),
                    }
                    map.serialize_value(&JsonValue(value))?;
                }
                map.end()
            }
            Value::Ext(TIMESTAMP_EXT, data) => {
                match timestamp_to_datetime(data).and_then(datetime_to_rfc3339) {
                    Some(text) => serializer.serialize_str(&text),
                    None => Err(S::Error::custom("malformed timestamp extension")),
                }
            }
            Value::Ext(kind, _) => Err(S::Error::custom(format!(
                "MessagePack extension type {kind} has no JSON form"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> SessionData {
        let mut s = SessionData::new();
        s.insert(PERMANENT_KEY.into(), true.into());
        s.insert("username".into(), "alice".into());
        s.insert("n".into(), 3.into());
        s
    }

    /// The bytes Flask-Session 0.8.0 stored in Redis for this session (format doc §4.2).
    const FLASK_ALICE: [u8; 31] = [
        0x83, 0xaa, 0x5f, 0x70, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0xc3, 0xa8, 0x75,
        0x73, 0x65, 0x72, 0x6e, 0x61, 0x6d, 0x65, 0xa5, 0x61, 0x6c, 0x69, 0x63, 0x65, 0xa1, 0x6e,
        0x03,
    ];

    #[test]
    fn msgpack_matches_flask_session_bytes() {
        let codec = Codec::new(SerializationFormat::Msgpack);
        assert_eq!(codec.encode(&alice()).unwrap(), FLASK_ALICE);
        assert_eq!(codec.decode(&FLASK_ALICE).unwrap(), alice());
    }

    #[test]
    fn json_matches_flask_session_text_and_keeps_order() {
        let codec = Codec::new(SerializationFormat::Json);
        let bytes = codec.encode(&alice()).unwrap();
        assert_eq!(bytes, br#"{"_permanent":true,"username":"alice","n":3}"#);
        let decoded = Codec::default().decode(&bytes).unwrap();
        assert_eq!(decoded, alice());
        assert_eq!(
            decoded.keys().collect::<Vec<_>>(),
            ["_permanent", "username", "n"]
        );
    }

    #[test]
    fn flashes_decode_as_flask_writes_them() {
        let bytes =
            b"\x82\xaa_permanent\xc3\xa8_flashes\x92\x92\xa7message\xa5hello\x92\xa5error\xa3bad";
        let session = Codec::default().decode(bytes).unwrap();
        assert_eq!(
            session["_flashes"],
            Value::Array(vec![
                Value::Array(vec!["message".into(), "hello".into()]),
                Value::Array(vec!["error".into(), "bad".into()]),
            ])
        );
        assert_eq!(Codec::default().encode(&session).unwrap(), bytes);
    }

    #[test]
    fn garbage_and_non_maps_are_undecodable() {
        let codec = Codec::default();
        for bad in [
            &b""[..],
            b"\x93\x01\x02\x03",
            b"[1,2,3]",
            b"\x83\xaa_permanent",
            b"\xdd\xff\xff\xff\xff",
            b"{\"a\":",
            b"\x81\x01\x02",
        ] {
            assert!(codec.decode(bad).is_err(), "{bad:?}");
        }
    }

    // `{'_permanent': True, 'username': 'alice', 'n': 3}` as Flask-Session 0.4–0.6 stored it:
    // python3 -c "import pickle,sys; sys.stdout.buffer.write(pickle.dumps(
    //     {'_permanent': True, 'username': 'alice', 'n': 3}, protocol=N))"
    // with N = 0 (its memcached backend) and 4 (Python 3.8+'s default, its other backends).
    const PICKLED_ALICE_0: &[u8] =
        b"(dp0\nV_permanent\np1\nI01\nsVusername\np2\nValice\np3\nsVn\np4\nI3\ns.";
    const PICKLED_ALICE_4: &[u8] = b"\x80\x04\x95,\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\n_permanent\x94\x88\x8c\x08username\x94\x8c\x05alice\x94\x8c\x01n\x94K\x03u.";

    #[test]
    fn legacy_pickles_are_read_and_rewritten_as_flask_session_msgpack() {
        for pickled in [PICKLED_ALICE_0, PICKLED_ALICE_4] {
            let codec = Codec::new(SerializationFormat::Msgpack);
            assert!(codec.legacy_pickle());
            let session = codec.decode(pickled).unwrap();
            assert_eq!(session, alice());
            assert_eq!(
                session.keys().collect::<Vec<_>>(),
                ["_permanent", "username", "n"]
            );
            assert_eq!(codec.encode(&session).unwrap(), FLASK_ALICE);
        }
    }

    #[test]
    fn legacy_pickles_are_undecodable_with_the_fallback_off() {
        let codec = Codec::default().with_legacy_pickle(false);
        assert!(!codec.legacy_pickle());
        for pickled in [PICKLED_ALICE_0, PICKLED_ALICE_4] {
            assert!(matches!(
                codec.decode(pickled),
                Err(CodecError::Undecodable { .. })
            ));
        }
        // MessagePack and JSON are unaffected.
        assert_eq!(codec.decode(&FLASK_ALICE).unwrap(), alice());
    }

    #[test]
    fn pickles_that_need_a_class_or_global_are_undecodable() {
        for bad in [
            &b"cos\nsystem\n(S'echo pwned'\ntR."[..],
            b"\x80\x04\x95\"\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94.",
        ] {
            let err = Codec::default().decode(bad).unwrap_err();
            assert!(matches!(err, CodecError::Undecodable { .. }));
            assert!(err.to_string().contains("pickle"), "{err}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut bytes = vec![0x81, 0xa1, b'a'];
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        assert!(Codec::default().decode(&bytes).is_err());
        let json = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Codec::default().decode(json.as_bytes()).is_err());
    }

    #[test]
    fn timestamps_round_trip_in_all_three_widths() {
        for t in [
            time::macros::datetime!(2024-01-02 03:04:05 UTC),
            time::macros::datetime!(2024-01-02 03:04:05.123456789 UTC),
            time::macros::datetime!(1960-01-02 03:04:05.5 UTC),
        ] {
            let Value::Ext(TIMESTAMP_EXT, data) = datetime_to_timestamp(t) else {
                panic!("not a timestamp")
            };
            assert_eq!(timestamp_to_datetime(&data), Some(t));
        }
        let Value::Ext(_, data) =
            datetime_to_timestamp(time::macros::datetime!(2024-01-02 03:04:05 UTC))
        else {
            panic!()
        };
        assert_eq!(data.len(), 4);
    }

    #[test]
    fn json_floats_are_written_as_msgspec_writes_them() {
        let mut s = SessionData::new();
        for (k, f) in [
            ("a", 1e300),
            ("b", 1.5e-7),
            ("c", 1e16),
            ("d", 123456789012345678.0),
        ] {
            s.insert(k.into(), Value::F64(f));
        }
        let bytes = Codec::new(SerializationFormat::Json).encode(&s).unwrap();
        // msgspec.json.encode of the same dict (msgspec 0.22.0).
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":1e300,"b":1.5e-7,"c":1e16,"d":1.2345678901234568e17}"#
        );
    }

    #[test]
    fn json_writes_bytes_as_base64_and_timestamps_as_rfc3339() {
        let mut s = SessionData::new();
        s.insert("b".into(), Value::Binary(vec![0, 1]));
        s.insert(
            "d".into(),
            datetime_to_timestamp(time::macros::datetime!(2024-01-02 03:04:05 UTC)),
        );
        let bytes = Codec::new(SerializationFormat::Json).encode(&s).unwrap();
        assert_eq!(bytes, br#"{"b":"AAE=","d":"2024-01-02T03:04:05Z"}"#);
    }
}
