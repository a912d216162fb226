"""Drives Satchel <-> Flask-Session interop checks for one backend.

Run by ``tests/flask_interop.rs``, which starts one Satchel app per settings variant and passes

  SATCHEL_INTEROP_BACKEND   sqlite | postgres | mysql | redis | memcached | mongodb
  SATCHEL_INTEROP_VARIANTS  JSON list of {"name", "url" (the Satchel app), "settings"}

For each variant the same settings configure a real Flask 3.1 + Flask-Session 0.8 app
(``app.py``, driven in-process through Flask's test client); the Satchel app is driven over HTTP
with urllib. Cookies are carried by hand between the two, as one browser on one domain would.
Stored records are read through the backend's own Python client (``records.py``) and compared
with what Flask-Session stores for the same content, and with msgspec's encoding of it.

Every check runs even when an earlier one failed; the exit status is 1 if any failed, and the
output names each failure with what was sent, what was expected and what came back.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
import warnings
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgspec  # noqa: E402
from flask_session.defaults import Defaults  # noqa: E402
from itsdangerous import Signer  # noqa: E402

import records  # noqa: E402
import values  # noqa: E402
from app import create_app  # noqa: E402

UTC = timezone.utc
TTL_TOLERANCE = 2.0

# Every type a Flask session holds. Satchel writes `_permanent` first, then the keys sorted
# (actix-session keeps entries in a HashMap, so insertion order is lost); Flask-Session writes
# insertion order. So every dict the tests store has its keys sorted, and Flask inserts them in
# that order: equal content must then be equal bytes.
SAMPLE = dict(sorted({
    "bool_false": False,
    "bool_true": True,
    "bytes": b"\x00\x01\x7f\x80\xfe\xff binary",
    "bytes_empty": b"",
    "clé ☃ 日本": "non-ASCII key",
    "datetime": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    "datetime_far": datetime(2500, 1, 1, 0, 0, 0, tzinfo=UTC),
    "datetime_moon": datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
    "datetime_whole": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    "dict": {"a": 1, "nested": {"b": [1, "two", None]}, "z": {}},
    "dict_empty": {},
    "dict_tag_like": {" b": "not bytes"},
    "dict_tag_like_d": {" d": "not a date"},
    "float": 1.5,
    "float_big": 1e300,
    "float_neg_zero": -0.0,
    "float_tiny": 5e-324,
    "float_whole": 3.0,
    "int_max": 2**63 - 1,
    "int_min": -(2**63),
    "int_u64_max": 2**64 - 1,
    "int_zero": 0,
    "list": [1, "a", None, [True, 2.5], {"k": b"\x01"}],
    "list_empty": [],
    "none": None,
    "str": "héllo ☃ 日本",
    "str_control": "tab\t nul\x00 quote\" backslash\\ emoji 🎒",
    "str_empty": "",
}.items()))

NONFINITE = {"float_inf": math.inf, "float_nan": math.nan, "float_ninf": -math.inf}

FLASHES = [["message", "hello"], ["error", "bad ☃ 日本"]]


class CheckFailed(Exception):
    pass


def check(condition, what, **details):
    if not condition:
        lines = [what]
        for name, value in details.items():
            lines.append(f"    {name}: {value!r}")
        raise CheckFailed("\n".join(lines))


# ----------------------------------------------------------------------------------------------
# Cookies


def parse_set_cookie(header: str):
    """`name=value; Attr=x; Flag` -> (name, value, [(attr, value-or-None), ...])."""
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = []
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        attrs.append((key, val if sep else None))
    return name, value, attrs


def shape_of_set_cookie(header: str | None):
    """Set-Cookie with the value and the Expires date abstracted, for comparing two apps."""
    if header is None:
        return None
    name, value, attrs = parse_set_cookie(header)
    shown = [f"{name}={'<value>' if value else ''}"]
    for key, val in attrs:
        if key.lower() == "expires" and not val.startswith("Thu, 01 Jan 1970"):
            shown.append(f"{key}=<date>")
        else:
            shown.append(key if val is None else f"{key}={val}")
    return "; ".join(shown)


def expires_of(header: str | None):
    if header is None:
        return None
    for key, val in parse_set_cookie(header)[2]:
        if key.lower() == "expires":
            return parsedate_to_datetime(val)
    return None


class Response:
    def __init__(self, status, body, headers, cookie_name):
        self.status = status
        self.body = body
        self.headers = headers  # list of (name, value)
        self.cookie_name = cookie_name

    def header_values(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def set_cookie(self):
        """The session's Set-Cookie header, or None; fails on more than one."""
        found = [h for h in self.header_values("Set-Cookie")
                 if parse_set_cookie(h)[0] == self.cookie_name]
        check(len(found) <= 1, "more than one session Set-Cookie", headers=found)
        return found[0] if found else None

    @property
    def cookie(self):
        """The session cookie's new value ('' for a deletion), or None when not set."""
        header = self.set_cookie
        return None if header is None else parse_set_cookie(header)[1]

    def json(self):
        return json.loads(self.body)


