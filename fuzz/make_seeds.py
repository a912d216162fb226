"""Regenerates fuzz/seeds/ (run from the repo root with the interop venv:
.venv-interop/bin/python fuzz/make_seeds.py). Needs msgspec, Flask and itsdangerous."""
import os, pickle, json, zlib, base64, datetime, uuid
import msgspec
from flask import Flask
from markupsafe import Markup
from itsdangerous import Signer

root = "fuzz/seeds"
def put(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    open(os.path.join(d, name), "wb").write(data)

ID = "KbBTwKKcUhVGBMkMW8X5td_Hfy6CARK80-HC04GN0HM"
put("session_id", "flask_id", bytes([32]) + ID.encode())
put("session_id", "short_id", bytes([16]) + b"KbBTwKKcUhVGBMkMW8X5td")

aware = datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc)
sessions = {
    "login": {"_permanent": True, "username": "alice", "n": 3},
    "types": {"b": b"\x00\x01\xff", "f": 1.5, "neg": -7, "big": 2**63, "none": None, "l": [1, [2, {"x": "y"}]], "t": True, "s": "é€😀"},
    "when": {"at": aware, "old": datetime.datetime(1900, 1, 1, tzinfo=datetime.timezone.utc), "far": datetime.datetime(3000, 1, 1, tzinfo=datetime.timezone.utc)},
    "tagged": {"d": {" b": "AAE="}, "e": {" d": "x"}, "f": {" di": {"a": 1}}},
}
for name, s in sessions.items():
    put("codec_decode", name + ".msgpack", msgspec.msgpack.encode(s))
    put("value_bridge", name + ".msgpack", msgspec.msgpack.encode(s))
    try:
        j = msgspec.json.encode(s)
        put("codec_decode", name + ".json", j)
        put("value_bridge", name + ".json", j)
    except Exception:
        pass
plain = {"_permanent": True, "username": "alice", "l": [1, 2.5, None, True], "b": b"xy", "ba": bytearray(b"z"), "t": (1, "a"), "s": {1, 2}, "fs": frozenset({"q"}), "big": 2**40, "neg": -(2**31), "u": "é"}
for proto in range(0, 6):
    p = pickle.dumps(plain, protocol=proto)
    put("pickle_decode", f"plain.p{proto}", p)
    put("codec_decode", f"plain.p{proto}", p)
    put("value_bridge", f"plain.p{proto}", pickle.dumps({"n": 3, "b": b"xy"}, protocol=proto))
# A pickle that asks for a global and calls it: refused without importing anything.
class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))
for proto in (0, 2, 4):
    put("pickle_decode", f"os_system.p{proto}", pickle.dumps({"x": Exploit()}, protocol=proto))

s = Signer("secret_key", salt="flask-session")
put("flask_signer", "signed_abc", s.sign(b"abc"))
put("flask_signer", "signed_id", s.sign(ID.encode()))

app = Flask(__name__); app.secret_key = "secret_key"
si = app.session_interface.get_signing_serializer(app)
def payload(obj):
    # Flask's tagged JSON, then (maybe) zlib, then base64url: the part before the timestamp.
    signed = si.dumps(obj)
    return signed.split(".")[0] if not signed.startswith(".") else "." + signed.split(".")[1]
cookies = {
    "plain": {"username": "alice"},
    "tagged": {"t": (1, 2), "b": b"\x00\x01", "m": Markup("<b>x</b>"), "u": uuid.UUID(int=5), "d": datetime.datetime(2024, 1, 2, 3, 4, 5), "di": {" t": 1}, "_permanent": True},
    "compressed": {"x": "a" * 400},
}
for name, obj in cookies.items():
    put("cookie_session", name + ".payload", payload(obj))
    put("cookie_session", name + ".cookie", si.dumps(obj))
