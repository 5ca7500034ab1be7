#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (as `cargo fuzz list` names them) for a
# bounded time each, on a corpus copied from fuzz/seeds/TARGET into a scratch
# directory, and prints each target's executions per second and coverage
# (libFuzzer's final `cov:` and `ft:`) as a table. Fails on any crash, leak,
# timeout or out-of-memory, printing the input that caused it.
#
# Usage: bench/fuzz.sh [SECONDS]   (per target; default 60)
#
# Needs a nightly toolchain (`cargo +nightly`); installs cargo-fuzz when missing.
# FUZZ_KEEP=1 keeps the scratch directory (the grown corpora) after a success.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
die() { printf 'fuzz.sh: error: %s\n' "$*" >&2; exit 1; }

seconds="${1:-60}"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a whole number of seconds, not \`$seconds\`"

# The largest input libFuzzer makes, per target: room for a head with more
# header lines than the proxy takes and a chunk-size line over its limit; for
# the settings, a full command line and config file. Other targets get
# libFuzzer's default.
max_len_of() {
  case "$1" in
    h1_framing) echo 8192 ;;
    settings_resolve) echo 4096 ;;
    otlp_decode) echo 65536 ;;
    *) ;;
  esac
}

cd "$REPO_ROOT"
if ! cargo +nightly --version >/dev/null 2>&1; then
  log "no nightly toolchain: rustup toolchain install nightly"
  rustup toolchain install nightly --profile minimal >&2 \
    || die "cargo-fuzz needs a nightly toolchain (\`rustup toolchain install nightly\`)"
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  log "cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked >&2
fi

# The same flags for build and run, or `cargo fuzz run` builds again: release
# with debug assertions and overflow checks, AddressSanitizer (the default).
# Builds are kept beside the other CI caches, so a second run on the same machine
# does not compile every dependency with AddressSanitizer again.
target_dir="${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}/fuzz-target"
build=(--release --debug-assertions --target-dir "$target_dir")
mapfile -t targets < <(cargo +nightly fuzz list)
((${#targets[@]})) || die "cargo fuzz list names no target"
log "building ${targets[*]}"
cargo +nightly fuzz build "${build[@]}" >&2

# libFuzzer's closing figures: `stat::NAME: N` lines, and the last status line's fields.
final_stat() { sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$dir/log" | tail -n 1; }
field() { sed -n "s/.* $1: \([^ ]*\).*/\1/p" <<<"$final"; }

scratch="$(mktemp -d "${TMPDIR:-/tmp}/otel-run-fuzz.XXXXXX")"
rows=()
failed=()
load_before="$(load_average)"
for target in "${targets[@]}"; do
  dir="$scratch/$target"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  if [[ -d "fuzz/seeds/$target" ]]; then
    cp -R "fuzz/seeds/$target/." "$dir/corpus/"
  fi
  args=(
    -max_total_time="$seconds"
    -rss_limit_mb=2048
    -timeout=25
    -print_final_stats=1
    -artifact_prefix="$dir/artifacts/"
  )
  max_len="$(max_len_of "$target")"
  [[ -z "$max_len" ]] || args+=(-max_len="$max_len")
  log "fuzzing $target for ${seconds}s ($(find "$dir/corpus" -type f | wc -l) seeds)"
  status=0
  cargo +nightly fuzz run "${build[@]}" "$target" "$dir/corpus" -- "${args[@]}" \
    >"$dir/log" 2>&1 || status=$?
  final="$(grep -E '^#[0-9]+.*cov: ' "$dir/log" | tail -n 1 || true)"
  rows+=("$(printf '%-18s %9s %8s %6s %6s %7s' "$target" \
    "$(final_stat number_of_executed_units)" "$(final_stat average_exec_per_sec)" \
    "$(field cov)" "$(field ft)" "$(field corp | cut -d/ -f1)")")
  if ((status != 0)); then
    failed+=("$target")
    printf '\n%s failed (exit %s); the end of its log:\n' "$target" "$status" >&2
    tail -n 60 "$dir/log" >&2
    for input in "$dir"/artifacts/*; do
      [[ -f "$input" ]] || continue
      printf '\n%s, in base64 (reproduce: base64 -d > crash; cargo +nightly fuzz run %s %s crash):\n' \
        "$input" "${build[*]}" "$target" >&2
      base64 "$input" >&2
    done
  fi
done

printf '\nfuzzing, %ss per target; load average %s before, %s after\n' "$seconds" "$load_before" "$(load_average)"
printf '%-18s %9s %8s %6s %6s %7s\n' target runs exec/s cov ft corpus
printf '%s\n' "${rows[@]}"
if ((${#failed[@]})); then
  printf '\nscratch directory kept: %s\n' "$scratch" >&2
  die "crash in ${failed[*]}"
fi
if [[ "${FUZZ_KEEP:-0}" == 1 ]]; then
  printf '\ncorpora kept in %s\n' "$scratch"
else
  rm -rf "$scratch"
fi
