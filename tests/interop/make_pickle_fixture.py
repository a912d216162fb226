"""Writes session values pickled by the real Flask-Session 0.5.0, for Satchel's legacy reader.

Run by ``make_pickle_fixture.sh`` in ``.venv-interop-legacy`` (Flask 2.3.3 + Flask-Session 0.5.0,
see requirements-legacy.txt) against the Redis and memcached on loopback. A Flask app sets the
session below through Flask-Session, exactly as a 2023 app did; the bytes Flask-Session stored
are read back from the server and written to ``<out>/``:

  flask_session_0.5.0_redis.pickle           plain types (RedisSessionInterface: pickle.dumps,
                                              default protocol: 4 on Python 3.8-3.13)
  flask_session_0.5.0_memcached.pickle       the same session (MemcachedSessionInterface:
                                              pickle.dumps(..., 0), the ASCII protocol 0)
  flask_session_0.5.0_redis_datetime.pickle  a session holding a datetime: needs the global
                                              datetime.datetime, so must be refused as corrupt
  flask_session_0.5.0.json                   per file: what it holds and what it must become

For each file the JSON gives ``msgpack_hex``: the exact bytes Flask-Session 0.8 stores when it
reads that pickle and saves the session again (msgspec.msgpack of the unpickled dict; tuples
become arrays) -- what Satchel must write when it rewrites a legacy session. ``typed`` is the
type-exact picture of the unpickled dict (``values.typed``; tuples are shown as tuples).
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import version

import msgspec
import redis
from flask import Flask, flash, session
from flask_session import Session
from pymemcache.client.base import Client as MemcacheClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import values  # noqa: E402

PLAIN = {
    "bool_false": False,
    "bool_true": True,
    "bytes": b"\x00\x01\x7f\x80\xfe\xff",
    "bytes_empty": b"",
    "dict": {"nested": {"k": [True, None]}, "n": 1},
    "dict_empty": {},
    "float": 1.5,
    "float_neg": -2.25e-10,
    "int": 42,
    "int_max": 2**63 - 1,
    "int_min": -(2**63),
    "int_u64_max": 2**64 - 1,
    "list": [1, "a", None, [2.5]],
    "list_empty": [],
    "none": None,
    "str": "héllo ☃ 日本",
    "str_empty": "",
    "tuple": (1, "two", 3.0),
    "user": "alice",
}


def server(url: str, default: str) -> tuple[str, int]:
    host_port = (url or default).split("://", 1)[-1].split("/", 1)[0].split(",")[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


def make_app(kind: str, client, data: dict) -> Flask:
    app = Flask(__name__)
    app.config["SESSION_TYPE"] = kind
    app.config["SESSION_KEY_PREFIX"] = "session:"
    app.config["SESSION_REDIS" if kind == "redis" else "SESSION_MEMCACHED"] = client
    Session(app)

    @app.post("/login")
    def login():
        for key, value in data.items():
            session[key] = value
        flash("welcome back", "message")
        return "ok"

    return app


def cookie_sid(response) -> str:
    header = response.headers["Set-Cookie"]
    return header.split(";", 1)[0].split("=", 1)[1]


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    r_host, r_port = server(os.environ.get("SATCHEL_REDIS_URL", ""), "redis://127.0.0.1:6379")
    m_host, m_port = server(os.environ.get("SATCHEL_MEMCACHED_URL", ""), "127.0.0.1:11211")
    redis_client = redis.Redis(host=r_host, port=r_port)
    memcache_client = MemcacheClient((m_host, m_port))
    with_datetime = dict(PLAIN, logged_in_at=datetime(2023, 5, 11, 12, 0, 0, 123456,
                                                      tzinfo=timezone.utc))
    fixtures = [
        ("flask_session_0.5.0_redis.pickle", "redis", redis_client, PLAIN, True),
        ("flask_session_0.5.0_memcached.pickle", "memcached", memcache_client, PLAIN, True),
        ("flask_session_0.5.0_redis_datetime.pickle", "redis", redis_client, with_datetime, False),
    ]
    described = {
        "made_by": "tests/interop/make_pickle_fixture.sh (make_pickle_fixture.py)",
        "python": platform.python_version(),
        "packages": {name: version(name) for name in
                     ("Flask", "Flask-Session", "Werkzeug", "redis", "pymemcache", "msgspec")},
        "files": {},
    }
    for name, kind, client, data, plain in fixtures:
        response = make_app(kind, client, data).test_client().post("/login")
        assert response.status_code == 200, response.data
        sid = cookie_sid(response)
        key = "session:" + sid
        stored = client.get(key)
        assert stored, f"nothing stored under {key}"
        client.delete(key)
        with open(os.path.join(out, name), "wb") as f:
            f.write(stored)
        unpickled = pickle.loads(stored)
        entry = {
            "backend": kind,
            "flask_session_key": key,
            "pickle_protocol": stored[1] if stored[:1] == b"\x80" else 0,
            "plain_data_only": plain,
            "keys_in_order": list(unpickled),
            "typed": values.typed(unpickled),
        }
        if plain:
            entry["msgpack_hex"] = msgspec.msgpack.encode(unpickled).hex()
        else:
            entry["refuse_because"] = "the pickle needs the global datetime.datetime"
        described["files"][name] = entry
        print(f"{name}: {len(stored)} bytes, protocol {entry['pickle_protocol']}, "
              f"keys {entry['keys_in_order']}")
    with open(os.path.join(out, "flask_session_0.5.0.json"), "w", encoding="utf-8") as f:
        json.dump(described, f, ensure_ascii=False, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures"))
