#!/usr/bin/env bash
# Satchel's load benchmark (issue 8), in one command:
#
#   scripts/bench.sh                         every target, 3 rounds of 5 s (+1 s warm-up) per cell
#   scripts/bench.sh --targets redis         one group (see `--targets` below)
#   scripts/bench.sh --duration 10 --rounds 5
#
# 1. starts the loopback test servers that are not running (scripts/services.sh up),
# 2. builds the load test in release mode (benches/loadtest),
# 3. runs it: one server process per target, each checked to keep a session, then every
#    target measured in turn, round after round, for a read-only and a read-modify-write
#    request; the table of medians (requests/s, p50/p99 latency, ratio to the raw-call
#    reference of the same run) goes to stdout and to benches/results/<date>.md.
#
# Options (passed to `loadtest run`): --duration S, --warmup S, --rounds N, --connections N
# (default 64), --workers N (actix workers per server, default 2), --client-threads N
# (default 2), --targets LIST (target or group names: redis, memcached, mongodb, postgres,
# mariadb, sqlite, sql, cookie, all; `loadtest list` names every target), --workloads read,rmw,
# --out FILE, --base-port N (default 18100; one port per target from there).
#
# SATCHEL_SKIP_<BACKEND>=1 leaves a server alone in services.sh; its targets are then reported
# as left out. The figures are only comparable within one run: the machine is shared.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/services.sh up >&2
# shellcheck source=/dev/null
source "${SATCHEL_SERVICES_DIR:-$REPO/.services}/env.sh"

cargo build --release -p satchel-loadtest >&2
# The report shows this command rather than the binary it runs.
export LOADTEST_COMMAND=scripts/bench.sh
exec "${CARGO_TARGET_DIR:-$REPO/target}/release/loadtest" run "$@"
