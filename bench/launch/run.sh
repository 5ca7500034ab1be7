#!/usr/bin/env bash
# Launch-overhead benchmark: how much does starting a command through otel-run
# cost, compared with running it bare and with Python's `opentelemetry-instrument`?
#
# Usage: bench/launch/run.sh [-r|--runs N] [-w|--warmup N] [-m|--mem-runs N] [-h|--help]
# See bench/launch/README.md for details.
# shellcheck disable=SC2034  # CMD_0..CMD_7 are read through `declare -n cmd=CMD_$i`
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/launch/run.sh [OPTIONS]

Compares the start-up cost (wall time with hyperfine, peak RSS with GNU time,
instructions with callgrind for the native rows) of
  true
  otel-run --traces-exporter none -- true
  otel-run -- true                                  (OTLP over gRPC, nothing listening)
  otel-run --exporter-otlp-protocol http/protobuf -- true   (nothing listening)
  opentelemetry-instrument true                     (its defaults: OTLP exporters)
  opentelemetry-instrument --traces_exporter none --metrics_exporter none --logs_exporter none true
  floor true          (bench/launch/floor.rs: fork, exec, wait; nothing else)
  floor --exec true   (exec only: the least any launcher costs)

Options:
  -n, --rounds N     interleaved rounds of hyperfine     (env BENCH_ROUNDS,   default 5)
  -r, --runs N       hyperfine runs per command and round (env BENCH_RUNS,    default 10)
  -w, --warmup N     hyperfine warm-up runs per command and round (env BENCH_WARMUP, default 2)
  -m, --mem-runs N   /usr/bin/time runs per command      (env BENCH_MEM_RUNS, default 10)
  -h, --help         show this help

Environment:
  OTEL_RUN           otel-run binary to measure (default: ${CARGO_TARGET_DIR:-<repo>/target}/release/otel-run,
                     built with `cargo build-installed` at the repo root if missing)
  OTEL_RUN_CACHE     cache dir for the throwaway venv (default: $HOME/.cache/otel-run-ci)
  PYTHON             interpreter used to create the venv (default: python3)

Results go to bench/launch/results/ (gitignored).
USAGE
}

ROUNDS="${BENCH_ROUNDS:-5}"
RUNS="${BENCH_RUNS:-10}"
WARMUP="${BENCH_WARMUP:-2}"
MEM_RUNS="${BENCH_MEM_RUNS:-10}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--rounds)   ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    --rounds=*)    ROUNDS="${1#*=}"; shift ;;
    -r|--runs)     RUNS="${2:?--runs needs a value}"; shift 2 ;;
    --runs=*)      RUNS="${1#*=}"; shift ;;
    -w|--warmup)   WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
    --warmup=*)    WARMUP="${1#*=}"; shift ;;
    -m|--mem-runs) MEM_RUNS="${2:?--mem-runs needs a value}"; shift 2 ;;
    --mem-runs=*)  MEM_RUNS="${1#*=}"; shift ;;
    -h|--help)     usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in ROUNDS RUNS WARMUP MEM_RUNS; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
    echo "run.sh: $v must be a non-negative integer, got '${!v}'" >&2; exit 2
  fi
done
if (( ROUNDS < 1 || RUNS < 2 || MEM_RUNS < 1 )); then
  echo "run.sh: need --rounds >= 1, --runs >= 2 and --mem-runs >= 1" >&2; exit 2
fi


# --- locations ---------------------------------------------------------------
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"
PYTHON="${PYTHON:-python3}"
CACHE_DIR="${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}"

# Pinned PyPI versions of the Python anchor (opentelemetry-distro follows the
# opentelemetry-instrumentation 0.x line, the exporter follows the SDK 1.x line).
PY_REQUIREMENTS=(
  "opentelemetry-distro==0.66b2"
  "opentelemetry-instrumentation==0.66b2"
  "opentelemetry-exporter-otlp==1.45.2"
  "opentelemetry-sdk==1.45.2"
  "opentelemetry-api==1.45.2"
)