# ----------------------------------------------------------------------------------------------
# The two apps


class FlaskSide:
    label = "Flask"

    def __init__(self, settings):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.app = create_app(settings)
        self.client = self.app.test_client(use_cookies=False)
        self.cookie_name = self.app.config["SESSION_COOKIE_NAME"]

    def request(self, method, path, cookie=None, body=None):
        headers = {}
        if cookie is not None:
            headers["Cookie"] = f"{self.cookie_name}={cookie}"
        kwargs = {"headers": headers}
        if body is not None:
            # Not `json=`: Flask's JSON provider sorts keys, and the order is part of the test.
            kwargs["data"] = json.dumps(body, ensure_ascii=False).encode()
            kwargs["content_type"] = "application/json"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resp = self.client.open(path, method=method, **kwargs)
        result = Response(resp.status_code, resp.get_data(), list(resp.headers.items()),
                          self.cookie_name)
        check(result.status == 200, f"Flask {method} {path} answered {result.status}",
              body=result.body[:2000])
        return result

    def set(self, data, cookie=None):
        return self.request("POST", "/set", cookie, values.to_wire(data))

    def get(self, cookie):
        return self.request("GET", "/get", cookie)


class RustSide:
    label = "Satchel"

    def __init__(self, url, cookie_name):
        self.url = url
        self.cookie_name = cookie_name

    def request(self, method, path, cookie=None, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if cookie is not None:
            req.add_header("Cookie", f"{self.cookie_name}={cookie}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                result = Response(resp.status, resp.read(), list(resp.headers.items()),
                                  self.cookie_name)
        except urllib.error.HTTPError as error:
            result = Response(error.code, error.read(), list(error.headers.items()),
                              self.cookie_name)
        check(result.status == 200, f"Satchel {method} {path} answered {result.status}",
              body=result.body[:2000], cookie=cookie)
        return result

    def set(self, data, cookie=None):
        return self.request("POST", "/set", cookie, values.to_wire(data))

    def get(self, cookie):
        return self.request("GET", "/get", cookie)


# ----------------------------------------------------------------------------------------------
# One variant


class Variant:
    def __init__(self, backend, spec):
        self.backend = backend
        self.name = spec["name"]
        self.settings = spec["settings"]
        self.flask = FlaskSide(self.settings)
        self.rust = RustSide(spec["url"], self.flask.cookie_name)
        config = self.flask.app.config
        # Flask-Session reads unset settings from its Defaults; it does not fill app.config.
        self.permanent = config.get("SESSION_PERMANENT", Defaults.SESSION_PERMANENT)
        self.signer = config.get("SESSION_USE_SIGNER", Defaults.SESSION_USE_SIGNER)
        self.prefix = config.get("SESSION_KEY_PREFIX", Defaults.SESSION_KEY_PREFIX)
        self.format = config.get("SESSION_SERIALIZATION_FORMAT",
                                 Defaults.SESSION_SERIALIZATION_FORMAT)
        self.lifetime = config["PERMANENT_SESSION_LIFETIME"].total_seconds()
        self.records = None if backend == "cookie" else records.open_records(backend, self.settings)
        self.msgpack = self.format == "msgpack"
        if self.msgpack:
            self.encoder, self.decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
        else:
            self.encoder, self.decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
        self.failures = []
        self.passed = 0

    # helpers ---------------------------------------------------------------------------------

    def stored(self, data):
        """The dict Flask-Session stores for a new session given `data`, in its key order."""
        out = {"_permanent": True} if self.permanent else {}
        out.update(data)
        return out

    def encode(self, data):
        """What Flask-Session stores for this dict: msgspec's bytes."""
        return self.encoder.encode(data)

    def round_trip(self, data):
        """`data` as it reads back from storage in this variant's format."""
        return self.decoder.decode(self.encoder.encode(data))

    def sid(self, cookie):
        check(cookie, "expected a session cookie", cookie=cookie)
        if self.signer:
            sid, sep, _ = cookie.rpartition(".")
            check(sep, "signed cookie without a signature", cookie=cookie)
            return sid
        return cookie

    def key(self, cookie):
        return self.prefix + self.sid(cookie)

    def record(self, cookie):
        return self.records.get(self.key(cookie))

    def expect_record(self, cookie, data, what):
        record = self.record(cookie)
        check(record is not None, f"{what}: no record stored under the session's key",
              key=self.key(cookie))
        want = self.encode(data)
        check(record.value == want, f"{what}: stored bytes differ from msgspec's encoding",
              expected=want, got=record.value)
        check(abs(record.ttl - self.lifetime) <= TTL_TOLERANCE + 1,
              f"{what}: TTL is not PERMANENT_SESSION_LIFETIME", lifetime=self.lifetime,
              ttl=record.ttl)
        return record

    def expect_no_record(self, cookie, what):
        record = self.record(cookie)
        check(record is None, f"{what}: a record is still stored", key=self.key(cookie),
              record=record)

    def expect_typed(self, got_typed, data, what):
        want = values.typed(data)
        if got_typed != want:
            diff = {}
            g, w = got_typed[1], want[1]
            for key in sorted(set(g) | set(w)):
                if g.get(key) != w.get(key):
                    diff[key] = {"expected": w.get(key), "got": g.get(key)}
            raise CheckFailed(f"{what}: values differ\n    " + json.dumps(
                diff, ensure_ascii=False, indent=1).replace("\n", "\n    "))

    def flask_reads(self, cookie, data, what):
        resp = self.flask.get(cookie)
        self.expect_typed(resp.json(), data, what)
        return resp

    def rust_reads(self, cookie, data, what):
        resp = self.rust.get(cookie)
        try:
            got = values.from_wire(resp.json())
        except ValueError as error:
            raise CheckFailed(f"{what}: Satchel's JSON does not decode: {error}") from None
        self.expect_typed(values.typed(got), data, what)
        return resp

    def empty(self):
        """What `dict(session)` is in Flask for a fresh session."""
        return {"_permanent": True} if self.permanent else {}

    def same_cookie_shape(self, flask_header, rust_header, what):
        check(shape_of_set_cookie(flask_header) == shape_of_set_cookie(rust_header),
              f"{what}: Set-Cookie differs from Flask-Session's",
              flask=flask_header, satchel=rust_header)
        f_exp, r_exp = expires_of(flask_header), expires_of(rust_header)
        if f_exp and r_exp:
            check(abs((f_exp - r_exp).total_seconds()) <= TTL_TOLERANCE,
                  f"{what}: cookie Expires differs by more than {TTL_TOLERANCE} s",
                  flask=flask_header, satchel=rust_header)

    def same_vary(self, flask_resp, rust_resp, what):
        f = "cookie" in ",".join(flask_resp.header_values("Vary")).lower()
        r = "cookie" in ",".join(rust_resp.header_values("Vary")).lower()
        check(f == r, f"{what}: Vary: Cookie differs", flask=flask_resp.header_values("Vary"),
              satchel=rust_resp.header_values("Vary"))

    def same_record_shape(self, flask_record, rust_record, what):
        check(flask_record.shape == rust_record.shape,
              f"{what}: stored record shape differs from Flask-Session's",
              flask=flask_record.shape, satchel=rust_record.shape)
        check(abs(flask_record.ttl - rust_record.ttl) <= TTL_TOLERANCE,
              f"{what}: TTL differs from Flask-Session's by more than {TTL_TOLERANCE} s",
              flask=flask_record.ttl, satchel=rust_record.ttl)

    # scenarios -------------------------------------------------------------------------------

    def scenarios(self):
        return [
            self.flask_writes_satchel_reads,
            self.satchel_rewrites_what_flask_wrote_and_flask_reads_it_unchanged,
            self.satchel_writes_flask_reads_same_record_as_flask_writes,
            self.satchel_typed_api_values_read_in_flask,
            self.flashes_cross_both_ways,
            self.satchel_purge_means_no_session_in_flask,
            self.satchel_clear_means_no_session_in_flask,
            self.flask_clear_means_no_session_in_satchel,
            self.satchel_renew_moves_flasks_session,
            self.unknown_and_tampered_cookies_give_empty_sessions_on_both,
            self.nonfinite_floats_survive_a_satchel_rewrite,
        ]

    def run(self):
        for scenario in self.scenarios():
            name = scenario.__name__
            started = time.monotonic()
            try:
                scenario()
            except CheckFailed as failure:
                self.failures.append(f"[{self.backend}/{self.name}] {name}: FAILED\n  {failure}")
                print(f"  FAIL {name}\n  {failure}", flush=True)
                continue
            except Exception:  # noqa: BLE001 - report any error as this scenario's failure
                text = traceback.format_exc()
                self.failures.append(f"[{self.backend}/{self.name}] {name}: ERROR\n{text}")
                print(f"  ERROR {name}\n{text}", flush=True)
                continue
            self.passed += 1
            print(f"  ok   {name} ({time.monotonic() - started:.2f} s)", flush=True)

    def flask_writes_satchel_reads(self):
        flask_set = self.flask.set(SAMPLE)
        cookie = flask_set.cookie
        self.expect_record(cookie, self.stored(SAMPLE), "Flask's own record (oracle check)")
        before = self.record(cookie).value
        rust_get = self.rust_reads(cookie, self.round_trip(self.stored(SAMPLE)),
                                   "Satchel reading Flask's session")
        check(self.record(cookie).value == before, "a Satchel read changed the stored bytes",
              before=before, after=self.record(cookie).value)
        flask_get = self.flask.get(cookie)
        self.same_cookie_shape(flask_get.set_cookie, rust_get.set_cookie,
                               "reading an existing session")
        if rust_get.cookie:
            check(rust_get.cookie == cookie, "Satchel re-sent another cookie value on a read",
                  sent=cookie, got=rust_get.cookie)
        self.same_vary(flask_get, rust_get, "reading an existing session")
        if self.msgpack:
            typed = self.rust.request("GET", "/typed", cookie).json()
            want = {
                "bytes_hex": SAMPLE["bytes"].hex(),
                "datetime_unix_nanos": str(
                    (SAMPLE["datetime"] - datetime(1970, 1, 1, tzinfo=UTC))
                    // timedelta(microseconds=1) * 1000),
                "int_min": SAMPLE["int_min"],
                "int_max": SAMPLE["int_max"],
                "int_u64_max": SAMPLE["int_u64_max"],
                "float": SAMPLE["float"],
                "str": SAMPLE["str"],
                "bool_true": True,
                "none": None,
                "list": json.loads(json.dumps(values.to_wire(SAMPLE["list"]))),
            }
            check(typed == want, "Satchel's typed getters (Bytes, Timestamp, i64, ...) read "
                  "Flask's values wrongly", expected=want, got=typed)

    def satchel_rewrites_what_flask_wrote_and_flask_reads_it_unchanged(self):
        cookie = self.flask.set(SAMPLE).cookie
        touched = dict(SAMPLE, zz_rust="touched ☃")
        rust_set = self.rust.set({"zz_rust": "touched ☃"}, cookie)
        check(rust_set.cookie in (None, cookie), "Satchel changed the session cookie on a write",
              sent=cookie, got=rust_set.cookie)
        self.expect_record(cookie, self.round_trip(self.stored(touched)),
                           "Satchel's rewrite of Flask's session")
        self.flask_reads(cookie, self.round_trip(self.stored(touched)),
                         "Flask reading its values after Satchel rewrote them")
        self.rust.request("POST", "/remove", cookie, ["zz_rust"])
        self.expect_record(cookie, self.round_trip(self.stored(SAMPLE)),
                           "Satchel's rewrite with the added key removed again")

    def satchel_writes_flask_reads_same_record_as_flask_writes(self):
        flask_set = self.flask.set(SAMPLE)
        rust_set = self.rust.set(SAMPLE)
        flask_cookie, rust_cookie = flask_set.cookie, rust_set.cookie
        check(rust_cookie, "Satchel set no cookie for a new session",
              headers=rust_set.headers)
        sid = self.sid(rust_cookie)
        check(len(sid) == 43 and all(c.isalnum() or c in "-_" for c in sid),
              "Satchel's session id is not token_urlsafe(32)-shaped", sid=sid)
        if self.signer:
            secret = self.flask.app.config["SECRET_KEY"]
            signer = Signer(secret, salt="flask-session", key_derivation="hmac")
            check(signer.validate(rust_cookie.encode()),
                  "Satchel's cookie signature is not itsdangerous's", cookie=rust_cookie)
        self.same_cookie_shape(flask_set.set_cookie, rust_set.set_cookie, "new session")
        self.same_vary(flask_set, rust_set, "new session")
        flask_record = self.expect_record(flask_cookie, self.stored(SAMPLE), "Flask's record")
        rust_record = self.expect_record(rust_cookie, self.stored(SAMPLE), "Satchel's record")
        check(rust_record.value == flask_record.value,
              "Satchel's bytes differ from Flask-Session's for the same session",
              flask=flask_record.value, satchel=rust_record.value)
        self.same_record_shape(flask_record, rust_record, "new session")
        self.flask_reads(rust_cookie, self.round_trip(self.stored(SAMPLE)),
                         "Flask reading Satchel's session")

    def satchel_typed_api_values_read_in_flask(self):
        resp = self.rust.request("POST", "/set_typed")
        want = {
            "rust_bytes": bytes([0, 1, 0x7F, 0x80, 0xFE, 0xFF]),
            "rust_datetime": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
            "rust_float": 2.5,
            "rust_i64_max": 2**63 - 1,
            "rust_i64_min": -(2**63),
            "rust_list": ["a", "ü"],
            "rust_none": None,
            "rust_text": "héllo ☃ 日本",
            "rust_u64_max": 2**64 - 1,
        }
        self.expect_record(resp.cookie, self.stored(want), "Satchel's typed values")
        self.flask_reads(resp.cookie, self.round_trip(self.stored(want)),
                         "Flask reading values Satchel wrote with Bytes/Timestamp/i64/u64/...")

    def flashes_cross_both_ways(self):
        flask_flash = self.flask.request("POST", "/flash", body=FLASHES)
        flask_cookie = flask_flash.cookie
        flask_record = self.expect_record(flask_cookie, self.stored({"_flashes": FLASHES}),
                                          "Flask's flash() record")
        self.rust_reads(flask_cookie, self.stored({"_flashes": FLASHES}),
                        "Satchel reading Flask's flashes")
        rust_set = self.rust.set({"_flashes": FLASHES})
        rust_record = self.expect_record(rust_set.cookie, self.stored({"_flashes": FLASHES}),
                                         "Satchel's _flashes record")
        check(rust_record.value == flask_record.value,
              "Satchel's _flashes bytes differ from Flask's flash()",
              flask=flask_record.value, satchel=rust_record.value)
        got = self.flask.request("GET", "/flashes", rust_set.cookie).json()
        check(got == FLASHES, "get_flashed_messages() in Flask on Satchel's session",
              expected=FLASHES, got=got)
        # Popping the only entry empties the session: Flask-Session deletes it.
        self.expect_no_record(rust_set.cookie, "after Flask consumed the flashes")
        self.rust_reads(rust_set.cookie, {}, "Satchel after Flask consumed the flashes")

    def _satchel_ends_session(self, route):
        data = {"n": 3, "user": "alice ☃"}
        cookie = self.flask.set(data).cookie
        self.expect_record(cookie, self.stored(data), "Flask's record")
        rust_end = self.rust.request("GET", route, cookie)
        self.expect_no_record(cookie, f"after Satchel's {route}")
        flask_clear = self.flask.request("GET", "/clear", self.flask.set(data).cookie)
        self.same_cookie_shape(flask_clear.set_cookie, rust_end.set_cookie,
                               f"deletion cookie ({route})")
        flask_get = self.flask_reads(cookie, self.empty(), f"Flask after Satchel's {route}")
        check(flask_get.set_cookie is None, "Flask set a cookie for the ended session",
              header=flask_get.set_cookie)
        self.expect_no_record(cookie, f"Flask reading after Satchel's {route}")

    def satchel_purge_means_no_session_in_flask(self):
        self._satchel_ends_session("/purge")

    def satchel_clear_means_no_session_in_flask(self):
        self._satchel_ends_session("/clear")

    def flask_clear_means_no_session_in_satchel(self):
        data = {"roles": ["admin", "ü"], "user": "bob"}
        cookie = self.rust.set(data).cookie
        self.expect_record(cookie, self.stored(data), "Satchel's record")
        flask_clear = self.flask.request("GET", "/clear", cookie)
        check(flask_clear.cookie == "", "Flask sent no deletion cookie",
              header=flask_clear.set_cookie)
        self.expect_no_record(cookie, "after Flask's clear")
        rust_get = self.rust_reads(cookie, {}, "Satchel after Flask's clear")
        flask_get = self.flask.get(cookie)
        self.same_cookie_shape(flask_get.set_cookie, rust_get.set_cookie,
                               "request with a cookie whose session is gone")
        self.expect_no_record(cookie, "Satchel reading after Flask's clear")

    def satchel_renew_moves_flasks_session(self):
        data = {"cart": [1, 2, 3], "user": "carol"}
        cookie = self.flask.set(data).cookie
        old = self.expect_record(cookie, self.stored(data), "Flask's record")
        renewed = self.rust.request("POST", "/renew", cookie).cookie
        check(renewed and renewed != cookie, "Satchel's renew gave no new cookie",
              old=cookie, new=renewed)
        self.expect_no_record(cookie, "old id after Satchel's renew")
        new = self.expect_record(renewed, self.stored(data), "record under the renewed id")
        check(new.value == old.value, "renew changed the stored bytes", old=old.value,
              new=new.value)
        self.flask_reads(renewed, self.round_trip(self.stored(data)),
                         "Flask reading the renewed session")

    def unknown_and_tampered_cookies_give_empty_sessions_on_both(self):
        data = {"user": "mallory"}
        cookie = self.flask.set(data).cookie
        sid = self.sid(cookie)
        unknown = "A" * 43
        candidates = {"unknown id": unknown if not self.signer else Signer(
            self.flask.app.config["SECRET_KEY"], salt="flask-session",
            key_derivation="hmac").sign(unknown).decode()}
        if self.signer:
            sig = cookie.rpartition(".")[2]
            flipped = ("B" if sig[0] != "B" else "C") + sig[1:]
            candidates["tampered signature"] = f"{sid}.{flipped}"
            candidates["bare id without signature"] = sid
            candidates["signed with another key"] = Signer(
                "another key", salt="flask-session", key_derivation="hmac").sign(sid).decode()
        for what, value in candidates.items():
            self.flask_reads(value, self.empty(), f"Flask with {what}")
            rust_get = self.rust_reads(value, {}, f"Satchel with {what}")
            check(rust_get.cookie is None, f"Satchel set a cookie for {what}",
                  header=rust_get.set_cookie)
        self.expect_record(cookie, self.stored(data), "the real session after the probes")
        check(self.records.get(self.prefix + unknown) is None,
              "a record appeared for the unknown id")

    def nonfinite_floats_survive_a_satchel_rewrite(self):
        if not self.msgpack:
            return  # JSON has no NaN or infinities; msgspec writes null
        cookie = self.flask.set(NONFINITE).cookie
        self.rust.set({"zz_rust": 1}, cookie)
        data = dict(NONFINITE, zz_rust=1)
        self.flask_reads(cookie, self.stored(data),
                         "Flask reading inf/nan after a Satchel rewrite")
        self.expect_record(cookie, self.stored(data), "inf/nan rewritten by Satchel")


class CookieVariant(Variant):
    """SESSION_TYPE=cookie: Flask's own signed cookie session; the cookie is the record."""

    def __init__(self, backend, spec):
        super().__init__(backend, spec)
        app = self.flask.app
        self.permanent = app.config["SESSION_PERMANENT"]
        self.serializer = app.session_interface.get_signing_serializer(app)
        self.msgpack = False

    def round_trip(self, data):
        """`data` as it reads back from Flask's cookie (tagged JSON: datetimes lose their
        microseconds, tuples stay tuples)."""
        return self.serializer.loads(self.serializer.dumps(data))

    def payload(self, cookie):
        """(compressed?, JSON text, timestamp) of a cookie, checked with Flask's serializer."""
        import zlib

        from itsdangerous.encoding import base64_decode, bytes_to_int

        check(cookie, "expected a session cookie", cookie=cookie)
        self.serializer.loads(cookie)  # raises if Flask would not accept it
        compressed = cookie.startswith(".")
        body, timestamp, _signature = cookie.lstrip(".").split(".")
        raw = base64_decode(body)
        text = zlib.decompress(raw) if compressed else raw
        return compressed, text.decode(), bytes_to_int(base64_decode(timestamp))

    def same_cookie_record(self, flask_cookie, rust_cookie, what):
        f, r = self.payload(flask_cookie), self.payload(rust_cookie)
        check(f[1] == r[1], f"{what}: Satchel's cookie payload differs from Flask's",
              flask=f[1], satchel=r[1])
        check(f[0] == r[0], f"{what}: compression differs from Flask's", flask=f[0],
              satchel=r[0])
        check(abs(f[2] - r[2]) <= TTL_TOLERANCE, f"{what}: cookie timestamp differs",
              flask=f[2], satchel=r[2])

    def scenarios(self):
        return [
            self.flask_writes_satchel_reads,
            self.satchel_rewrites_what_flask_wrote_and_flask_reads_it_unchanged,
            self.satchel_writes_the_cookie_flask_writes,
            self.satchel_typed_api_values_read_in_flask,
            self.flashes_cross_both_ways,
            self.satchel_purge_sends_flasks_deletion_cookie,
            self.flask_clear_then_satchel_sees_none,
            self.tampered_expired_and_foreign_cookies_give_empty_sessions_on_both,
            self.key_rotation_with_secret_key_fallbacks,
            self.nonfinite_floats_survive_a_satchel_rewrite,
        ]

    def flask_writes_satchel_reads(self):
        cookie = self.flask.set(SAMPLE).cookie
        rust_get = self.rust_reads(cookie, self.round_trip(self.stored(SAMPLE)),
                                   "Satchel reading Flask's cookie session")
        flask_get = self.flask.get(cookie)
        self.same_cookie_shape(flask_get.set_cookie, rust_get.set_cookie,
                               "reading an existing session")
        self.same_vary(flask_get, rust_get, "reading an existing session")
        typed = self.rust.request("GET", "/typed", cookie).json()
        when = self.round_trip({"d": SAMPLE["datetime"]})["d"]
        check(typed["bytes_hex"] == SAMPLE["bytes"].hex(), "Bytes getter on Flask's cookie",
              got=typed)
        check(typed["datetime_unix_nanos"] == str(int(when.timestamp()) * 10**9),
              "Timestamp getter on Flask's cookie", expected=when, got=typed)

    def satchel_rewrites_what_flask_wrote_and_flask_reads_it_unchanged(self):
        cookie = self.flask.set(SAMPLE).cookie
        rust_set = self.rust.set({"zz_rust": "touched ☃"}, cookie)
        touched = dict(SAMPLE, zz_rust="touched ☃")
        self.flask_reads(rust_set.cookie, self.round_trip(self.stored(touched)),
                         "Flask reading its values after Satchel rewrote the cookie")
        flask_touched = self.flask.set({"zz_rust": "touched ☃"}, cookie).cookie
        self.same_cookie_record(flask_touched, rust_set.cookie, "rewritten cookie")

    def satchel_writes_the_cookie_flask_writes(self):
        flask_set = self.flask.set(SAMPLE)
        rust_set = self.rust.set(SAMPLE)
        self.same_cookie_shape(flask_set.set_cookie, rust_set.set_cookie, "new session")
        self.same_vary(flask_set, rust_set, "new session")
        self.same_cookie_record(flask_set.cookie, rust_set.cookie, "new session")
        self.flask_reads(rust_set.cookie, self.round_trip(self.stored(SAMPLE)),
                         "Flask reading Satchel's cookie session")

    def satchel_typed_api_values_read_in_flask(self):
        resp = self.rust.request("POST", "/set_typed")
        want = {
            "rust_bytes": bytes([0, 1, 0x7F, 0x80, 0xFE, 0xFF]),
            "rust_datetime": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
            "rust_float": 2.5,
            "rust_i64_max": 2**63 - 1,
            "rust_i64_min": -(2**63),
            "rust_list": ["a", "ü"],
            "rust_none": None,
            "rust_text": "héllo ☃ 日本",
            "rust_u64_max": 2**64 - 1,
        }
        self.flask_reads(resp.cookie, self.round_trip(self.stored(want)),
                         "Flask reading values Satchel wrote with Bytes/Timestamp/i64/u64/...")

    def flashes_cross_both_ways(self):
        flask_cookie = self.flask.request("POST", "/flash", body=FLASHES).cookie
        self.rust_reads(flask_cookie, self.round_trip(
            self.stored({"_flashes": [tuple(f) for f in FLASHES]})),
            "Satchel reading Flask's flashes")
        rust_set = self.rust.set({"_flashes": FLASHES})
        got = self.flask.request("GET", "/flashes", rust_set.cookie)
        check(got.json() == FLASHES, "get_flashed_messages() in Flask on Satchel's cookie",
              expected=FLASHES, got=got.json())
        # Emptied: Flask deletes the cookie, or keeps only `_permanent` in it when permanent.
        check(got.cookie == "" or self.serializer.loads(got.cookie) == self.empty(),
              "Flask kept data in the emptied cookie session", header=got.set_cookie)

    def satchel_purge_sends_flasks_deletion_cookie(self):
        data = {"n": 3, "user": "alice ☃"}
        for route in ("/purge", "/clear"):
            rust_end = self.rust.request("GET", route, self.flask.set(data).cookie)
            flask_clear = self.flask.request("GET", "/clear", self.flask.set(data).cookie)
            self.same_cookie_shape(flask_clear.set_cookie, rust_end.set_cookie,
                                   f"deletion cookie ({route})")

    def flask_clear_then_satchel_sees_none(self):
        cookie = self.rust.set({"user": "bob"}).cookie
        flask_clear = self.flask.request("GET", "/clear", cookie)
        check(flask_clear.cookie == "", "Flask sent no deletion cookie",
              header=flask_clear.set_cookie)
        self.rust_reads(None, {}, "Satchel once the browser dropped the cookie")

    def tampered_expired_and_foreign_cookies_give_empty_sessions_on_both(self):
        cookie = self.flask.set({"user": "mallory"}).cookie
        head, _, sig = cookie.rpartition(".")
        flipped = ("B" if sig[0] != "B" else "C") + sig[1:]
        old = int(time.time()) - int(self.lifetime) - 10
        signer = self.serializer.make_signer()
        signer.get_timestamp = lambda: old
        expired = signer.sign(self.serializer.dump_payload({"user": "mallory"})).decode()
        other = create_app(dict(self.settings, SECRET_KEY="another key",
                                SECRET_KEY_FALLBACKS=""))
        foreign = other.session_interface.get_signing_serializer(other).dumps({"user": "x"})
        for what, value in {"tampered signature": f"{head}.{flipped}",
                            "expired timestamp": expired,
                            "another SECRET_KEY": foreign}.items():
            self.flask_reads(value, {}, f"Flask with {what}")
            self.rust_reads(value, {}, f"Satchel with {what}")

    def key_rotation_with_secret_key_fallbacks(self):
        fallbacks = self.settings.get("SECRET_KEY_FALLBACKS")
        if not fallbacks:
            return
        old = create_app(dict(self.settings, SECRET_KEY=fallbacks.split(",")[0].strip(),
                              SECRET_KEY_FALLBACKS=""))
        cookie = old.session_interface.get_signing_serializer(old).dumps(
            self.stored({"user": "rotated"}))
        self.flask_reads(cookie, self.stored({"user": "rotated"}), "Flask with an old key")
        self.rust_reads(cookie, self.stored({"user": "rotated"}), "Satchel with an old key")
        resigned = self.rust.set({"zz": 1}, cookie).cookie
        new_only = create_app(dict(self.settings, SECRET_KEY_FALLBACKS=""))
        got = values.typed(new_only.session_interface.get_signing_serializer(new_only)
                           .loads(resigned))
        self.expect_typed(got, self.stored({"user": "rotated", "zz": 1}),
                          "Satchel's rewrite is signed with the current SECRET_KEY")

    def nonfinite_floats_survive_a_satchel_rewrite(self):
        cookie = self.flask.set(NONFINITE).cookie
        cookie = self.rust.set({"zz_rust": 1}, cookie).cookie
        self.flask_reads(cookie, self.stored(dict(NONFINITE, zz_rust=1)),
                         "Flask reading inf/nan after a Satchel rewrite")


def prepare(backend, specs):
    """Builds each variant's Flask app once before any Satchel app connects, so Flask-Session
    creates the SQL table (as in a migration, where the Flask app came first)."""
    for spec in specs:
        FlaskSide(spec["settings"])
    print(f"{backend}: Flask apps built for {len(specs)} variants", flush=True)


def drop_tables(backend, specs):
    """Drops the per-run SQL table (server databases only; SQLite files are temporary)."""
    if backend not in ("postgres", "mysql"):
        return
    import sqlalchemy as sa

    settings = specs[0]["settings"]
    engine = sa.create_engine(settings["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.begin() as conn:
            if backend == "mysql":
                conn.execute(sa.text("SET SESSION lock_wait_timeout = 10"))
            conn.execute(sa.text(
                f"DROP TABLE IF EXISTS {settings['SESSION_SQLALCHEMY_TABLE']}"))
    except Exception as error:  # noqa: BLE001 - cleanup only
        print(f"warning: could not drop the test table: {error}", flush=True)
    finally:
        engine.dispose()


def main():
    backend = os.environ["SATCHEL_INTEROP_BACKEND"]
    specs = json.loads(os.environ["SATCHEL_INTEROP_VARIANTS"])
    if sys.argv[1:] == ["--prepare"]:
        prepare(backend, specs)
        return
    started = time.monotonic()
    failures, passed = [], 0
    for spec in specs:
        print(f"== {backend} / {spec['name']}: {json.dumps(spec['settings'], ensure_ascii=False)}",
              flush=True)
        try:
            variant = (CookieVariant if backend == "cookie" else Variant)(backend, spec)
        except Exception:  # noqa: BLE001
            failures.append(f"[{backend}/{spec['name']}] setup: ERROR\n{traceback.format_exc()}")
            print(failures[-1], flush=True)
            continue
        try:
            variant.run()
        finally:
            if variant.records is not None:
                variant.records.close()
        failures.extend(variant.failures)
        passed += variant.passed
    drop_tables(backend, specs)
    print(f"\n{backend}: {passed} scenario runs passed, {len(failures)} failed "
          f"in {time.monotonic() - started:.1f} s", flush=True)
    if failures:
        print("\nFAILURES:\n" + "\n\n".join(failures), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
