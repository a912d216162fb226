"""Session values on the wire between the interop driver and the two apps.

``to_wire``/``from_wire``: the JSON that Satchel's handlers see and write (``satchel::value``):
bytes as ``{" b": "<standard base64>"}``, aware datetimes as ``{" d": "<RFC 3339>"}``, and a
dict whose only key is one of those tags escaped as ``{" di": {"<key>__": value}}``. The Flask
app's ``/set`` takes the same JSON, so one sample drives both apps.

``typed``: a type-exact JSON picture of Python values (``["int", "3"]``, ``["float", "3.0"]``,
``["bytes", "00ff"]``, ...) for comparing what Flask reads back with what was stored.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone

TAG_BYTES, TAG_DATETIME, TAG_EXT, TAG_DICT = " b", " d", " x", " di"
TAGS = (TAG_BYTES, TAG_DATETIME, TAG_EXT, TAG_DICT)
TAG_TUPLE = " t"

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$"
)


def rfc3339(value: datetime) -> str:
    """An aware datetime as RFC 3339 UTC text, as msgspec writes it."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"not RFC 3339: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if fraction and int(fraction[6:] or "0"):
        raise ValueError(f"sub-microsecond datetime has no Python value: {text!r}")
    value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                     micros, tzinfo=timezone.utc)
    if zone not in ("Z", "z"):
        value = datetime.fromisoformat(value.replace(tzinfo=None).isoformat() + zone)
    return value.astimezone(timezone.utc)


def to_wire(value):
    if isinstance(value, bytes):
        return {TAG_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes have no wire form; use aware ones")
        return {TAG_DATETIME: rfc3339(value)}
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in TAGS:
            ((key, inner),) = value.items()
            return {TAG_DICT: {key + "__": to_wire(inner)}}
        return {key: to_wire(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    return value


def from_wire(value):
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == TAG_BYTES and isinstance(inner, str):
                return base64.b64decode(inner, validate=True)
            if key == TAG_DATETIME and isinstance(inner, str):
                return parse_rfc3339(inner)
            if key == TAG_DICT and isinstance(inner, dict) and len(inner) == 1:
                ((escaped, item),) = inner.items()
                return {escaped.removesuffix("__"): from_wire(item)}
            if key == TAG_TUPLE and isinstance(inner, list):
                # Only Flask's cookie session has tuples (e.g. flash()'s pairs).
                return tuple(from_wire(item) for item in inner)
            if key == TAG_EXT:
                raise ValueError(f"unexpected MessagePack extension value {inner!r}")
        return {key: from_wire(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [from_wire(item) for item in value]
    return value


def typed(value):
    """A JSON picture of ``value`` that differs whenever type or value differs."""
    if value is None:
        return ["None"]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", repr(value)]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return ["naive datetime", value.isoformat()]
        return ["datetime", rfc3339(value)]
    if isinstance(value, list):
        return ["list", [typed(item) for item in value]]
    if isinstance(value, tuple):
        return ["tuple", [typed(item) for item in value]]
    if isinstance(value, dict):
        return ["dict", {str(key): typed(item) for key, item in value.items()}]
    return ["other", type(value).__name__, repr(value)]
