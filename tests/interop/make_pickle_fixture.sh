#!/usr/bin/env bash
# Regenerates tests/interop/fixtures/flask_session_0.5.0_* : session values pickled by the real
# Flask-Session 0.5.0 (the last release before 0.6/0.7), for Satchel's legacy-pickle reader
# tests. Builds the virtualenv .venv-interop-legacy from tests/interop/requirements-legacy.txt,
# then runs make_pickle_fixture.py against the Redis and memcached on loopback
# (scripts/services.sh up; URLs from SATCHEL_REDIS_URL / SATCHEL_MEMCACHED_URL).
#
#   tests/interop/make_pickle_fixture.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${SATCHEL_INTEROP_LEGACY_VENV:-$REPO/.venv-interop-legacy}
REQ="$REPO/tests/interop/requirements-legacy.txt"
PYTHON=${PYTHON:-python3}

if [[ ! -x $VENV/bin/python ]]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ"
if [[ -f $REPO/.services/env.sh ]]; then
  # shellcheck source=/dev/null
  source "$REPO/.services/env.sh"
fi
"$VENV/bin/python" "$REPO/tests/interop/make_pickle_fixture.py" "$REPO/tests/interop/fixtures"
