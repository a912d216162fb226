"""Stored session records, read through each backend's own Python client.

``open_records(backend, settings).get(store_key)`` gives a ``Record`` or ``None``:

  value  the stored bytes (what Flask-Session's serializer wrote)
  ttl    seconds until the backend expires it (SQL/Mongo: expiry - utcnow)
  shape  what else a reader sees: Redis type, memcached flags, the Mongo document's fields and
         BSON types, the SQL row's columns and Python types (SQLite: storage classes and the
         text format of `expiry`), so Satchel's record can be compared with Flask-Session's
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass
class Record:
    value: bytes
    ttl: float
    shape: dict = field(default_factory=dict)


def utcnow_naive() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class RedisRecords:
    def __init__(self, settings):
        import redis

        self.client = redis.Redis.from_url(settings.get("SESSION_REDIS") or "redis://127.0.0.1:6379")

    def get(self, key):
        value = self.client.get(key)
        if value is None:
            return None
        ttl_ms = self.client.pttl(key)
        return Record(value, ttl_ms / 1000.0, {"type": self.client.type(key).decode()})

    def close(self):
        self.client.close()


class MemcachedRecords:
    """memcached's meta get (`mg key v t f`) shows the remaining TTL, which `get` cannot."""

    def __init__(self, settings):
        server = (settings.get("SESSION_MEMCACHED") or "127.0.0.1:11211").split(",")[0].strip()
        if "://" in server:
            server = server.split("://", 1)[1]
        host, _, port = server.rpartition(":")
        self.sock = socket.create_connection((host or "127.0.0.1", int(port or 11211)), timeout=10)
        self.buffer = b""

    def _line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("memcached closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exact(self, size):
        while len(self.buffer) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("memcached closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
        return data

    def get(self, key):
        self.sock.sendall(f"mg {key} v t f\r\n".encode())
        header = self._line().split()
        if header[0] == b"EN":
            return None
        if header[0] != b"VA":
            raise RuntimeError(f"memcached meta get answered {header!r}")
        value = self._exact(int(header[1]))
        flags = {token[:1].decode(): token[1:].decode() for token in header[2:]}
        ttl = float(flags.get("t", "-1"))
        return Record(value, ttl, {"flags": flags.get("f")})

    def close(self):
        self.sock.close()


class MongoRecords:
    def __init__(self, settings):
        import pymongo

        self.client = pymongo.MongoClient(settings.get("SESSION_MONGODB") or "mongodb://127.0.0.1:27017")
        self.collection = self.client[settings.get("SESSION_MONGODB_DB") or "flask_session"][
            settings.get("SESSION_MONGODB_COLLECT") or "sessions"]

    def get(self, key):
        doc = self.collection.find_one({"id": key})
        if doc is None:
            return None
        value = doc.get("val")
        expiration = doc.get("expiration")
        ttl = (expiration - utcnow_naive()).total_seconds() if isinstance(expiration, datetime) else -1
        shape = {name: type(v).__name__ for name, v in doc.items()}
        if hasattr(value, "subtype"):
            shape["val.subtype"] = value.subtype
        indexes = {ix["name"]: ix.get("expireAfterSeconds")
                   for ix in self.collection.list_indexes() if "expiration" in ix["key"]}
        shape["expiration indexes"] = indexes
        return Record(bytes(value) if isinstance(value, (bytes, bytearray)) else value, ttl, shape)

    def close(self):
        self.client.close()


_DIGITS = re.compile(r"\d")


class SqlRecords:
    def __init__(self, settings):
        import sqlalchemy as sa

        self.sa = sa
        self.engine = sa.create_engine(settings["SQLALCHEMY_DATABASE_URI"])
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.table = sa.Table(settings.get("SESSION_SQLALCHEMY_TABLE") or "sessions", sa.MetaData(),
                              autoload_with=self.engine,
                              schema=settings.get("SESSION_SQLALCHEMY_SCHEMA") or None)

    def get(self, key):
        sa, table = self.sa, self.table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.session_id == key)).mappings().first()
            if row is None:
                return None
            shape = {name: type(value).__name__ for name, value in row.items()}
            if self.sqlite:
                raw = conn.execute(
                    sa.text(f'SELECT typeof(data), typeof(expiry), expiry FROM "{table.name}" '
                            "WHERE session_id = :k"), {"k": key}).one()
                shape["sqlite storage classes"] = [raw[0], raw[1]]
                shape["sqlite expiry format"] = _DIGITS.sub("d", str(raw[2]))
        expiry = row["expiry"]
        ttl = (expiry - utcnow_naive()).total_seconds() if isinstance(expiry, datetime) else -1
        return Record(bytes(row["data"]), ttl, shape)

    def close(self):
        self.engine.dispose()


def open_records(backend, settings):
    if backend in ("sqlite", "postgres", "mysql"):
        return SqlRecords(settings)
    if backend == "redis":
        return RedisRecords(settings)
    if backend == "memcached":
        return MemcachedRecords(settings)
    if backend == "mongodb":
        return MongoRecords(settings)
    raise ValueError(f"no record reader for backend {backend!r}")
