# shellcheck shell=bash
# Shared by the benchmark scripts: messages, Debian package installs, and the
# otel-run binary to measure. Source it after setting SCRIPT_DIR.

if [[ -t 2 ]]; then
  log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
  log() { printf '==> %s\n' "$*" >&2; }
fi
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

REPO_ROOT="$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$SCRIPT_DIR/../.." && pwd -P))"

APT_UPDATED=0
apt_install() {
  # apt_install PACKAGE...
  if [[ "$(id -u)" -ne 0 ]]; then
    die "missing Debian package(s): $* -- install them (sudo apt-get install $*) and re-run"
  fi
  command -v apt-get >/dev/null || die "missing $* and no apt-get to install it"
  if (( APT_UPDATED == 0 )); then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Sets OTEL_RUN_BIN: $OTEL_RUN (a path or a name on PATH), else the release
# build of this repository, built if missing.
find_otel_run() {
  if [[ -n "${OTEL_RUN:-}" ]]; then
    if [[ "$OTEL_RUN" != */* ]]; then
      OTEL_RUN_BIN="$(command -v "$OTEL_RUN")" || die "OTEL_RUN=$OTEL_RUN not found in PATH"
    else
      OTEL_RUN_BIN="$OTEL_RUN"
    fi
    [[ -x "$OTEL_RUN_BIN" ]] || die "OTEL_RUN=$OTEL_RUN_BIN is not an executable file"
  else
    local target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
    [[ "$target_dir" = /* ]] || target_dir="$REPO_ROOT/$target_dir"
    OTEL_RUN_BIN="$target_dir/release/otel-run"
    if [[ ! -x "$OTEL_RUN_BIN" ]]; then
      # Built as install.sh builds it (.cargo/config.toml).
      log "$OTEL_RUN_BIN missing: cargo build-installed"
      (cd "$REPO_ROOT" && cargo build-installed)
      [[ -x "$OTEL_RUN_BIN" ]] || die "cargo build-installed did not produce $OTEL_RUN_BIN"
    fi
  fi
  OTEL_RUN_BIN="$(cd "$(dirname "$OTEL_RUN_BIN")" && pwd -P)/$(basename "$OTEL_RUN_BIN")"
}

# Prints which binary a bench measured, for its report: the resolved path,
# `--version`, and how it is linked (static is how install.sh installs it; a
# dynamically linked build starts measurably slower).
otel_run_identity() {
  local bin="${1:-$OTEL_RUN_BIN}" version linking
  version="$("$bin" --version 2>/dev/null | head -n1)" || version="?"
  linking="$(file -b "$bin" 2>/dev/null | grep -o 'statically linked\|dynamically linked\|static-pie linked' | head -n1)"
  printf '%s (%s, %s)\n' "$bin" "${version:-?}" "${linking:-linking unknown}"
}

# Prints the 1, 5 and 15-minute load averages: every bench reports them before
# and after its measurement, so a busy machine shows in its figures.
load_average() {
  cut -d' ' -f1-3 /proc/loadavg
}

# interleave_rounds ROUNDS FUNCTION ROW...: calls `FUNCTION ROW ROUND` for each
# row, row after row, in each of ROUNDS rounds. Rows measured one after another
# in one long block each see different moments of a shared machine; in rounds,
# drift in its load falls on every row alike and shows as spread.
interleave_rounds() {
  local rounds="$1" fn="$2" round row; shift 2
  for ((round = 1; round <= rounds; round++)); do
    log "round $round of $rounds"
    for row in "$@"; do
      "$fn" "$row" "$round"
    done
  done
}

# rounds_report TSV [ANCHOR]: a Markdown report of TSV (header `round row metric
# value`, one line per measurement): per row and metric, the median and the
# min–max over rounds; then, given ANCHOR, per metric and row other than it, the ratio
# row / ANCHOR taken within each round, with its median and range over rounds
# (a ratio within one round compares rows measured moments apart).
rounds_report() {
  python3 - "$@" <<'PY'
import csv, statistics, sys
from collections import defaultdict

path, anchor = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
values = defaultdict(dict)            # (row, metric) -> {round: value}
rows, metrics = [], []
with open(path) as f:
    for r in csv.DictReader(f, delimiter="\t"):
        if r["row"] not in rows:
            rows.append(r["row"])
        if r["metric"] not in metrics:
            metrics.append(r["metric"])
        values[(r["row"], r["metric"])][r["round"]] = float(r["value"])

def spread(xs):
    return f"{statistics.median(xs):.4g} ({min(xs):.4g}–{max(xs):.4g})"

rounds = sorted({k for v in values.values() for k in v}, key=int)
print(f"Median (min–max) over {len(rounds)} interleaved rounds:\n")
print("| row | " + " | ".join(metrics) + " |")
print("|---" * (len(metrics) + 1) + "|")
for row in rows:
    cells = [spread(list(values[(row, m)].values())) if values[(row, m)] else "–" for m in metrics]
    print(f"| {row} | " + " | ".join(cells) + " |")
print()
for row in rows:
    if anchor is None or row == anchor:
        continue
    for m in metrics:
        a, b = values[(row, m)], values[(anchor, m)]
        per_round = [a[k] / b[k] for k in rounds if k in a and k in b and b[k]]
        if per_round:
            listed = ", ".join(f"{x:.3f}" for x in per_round)
            print(f"- {m}, {row} / {anchor}: median {statistics.median(per_round):.3f} "
                  f"(range {min(per_round):.3f}–{max(per_round):.3f}; per round {listed})")
PY
}