# --- tools -------------------------------------------------------------------

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v "$PYTHON" >/dev/null || missing+=(python3 python3-venv)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3-venv
fi
/usr/bin/time -f %M true 2>/dev/null >/dev/null || die "/usr/bin/time is not GNU time (need -f %M)"
hyperfine --help 2>/dev/null | grep -q -- '--shell' || die "hyperfine too old (need -N/--shell=none, hyperfine >= 1.13)"

# --- otel-run binary ---------------------------------------------------------
find_otel_run

# --- the floor: a minimal launcher, linked as otel-run is -----------------------
command -v rustc >/dev/null || die "rustc is needed to build the floor row (bench/launch/floor.rs)"
mkdir -p "$RESULTS_DIR"
FLOOR="$RESULTS_DIR/floor"
rustc --edition 2024 -O -C target-feature=+crt-static -C relocation-model=static \
  -o "$FLOOR" "$SCRIPT_DIR/floor.rs" || die "cannot build $SCRIPT_DIR/floor.rs"

# --- throwaway venv with opentelemetry-instrument ------------------------------
PY_ID="$("$PYTHON" -c 'import sys; print(sys.implementation.name, sys.version, sys.executable)')"
VENV_HASH="$(printf '%s\n' "$PY_ID" "${PY_REQUIREMENTS[@]}" | sha256sum | cut -c1-12)"
VENV="$CACHE_DIR/bench-launch-venv-$VENV_HASH"
STAMP="$VENV/.bench-launch-complete"
if [[ ! -f "$STAMP" ]]; then
  log "creating venv $VENV (${PY_REQUIREMENTS[*]})"
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "${PY_REQUIREMENTS[@]}"
  "$VENV/bin/python" -m pip freeze --disable-pip-version-check > "$VENV/requirements.lock"
  touch "$STAMP"
else
  log "reusing venv $VENV"
fi
OTEL_INSTRUMENT="$VENV/bin/opentelemetry-instrument"
[[ -x "$OTEL_INSTRUMENT" ]] || die "$OTEL_INSTRUMENT missing (delete $VENV and re-run)"

# --- clean environment ----------------------------------------------------------
# Nothing inherited may point either tool at a real backend or change its
# behaviour: drop every OTEL_* variable (we have already read OTEL_RUN and
# OTEL_RUN_CACHE) and any PYTHONPATH/PYTHONHOME. With no OTEL_* set, the OTLP
# defaults target localhost only.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)
unset PYTHONPATH PYTHONHOME

# --- the commands ----------------------------------------------------------------
NAMES=(
  "true"
  "otel-run --traces-exporter none -- true"
  "otel-run -- true (OTLP/gRPC, nothing listening)"
  "otel-run --exporter-otlp-protocol http/protobuf -- true (nothing listening)"
  "opentelemetry-instrument true"
  "opentelemetry-instrument --traces_exporter none --metrics_exporter none --logs_exporter none true"
  "floor -- true (a minimal launcher: fork, exec, wait)"
  "floor --exec true (exec only: no fork, no wait)"
)
CMD_0=(true)
CMD_1=("$OTEL_RUN_BIN" --traces-exporter none -- true)
CMD_2=("$OTEL_RUN_BIN" -- true)
CMD_3=("$OTEL_RUN_BIN" --exporter-otlp-protocol http/protobuf -- true)
CMD_4=("$OTEL_INSTRUMENT" true)
CMD_5=("$OTEL_INSTRUMENT" --traces_exporter none --metrics_exporter none --logs_exporter none true)
CMD_6=("$FLOOR" true)
CMD_7=("$FLOOR" --exec true)
# Rows measured under callgrind too (the Python ones would take minutes; the
# exec-only floor leaves nothing for callgrind to count once it has exec'd).
NATIVE=(0 1 2 3 6)

