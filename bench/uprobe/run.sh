#!/usr/bin/env bash
# Cost per probed call: otel-run's uprobes vs bpftrace's empty probes (the floor).
#
# Usage: bench/uprobe/run.sh [-r|--runs N] [-n|--calls N] [-h|--help]
# See bench/uprobe/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/uprobe/run.sh [OPTIONS]

Times examples/uprobe-c's `work N` (N calls of `work()`) in interleaved rounds,
each at 1 call and at N calls, so start-up cancels out of the per-call cost:
  work N                                             (bare)
  bpftrace -e 'uprobe:work:work {@a=count()} uretprobe:work:work {@b=count()}' -c 'work N'
  otel-run --uprobe :work --traces-exporter console --console-output /dev/null -- work N
Then runs `work` paced at 100 000 calls/s under otel-run (traces queue of 65536,
100 ms schedule) and reports lost calls and exported spans.

Options:
  -r, --runs N     interleaved rounds              (env BENCH_RUNS,  default 5)
  -n, --calls N    calls in the long runs          (env BENCH_CALLS, default 500000)
  -h, --help       show this help

Environment:
  OTEL_RUN         otel-run binary to measure (default: the repository's release build,
                   built with `cargo build-installed` if missing; it needs clang at build time)

Needs root (eBPF). Results go to bench/uprobe/results/ (gitignored).
USAGE
}

RUNS="${BENCH_RUNS:-5}"
CALLS="${BENCH_CALLS:-500000}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r|--runs)  RUNS="${2:?--runs needs a value}"; shift 2 ;;
    -n|--calls) CALLS="${2:?--calls needs a value}"; shift 2 ;;
    -h|--help)  usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 2 ]] || { echo "run.sh: --runs must be >= 2" >&2; exit 2; }
[[ "$CALLS" =~ ^[0-9]+$ && "$CALLS" -ge 1000 ]] || { echo "run.sh: --calls must be >= 1000" >&2; exit 2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"

[[ "$(id -u)" -eq 0 ]] || die "eBPF probes need root: run with sudo"

# --- tools -----------------------------------------------------------------------
missing=()
command -v bc >/dev/null || missing+=(bc)
command -v bpftrace >/dev/null || missing+=(bpftrace)
command -v gcc >/dev/null || missing+=(gcc)
command -v clang >/dev/null || missing+=(clang)
[[ -f /usr/include/bpf/bpf_helpers.h ]] || missing+=(libbpf-dev)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
# bpftrace attaches through tracefs; otel-run does not need it.
if ! mountpoint -q /sys/kernel/tracing; then
  log "mounting tracefs for bpftrace"
  mount -t tracefs nodev /sys/kernel/tracing
fi

find_otel_run

# --- the program -------------------------------------------------------------------
BUILD="$SCRIPT_DIR/results/build"
mkdir -p "$BUILD"
WORK="$BUILD/work"
gcc -O2 -g -o "$WORK" "$REPO_ROOT/examples/uprobe-c/work.c"

while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)

BPFTRACE_PROG="uprobe:$WORK:work { @enter = count(); } uretprobe:$WORK:work { @return = count(); }"
OTEL_FLAGS=(--uprobe :work --traces-exporter console --console-output /dev/null
            --metrics-exporter none --logs-exporter none)

q() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; printf '%s' "${out% }"; }

NAMES=() COMMANDS=()
for n in 1 "$CALLS"; do
  NAMES+=("bare $n");     COMMANDS+=("$(q "$WORK" "$n")")
  NAMES+=("bpftrace $n"); COMMANDS+=("$(q bpftrace -e "$BPFTRACE_PROG" -c "$WORK $n")")
  NAMES+=("otel-run $n"); COMMANDS+=("$(q "$OTEL_RUN_BIN" "${OTEL_FLAGS[@]}" -- "$WORK" "$n")")
done

# Sanity: probes really attach (a run that silently ran unprobed would look free).
probe_check="$("$OTEL_RUN_BIN" -v "${OTEL_FLAGS[@]}" -- "$WORK" 1000 2>&1 >/dev/null)"
grep -q "1000 probed calls recorded" <<<"$probe_check" \
  || die "otel-run did not record the probed calls: $probe_check"
bpftrace -e "$BPFTRACE_PROG" -c "$WORK 1000" 2>&1 | grep -q "@enter: 1000" \
  || die "bpftrace did not count the probed calls"

mkdir -p "$RESULTS_DIR"
LOAD_BEFORE="$(load_average)"
log "load average before: $LOAD_BEFORE on $(nproc) CPUs"

# --- wall time: the commands taking turns, one warm-up round, then RUNS rounds ----------
WALL_TSV="$RESULTS_DIR/wall.tsv"
printf 'round\trow\tmetric\tvalue\n' > "$WALL_TSV"
wall_row() {  # wall_row INDEX ROUND: one timed run of a command (round 0: warm-up, not kept)
  local start end
  start=$(date +%s.%N)
  eval "${COMMANDS[$1]}" >/dev/null 2>&1 || die "'${NAMES[$1]}' failed"
  end=$(date +%s.%N)
  (( $2 == 0 )) || printf '%s\t%s\twall (s)\t%s\n' "$2" "${NAMES[$1]}" "$(echo "$end - $start" | bc)" >> "$WALL_TSV"
}
log "wall time: ${#NAMES[@]} commands, one warm-up round and $RUNS interleaved rounds"
for i in "${!NAMES[@]}"; do wall_row "$i" 0; done
interleave_rounds "$RUNS" wall_row "${!NAMES[@]}"

