#!/usr/bin/env bash
# Python environment for the Flask-Session interop tests: a virtualenv at
# $REPO/.venv-interop with the exact pins of tests/interop/requirements.txt.
# Idempotent: the venv remembers the sha256 of the requirements it was built
# from and pip only runs again when that file changes (or the venv is broken).
#
#   scripts/python-env.sh          create/update the venv, check Flask-Session imports
#   PYTHON=python3.12 scripts/python-env.sh   build it with another interpreter
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SATCHEL_INTEROP_VENV:-$REPO/.venv-interop}
REQ="$REPO/tests/interop/requirements.txt"
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.requirements.sha256"

die() { printf 'python-env.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

[[ -f $REQ ]] || die "missing $REQ"

# Debian's python3 ships without venv/ensurepip; they come with python3-venv.
if ! command -v "$PYTHON" >/dev/null || ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y --no-install-recommends python3 python3-venv ||
    die "could not install python3-venv"
fi

want=$(sha256sum "$REQ" | cut -d' ' -f1)

# A venv whose interpreter no longer runs (python upgraded or removed) is rebuilt.
if [[ -d $VENV ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
  printf 'python-env.sh: %s is broken, rebuilding it\n' "$VENV"
  rm -rf "$VENV"
fi

if [[ -f $STAMP && $(<"$STAMP") == "$want" ]]; then
  printf 'python-env.sh: %s already matches %s\n' "$VENV" "${REQ#"$REPO"/}"
else
  [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ" ||
    die "pip install -r $REQ failed"
  printf '%s\n' "$want" >"$STAMP"
  printf 'python-env.sh: installed %s into %s\n' "${REQ#"$REPO"/}" "$VENV"
fi

# The interop tests drive these Flask-Session 0.8.0 interfaces; fail early if
# any of them cannot be imported.
"$VENV/bin/python" - <<'EOF' || die "Flask-Session check failed"
from importlib.metadata import version

import flask_session
from flask_session.memcached import MemcachedSessionInterface  # noqa: F401
from flask_session.mongodb import MongoDBSessionInterface  # noqa: F401
from flask_session.redis import RedisSessionInterface  # noqa: F401
from flask_session.sqlalchemy import SqlAlchemySessionInterface  # noqa: F401

assert version("Flask-Session") == "0.8.0", version("Flask-Session")
print(f"python-env.sh: Flask-Session {version('Flask-Session')}, Flask {version('Flask')} import fine")
EOF
printf 'python-env.sh: use %s/bin/python\n' "$VENV"