# The OTLP rows export otel-run's own span to the default endpoints, which must
# refuse it: a collector there would make the rows measure its answers.
for port in 4317 4318; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "something listens on 127.0.0.1:$port; stop it for the OTLP rows"
  fi
done

cmd_string() {  # quote an argv for hyperfine -N (POSIX shell-words splitting)
  local out="" a
  for a in "$@"; do out+="$(printf '%q' "$a") "; done
  printf '%s' "${out% }"
}

# Sanity: every command must succeed before we time it.
for i in "${!NAMES[@]}"; do
  declare -n cmd="CMD_$i"
  "${cmd[@]}" </dev/null >/dev/null 2>&1 || die "'${NAMES[$i]}' failed (exit $?)"
  unset -n cmd
done

mkdir -p "$RESULTS_DIR"

LOAD_BEFORE="$(load_average)"
LOAD1="${LOAD_BEFORE%% *}"
if awk -v l="$LOAD1" -v n="$(nproc)" 'BEGIN { exit !(l > 0.5 * n) }'; then
  log "WARNING: 1-minute load average is $LOAD1 on $(nproc) CPUs: expect noisy numbers"
fi

# --- wall time: hyperfine, the commands taking turns in interleaved rounds --------------
rm -f "$RESULTS_DIR"/hyperfine-*.json
hf_row() {  # hf_row INDEX ROUND: one hyperfine run of one command
  declare -n cmd="CMD_$1"
  hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style none \
    --export-json "$RESULTS_DIR/hyperfine-$1-r$2.json" \
    --command-name "${NAMES[$1]}" "$(cmd_string "${cmd[@]}")" >/dev/null
  unset -n cmd
}
log "hyperfine: $ROUNDS interleaved rounds, $WARMUP warm-up + $RUNS runs per command"
interleave_rounds "$ROUNDS" hf_row "${!NAMES[@]}"

# --- peak RSS: GNU time, interleaved rounds -------------------------------------------
log "peak RSS: $MEM_RUNS runs per command with /usr/bin/time -f %M"
MEM_TSV="$RESULTS_DIR/memory.tsv"
TIME_OUT="$(mktemp)"
trap 'rm -f "$TIME_OUT"' EXIT
printf 'index\tcommand\tmax_rss_kib\n' > "$MEM_TSV"
for ((r = 0; r < MEM_RUNS; r++)); do
  for i in "${!NAMES[@]}"; do
    declare -n cmd="CMD_$i"
    /usr/bin/time -f %M -o "$TIME_OUT" -- "${cmd[@]}" </dev/null >/dev/null \
      || die "'${NAMES[$i]}' failed under /usr/bin/time: $(cat "$TIME_OUT")"
    unset -n cmd
    printf '%s\t%s\t%s\n' "$i" "${NAMES[$i]}" "$(tail -n1 "$TIME_OUT")" >> "$MEM_TSV"
  done
done

# --- instructions: callgrind, the process itself (not the command it runs) --------------
log "instructions: one callgrind run per native command"
INSN_TSV="$RESULTS_DIR/instructions.tsv"
CG_OUT="$(mktemp)"
trap 'rm -f "$TIME_OUT" "$CG_OUT"' EXIT
printf 'index\tcommand\tinstructions\n' > "$INSN_TSV"
for i in "${NATIVE[@]}"; do
  declare -n cmd="CMD_$i"
  valgrind --tool=callgrind --callgrind-out-file=/dev/null -- "${cmd[@]}" </dev/null >/dev/null 2>"$CG_OUT" \
    || die "'${NAMES[$i]}' failed under callgrind: $(tail -n3 "$CG_OUT")"
  unset -n cmd
  insns="$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$CG_OUT" | head -n1)"
  printf '%s\t%s\t%s\n' "$i" "${NAMES[$i]}" "$insns" >> "$INSN_TSV"
done