# --- CPU per call, as the program sees it ----------------------------------------------
# `work` reports its loop's CPU time (user + kernel: the probes run in the calling
# thread, so their cost is in it; time waiting for a CPU while otel-run builds and
# exports spans on a busy machine is not). Interleaved rounds.
log "CPU per call: $RUNS interleaved rounds of $CALLS calls"
CPU_TSV="$RESULTS_DIR/cpu.tsv"
printf 'round\trow\tmetric\tvalue\n' > "$CPU_TSV"
cpu_of() { grep -o '[0-9.]* ns CPU per call' | cut -d' ' -f1; }
cpu_row() {  # cpu_row TOOL ROUND: the loop's own CPU per call under TOOL
  local ns
  case $1 in
    bare)     ns="$(WORK_TIMING=1 "$WORK" "$CALLS" 2>&1 >/dev/null | cpu_of)" ;;
    bpftrace) ns="$(WORK_TIMING=1 bpftrace -e "$BPFTRACE_PROG" -c "$WORK $CALLS" 2>&1 | cpu_of)" ;;
    otel-run) ns="$(WORK_TIMING=1 "$OTEL_RUN_BIN" "${OTEL_FLAGS[@]}" -- "$WORK" "$CALLS" 2>&1 >/dev/null | cpu_of)" ;;
  esac
  printf '%s\t%s\tCPU per call (ns)\t%s\n' "$2" "$1" "$ns" >> "$CPU_TSV"
}
interleave_rounds "$RUNS" cpu_row bare bpftrace otel-run

# --- lost calls at 100 000 calls/s ----------------------------------------------------
RATE=100000
PACED=$((RATE * 3))
log "otel-run at $RATE calls/s for 3 s"
# A queue that holds a few batches of this rate: the default (2048 spans, 5 s
# schedule) is sized for application spans and would drop most of these.
"$OTEL_RUN_BIN" -v "${OTEL_FLAGS[@]}" --bsp-max-queue-size 65536 --bsp-schedule-delay 100 \
  -- "$WORK" "$PACED" 0 "$RATE" \
  >/dev/null 2>"$RESULTS_DIR/paced.stderr" || die "paced run failed: $(cat "$RESULTS_DIR/paced.stderr")"

LOAD_AFTER="$(load_average)"
python3 - "$RESULTS_DIR" "$CALLS" "$PACED" "$LOAD_BEFORE" "$LOAD_AFTER" "$(otel_run_identity)" <<'PY'
import csv, os, re, statistics, sys

results, calls, paced = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
load_before, load_after, identity = sys.argv[4:7]
def by_row(name):
    rows = {}
    with open(os.path.join(results, name)) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows.setdefault(r["row"], []).append(float(r["value"]))
    return rows
hf = {name: {"median": statistics.median(v)} for name, v in by_row("wall.tsv").items()}

def per_call_ns(tool):
    # The slope between 1 call and N calls: start-up and attach costs cancel out.
    return (hf[f"{tool} {calls}"]["median"] - hf[f"{tool} 1"]["median"]) / (calls - 1) * 1e9

bare, bpf, otel = per_call_ns("bare"), per_call_ns("bpftrace"), per_call_ns("otel-run")
cpu = {name: statistics.median(values) for name, values in by_row("cpu.tsv").items()}
stderr = open(os.path.join(results, "paced.stderr")).read()
recorded = int(re.search(r"(\d+) probed calls recorded", stderr).group(1))
lost = re.search(r"(\d+) probed calls were not recorded", stderr)
lost = int(lost.group(1)) if lost else 0
exported = re.search(r"(\d+) spans exported", stderr)
exported = int(exported.group(1)) if exported else 0
dropped = re.search(r"(\d+) dropped", stderr)
dropped = int(dropped.group(1)) if dropped else 0
probe = {name: cpu[name] - cpu["bare"] for name in ("bpftrace", "otel-run")}
out = [
    "# uprobe benchmark summary\n",
    f"- otel-run: `{identity}`",
    f"- host: {os.cpu_count()} CPUs; load average (1, 5, 15 min) {load_before} before, {load_after} after",
    f"- {calls} calls of `work()`; CPU: the program's own CPU time per call (median of the rounds);",
    f"  wall: the slope of the median wall times between 1 and {calls} calls, whole run\n",
    "| command | CPU per call (ns) | probe cost over bare, CPU (ns) | wall per call (ns) |",
    "|---|---|---|---|",
    f"| bare | {cpu['bare']:.0f} | — | {bare:.0f} |",
    f"| bpftrace (empty count probes) | {cpu['bpftrace']:.0f} | {probe['bpftrace']:.0f} | {bpf:.0f} |",
    f"| otel-run | {cpu['otel-run']:.0f} | {probe['otel-run']:.0f} | {otel:.0f} |",
    "",
    f"- otel-run / bpftrace, probe cost per call paid by the program (CPU): {probe['otel-run'] / probe['bpftrace']:.2f}x (target <= 1.2x)",
    f"- otel-run / bpftrace, wall per call of the whole run (includes otel-run building and exporting spans): {(otel - bare) / (bpf - bare):.2f}x",
    f"- at 100000 calls/s for {paced} calls: {recorded} recorded, {lost} lost in the ring buffer; "
    f"{exported} spans exported (the process span included), {dropped} dropped by the traces queue",
]
text = "\n".join(out) + "\n"
open(os.path.join(results, "summary.md"), "w").write(text)
PY
{
  echo; echo "## CPU per call over rounds"; echo; rounds_report "$CPU_TSV" bpftrace
  echo; echo "## Wall time over rounds"; echo; rounds_report "$WALL_TSV"
} >> "$RESULTS_DIR/summary.md"
echo
cat "$RESULTS_DIR/summary.md"
log "results in $RESULTS_DIR (wall.tsv, cpu.tsv, paced.stderr, summary.md)"
