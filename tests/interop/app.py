"""The Flask side of Satchel's interop tests: a small Flask 3.1 + Flask-Session 0.8 app.

It is configured from the same Flask-style settings the Satchel app reads (``SESSION_TYPE``,
``SESSION_REDIS``, ``SESSION_KEY_PREFIX``, ``SESSION_USE_SIGNER``, ``SECRET_KEY``, ...), given
as strings, e.g. the environment::

    SESSION_TYPE=redis SESSION_REDIS=redis://127.0.0.1:6379 python tests/interop/app.py

Strings that Flask-Session wants as client objects become clients: ``SESSION_REDIS`` (URL),
``SESSION_MEMCACHED`` (``host:port`` or ``memcache://host:port``), ``SESSION_MONGODB`` (URI);
for ``SESSION_TYPE=sqlalchemy`` the database is ``SQLALCHEMY_DATABASE_URI`` (SQLAlchemy's own
URL; Satchel reads ``SESSION_SQLALCHEMY``). ``SESSION_TYPE=cookie`` is Flask's built-in signed
cookie session, without Flask-Session.

Routes (the Satchel test app has the same ones):
  POST /set      JSON object of values (bytes/datetimes tagged as in ``values.py``) into the session
  GET  /get      the session as type-exact JSON (``values.typed``)
  POST /remove   JSON array of keys to remove
  GET  /clear    ``session.clear()``
  POST /flash    ``flash(message, category)`` for each ``[category, message]`` of the JSON body
  GET  /flashes  ``get_flashed_messages(with_categories=True)``
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from datetime import timedelta

from flask import Flask, flash, get_flashed_messages, jsonify, request, session

import values

_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def _bool(text: str) -> bool:
    return _BOOL[text.strip().lower()]


def _memcached_client(text: str):
    from pymemcache.client.base import Client

    server = text.split(",")[0].strip()
    if "://" in server:
        server = server.split("://", 1)[1]
    host, _, port = server.rpartition(":")
    # pymemcache sends `set` with noreply by default, so a read on another connection (Satchel,
    # the test's record reader) can overtake the write; waiting for the reply makes the test
    # deterministic and changes nothing that is stored.
    return Client((host or "127.0.0.1", int(port or 11211)), default_noreply=False)


def configure(app: Flask, settings: Mapping[str, str]) -> None:
    """Copies the Flask-style settings in ``settings`` into ``app.config`` with Flask's types."""
    get = settings.get
    config = app.config
    for name in ("SESSION_TYPE", "SESSION_KEY_PREFIX", "SESSION_SERIALIZATION_FORMAT",
                 "SESSION_COOKIE_NAME", "SESSION_COOKIE_DOMAIN", "SESSION_COOKIE_PATH",
                 "SESSION_COOKIE_SAMESITE", "SESSION_MONGODB_DB", "SESSION_MONGODB_COLLECT",
                 "SESSION_SQLALCHEMY_TABLE", "SESSION_SQLALCHEMY_SCHEMA",
                 "SQLALCHEMY_DATABASE_URI", "SECRET_KEY"):
        if get(name) is not None:
            config[name] = get(name)
    for name in ("SESSION_PERMANENT", "SESSION_USE_SIGNER", "SESSION_COOKIE_HTTPONLY",
                 "SESSION_COOKIE_SECURE", "SESSION_REFRESH_EACH_REQUEST"):
        if get(name):
            config[name] = _bool(get(name))
    for name in ("SESSION_ID_LENGTH",):
        if get(name):
            config[name] = int(get(name))
    if get("PERMANENT_SESSION_LIFETIME"):
        config["PERMANENT_SESSION_LIFETIME"] = timedelta(
            seconds=float(get("PERMANENT_SESSION_LIFETIME")))
    if get("SECRET_KEY_FALLBACKS"):
        config["SECRET_KEY_FALLBACKS"] = [
            k.strip() for k in get("SECRET_KEY_FALLBACKS").split(",") if k.strip()]

    kind = (get("SESSION_TYPE") or "").strip().lower()
    if kind == "redis":
        import redis

        config["SESSION_REDIS"] = redis.Redis.from_url(get("SESSION_REDIS") or "redis://127.0.0.1:6379")
    elif kind == "memcached":
        config["SESSION_MEMCACHED"] = _memcached_client(get("SESSION_MEMCACHED") or "127.0.0.1:11211")
    elif kind == "mongodb":
        import pymongo

        config["SESSION_MONGODB"] = pymongo.MongoClient(get("SESSION_MONGODB") or "mongodb://127.0.0.1:27017")
    elif kind == "sqlalchemy":
        from flask_sqlalchemy import SQLAlchemy

        # One SQLAlchemy instance per app: Flask-Session declares its model on it.
        config["SESSION_SQLALCHEMY"] = SQLAlchemy(app)


def create_app(settings: Mapping[str, str] | None = None) -> Flask:
    """The interop app, configured from ``settings`` (default: the environment)."""
    settings = os.environ if settings is None else settings
    app = Flask(__name__)
    configure(app, settings)
    if app.config.get("SESSION_TYPE", "").lower() != "cookie":
        from flask_session import Session

        with warnings.catch_warnings():
            # SESSION_USE_SIGNER is deprecated in 0.7+, and still what apps in the wild use.
            warnings.simplefilter("ignore", DeprecationWarning)
            Session(app)
    else:
        # Flask's own cookie session has no SESSION_PERMANENT: apps set `session.permanent`.
        # This app does so for new sessions as Satchel does, from the same setting
        # (Flask-Session's default, True).
        app.config["SESSION_TYPE"] = "cookie"
        app.config.setdefault("SESSION_PERMANENT", True)
    cookie_sessions = app.config["SESSION_TYPE"] == "cookie"

    def new_session_permanence():
        if cookie_sessions and not session and app.config["SESSION_PERMANENT"]:
            session.permanent = True

    @app.post("/set")
    def set_values():
        new_session_permanence()
        for key, value in values.from_wire(request.get_json()).items():
            session[key] = value
        return jsonify(values.typed(dict(session)))

    @app.get("/get")
    def get_values():
        return jsonify(values.typed(dict(session)))

    @app.post("/remove")
    def remove_values():
        for key in request.get_json():
            session.pop(key, None)
        return jsonify(values.typed(dict(session)))

    @app.get("/clear")
    def clear():
        session.clear()
        return jsonify({})

    @app.post("/flash")
    def add_flashes():
        new_session_permanence()
        for category, message in request.get_json():
            flash(message, category)
        return jsonify(values.typed(dict(session)))

    @app.get("/flashes")
    def flashes():
        return jsonify([list(pair) for pair in get_flashed_messages(with_categories=True)])

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