# --- how much of the launch's code the binary has side by side (bench/launch/order.sh) ----
ORDER_FILE="$REPO_ROOT/.cargo/launch.order"
ORDER_FOUND="$(nm --demangle=none --defined-only "$OTEL_RUN_BIN" 2>/dev/null | awk '{ print $3 }' | sort -u \
  | comm -12 - <(sort -u "$ORDER_FILE") | wc -l)"
ORDER_NOTE="$ORDER_FOUND of the $(wc -l < "$ORDER_FILE") functions of .cargo/launch.order are in the binary"

# --- summary ------------------------------------------------------------------------------
LOAD_AFTER="$(load_average)"
"$PYTHON" - "$RESULTS_DIR" "$(otel_run_identity); $ORDER_NOTE" "$VENV" "$LOAD_BEFORE" "$LOAD_AFTER" "$ROUNDS" "${NAMES[@]}" <<'PY'
import csv, json, os, platform, statistics, sys

results_dir, otel_run, venv, load_before, load_after, rounds = sys.argv[1:7]
rounds = int(rounds)
names = sys.argv[7:]        # row order: true, otel-run (none, gRPC, HTTP), instrument, instrument (none), floor, exec only
hf = []                     # per command, all its runs over the rounds pooled
with open(os.path.join(results_dir, "rounds.tsv"), "w") as tsv:
    tsv.write("round\trow\tmetric\tvalue\n")
    for i, name in enumerate(names):
        times = []
        for r in range(1, rounds + 1):
            with open(os.path.join(results_dir, f"hyperfine-{i}-r{r}.json")) as f:
                t = json.load(f)["results"][0]["times"]
            times += t
            tsv.write(f"{r}\t{name}\tmean (ms)\t{statistics.mean(t) * 1e3}\n")
        hf.append({"mean": statistics.mean(times), "stddev": statistics.stdev(times),
                   "median": statistics.median(times), "min": min(times), "times": times})
mem = {}
with open(os.path.join(results_dir, "memory.tsv")) as f:
    for row in csv.DictReader(f, delimiter="\t"):
        mem.setdefault(int(row["index"]), []).append(int(row["max_rss_kib"]))
insns = {}
with open(os.path.join(results_dir, "instructions.tsv")) as f:
    for row in csv.DictReader(f, delimiter="\t"):
        insns[int(row["index"])] = int(row["instructions"])

assert len(hf) == len(names), f"expected {len(names)} hyperfine results, got {len(hf)}"
rows = []
for i, name in enumerate(names):
    r = hf[i]
    rows.append({
        "command": name,
        "mean_ms": r["mean"] * 1e3,
        "stddev_ms": (r["stddev"] or 0.0) * 1e3,
        "median_ms": r["median"] * 1e3,
        "min_ms": r["min"] * 1e3,
        "runs": len(r["times"]),
        "rss_mib": statistics.median(mem[i]) / 1024.0,
        "rss_runs": len(mem[i]),
        "instructions": insns.get(i),
    })
TRUE, OTELRUN, GRPC, HTTP, OI, OI_NONE, FLOOR, EXEC = rows

def ratio(a, b):
    return a / b if b else float("nan")

out = []
out.append(f"# Launch benchmark summary\n")
out.append(f"- otel-run: `{otel_run}`")
out.append(f"- opentelemetry-instrument venv: `{venv}`")
out.append(f"- host: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}")
out.append(f"- load average (1, 5, 15 min): {load_before} before, {load_after} after")
out.append(f"- wall time: {rounds} interleaved rounds of hyperfine -N, the runs of all rounds pooled "
           f"below; each round's mean, its spread and the ratios per round follow the table\n")
