#!/usr/bin/env bash
# The whole test suite, from a fresh machine: README's test command and what CI runs.
#
#   scripts/test.sh
#
# 1. starts every test server on loopback that is not running (scripts/services.sh up),
# 2. builds the Python virtualenv with Flask and Flask-Session for the interop tests,
# 3. checks formatting and clippy, then runs every test and doctest.
#
# SATCHEL_SKIP_<BACKEND>=1 (REDIS, MEMCACHED, POSTGRES, MYSQL, MONGODB) leaves that backend's
# server alone and leaves its tests out; the summary lists them as SKIPPED, never as passed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

say() { printf '\n==> %s\n' "$*"; }
skipped() {
  local var="SATCHEL_SKIP_$1"
  case "${!var:-}" in 1 | true | yes) return 0 ;; *) return 1 ;; esac
}

# A clean build of every test binary takes about 3 GB (see [profile.dev] in Cargo.toml); with
# less room the linker dies with a bus error instead of saying why.
free_kb=$(df -Pk "$REPO" | awk 'NR == 2 { print $4 }')
if [[ $free_kb =~ ^[0-9]+$ ]] && ((free_kb < 4 * 1024 * 1024)); then
  echo "test.sh: warning: only $((free_kb / 1024)) MB free under $REPO; the build needs about 3 GB (cargo clean frees old builds)" >&2
fi

say "test servers"
scripts/services.sh up
# shellcheck source=/dev/null
source "${SATCHEL_SERVICES_DIR:-$REPO/.services}/env.sh"

say "python environment for the Flask interop tests"
scripts/python-env.sh
export SATCHEL_INTEROP_PYTHON="${SATCHEL_INTEROP_VENV:-$REPO/.venv-interop}/bin/python"

say "cargo fmt"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# Test binaries of skipped backends are filtered out, so the runner reports them as skipped.
filter="all()"
skipped_names=()
add_skip() { # add_skip NAME FILTERSET
  skipped_names+=("$1")
  filter="$filter - ($2)"
}
skipped REDIS && add_skip redis "package(satchel-redis) | binary_id(satchel::redis_commands) | test(/interop_redis/) | test(/redis/)"
skipped MEMCACHED && add_skip memcached "package(satchel-memcached) | test(/interop_memcached/) | test(/memcached/)"
skipped MONGODB && add_skip mongodb "package(satchel-mongodb) | test(/interop_mongodb/) | test(/mongodb/)"
skipped POSTGRES && add_skip postgres "binary_id(satchel-sql::postgres) | test(/interop_postgres/) | test(/postgres/)"
skipped MYSQL && add_skip mysql "binary_id(satchel-sql::mysql) | test(/interop_mysql/) | test(/mysql|mariadb/)"

say "cargo test"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs each test in its own process and reports filtered-out tests as skipped.
  cargo nextest run --workspace --no-fail-fast -E "$filter"
  cargo test --workspace --doc
else
  # Without nextest, skipped backends' tests run but return at once, printing SKIPPED.
  cargo test --workspace --no-fail-fast
fi

if ((${#skipped_names[@]})); then
  say "SKIPPED backends (by SATCHEL_SKIP_*): ${skipped_names[*]} — their tests did not run"
fi
say "all tests passed"
