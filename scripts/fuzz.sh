#!/usr/bin/env bash
# Fuzz Satchel's parsers and decoders with cargo-fuzz (libFuzzer), each target for a bounded time.
#
#   scripts/fuzz.sh                      every target, 60 s each
#   FUZZ_SECONDS=10 scripts/fuzz.sh      smoke mode (what CI runs)
#   FUZZ_SECONDS=3600 scripts/fuzz.sh codec_decode pickle_decode   a long run of some targets
#
# Targets (fuzz/fuzz_targets/, logic in fuzz/src/checks.rs):
#   session_id      satchel_core::SessionId::parse
#   codec_decode    satchel_core::Codec::decode (MessagePack, JSON, legacy pickle) and re-encoding
#   pickle_decode   satchel_core::pickle::decode
#   flask_signer    satchel::flask_cookie::Signer::unsign, FlaskCookie::session_id
#   cookie_session  satchel::cookie_session::CookieSession::loads/resign/dumps, CookieStore
#   value_bridge    stored values <-> actix-session's JSON texts, through Store over memory
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, SanitizerCoverage); on a stable
# toolchain this sets RUSTC_BOOTSTRAP=1 so stable rustc accepts them. The corpus grows in
# fuzz/corpus/<target> (git-ignored), seeded from fuzz/seeds/<target>; a crash is written to
# fuzz/artifacts/<target>/. Keep a minimised crash as fuzz/regressions/<target>/<name>:
# tests/fuzz_regressions.rs replays those in plain `cargo test`.
#
# Exit status: 0 when every target ran its time without a crash, 1 otherwise.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ_DIR="$REPO/fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-60}
ALL_TARGETS=(session_id codec_decode pickle_decode flask_signer cookie_session value_bridge)

die() { printf 'fuzz.sh: %s\n' "$*" >&2; exit 2; }

[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive number of seconds, not '$SECONDS_EACH'"

if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
  for target in "${TARGETS[@]}"; do
    [[ -f "$FUZZ_DIR/fuzz_targets/$target.rs" ]] || die "no fuzz target '$target' (have: ${ALL_TARGETS[*]})"
  done
else
  TARGETS=("${ALL_TARGETS[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

cd "$REPO"
LOG_DIR="$FUZZ_DIR/target/logs"
mkdir -p "$LOG_DIR"

# One build of every target up front, so the time limit below is fuzzing time only.
cargo fuzz build --fuzz-dir "$FUZZ_DIR"

failed=()
summary=()
for target in "${TARGETS[@]}"; do
  corpus="$FUZZ_DIR/corpus/$target"
  mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$target"
  # Extra corpus directories are read, never written: seeds and kept crash inputs.
  extra=()
  for dir in "$FUZZ_DIR/seeds/$target" "$FUZZ_DIR/regressions/$target"; do
    [[ -d $dir ]] && extra+=("$dir")
  done
  log="$LOG_DIR/$target.log"
  echo "fuzz.sh: $target for ${SECONDS_EACH}s (log: $log)"
  status=0
  cargo fuzz run --fuzz-dir "$FUZZ_DIR" "$target" "$corpus" "${extra[@]}" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo '?')
  if [[ $status -eq 0 ]]; then
    summary+=("$target: ok, $runs runs in ${SECONDS_EACH}s")
  else
    failed+=("$target")
    artifact=$(grep -Eo "$FUZZ_DIR/artifacts/$target/[^ ]+" "$log" | tail -n 1 || true)
    summary+=("$target: FAILED (exit $status) ${artifact:+input $artifact}")
    tail -n 40 "$log" >&2
    if [[ -n $artifact ]]; then
      echo "fuzz.sh: minimise with: RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz $target $artifact" >&2
    fi
  fi
done

printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: crashes or errors in: ${failed[*]}" >&2
  exit 1
fi