w = max(len(r["command"]) for r in rows)
out.append(f"| {'command':<{w}} | mean ± σ (ms)     | median (ms) | min (ms) | peak RSS (MiB) | instructions |")
out.append(f"|{'-' * (w + 2)}|-------------------|-------------|----------|----------------|--------------|")
for r in rows:
    ms = f"{r['mean_ms']:8.2f} ± {r['stddev_ms']:6.2f}"
    n = "—" if r["instructions"] is None else f"{r['instructions'] / 1e6:.2f} M"
    out.append(f"| {r['command']:<{w}} | {ms:<17} | {r['median_ms']:11.2f} | {r['min_ms']:8.2f} | {r['rss_mib']:14.1f} | {n:>12} |")
out.append("")
out.append("Ratios (wall time: mean, median in brackets; memory: median peak RSS):")
for label, oi in (("opentelemetry-instrument true", OI),
                  ("opentelemetry-instrument (exporters none)", OI_NONE)):
    out.append(f"- {label} / otel-run: "
               f"time {ratio(oi['mean_ms'], OTELRUN['mean_ms']):.1f}x "
               f"[{ratio(oi['median_ms'], OTELRUN['median_ms']):.1f}x], "
               f"memory {ratio(oi['rss_mib'], OTELRUN['rss_mib']):.1f}x")
for label, row in (("otel-run (traces none)", OTELRUN), ("otel-run (OTLP/gRPC)", GRPC),
                   ("otel-run (OTLP/HTTP)", HTTP)):
    out.append(f"- {label} overhead over bare true: "
               f"+{row['mean_ms'] - TRUE['mean_ms']:.2f} ms "
               f"[+{row['median_ms'] - TRUE['median_ms']:.2f} ms] "
               f"({ratio(row['mean_ms'], TRUE['mean_ms']):.1f}x time), "
               f"+{row['rss_mib'] - TRUE['rss_mib']:.1f} MiB "
               f"({ratio(row['rss_mib'], TRUE['rss_mib']):.1f}x memory)")
out.append(f"- the floor (a minimal launcher) over bare true: "
           f"+{FLOOR['mean_ms'] - TRUE['mean_ms']:.2f} ms "
           f"[+{FLOOR['median_ms'] - TRUE['median_ms']:.2f} ms], "
           f"+{FLOOR['rss_mib'] - TRUE['rss_mib']:.1f} MiB; what any launcher costs here")
out.append(f"- one exec alone (floor --exec) over bare true: "
           f"+{EXEC['mean_ms'] - TRUE['mean_ms']:.2f} ms "
           f"[+{EXEC['median_ms'] - TRUE['median_ms']:.2f} ms]; the least a launcher that is a "
           f"process of its own can cost")
for label, row in (("otel-run (traces none)", OTELRUN), ("otel-run (OTLP/gRPC)", GRPC),
                   ("otel-run (OTLP/HTTP)", HTTP)):
    out.append(f"- {label} over the floor: "
               f"+{row['mean_ms'] - FLOOR['mean_ms']:.2f} ms "
               f"[+{row['median_ms'] - FLOOR['median_ms']:.2f} ms]")
out.append(f"- opentelemetry-instrument overhead over bare true: "
           f"+{OI['mean_ms'] - TRUE['mean_ms']:.2f} ms, +{OI['rss_mib'] - TRUE['rss_mib']:.1f} MiB")
text = "\n".join(out) + "\n"
with open(os.path.join(results_dir, "summary.md"), "w") as f:
    f.write(text)
with open(os.path.join(results_dir, "summary.json"), "w") as f:
    json.dump({"otel_run": otel_run, "venv": venv, "load_before": load_before,
               "load_after": load_after, "rounds": rounds, "rows": rows}, f, indent=2)
PY
{ echo; echo "## Wall time over rounds"; echo; rounds_report "$RESULTS_DIR/rounds.tsv" "${NAMES[4]}"; } \
  >> "$RESULTS_DIR/summary.md"
echo
cat "$RESULTS_DIR/summary.md"
log "results in $RESULTS_DIR (hyperfine-*.json, rounds.tsv, memory.tsv, instructions.tsv, summary.md, summary.json)"
