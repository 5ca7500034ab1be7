#!/usr/bin/env bash
# Cost per probed call: otel-run's uprobes vs bpftrace's empty probes (the floor).
#
# Usage: bench/uprobe/run.sh [-r|--runs N] [-n|--calls N] [-h|--help]
# See bench/uprobe/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/uprobe/run.sh [OPTIONS]

Times examples/uprobe-c's `work N` (N calls of `work()`) in one hyperfine run,
each at 1 call and at N calls, so start-up cancels out of the per-call cost:
  work N                                             (bare)
  bpftrace -e 'uprobe:work:work {@a=count()} uretprobe:work:work {@b=count()}' -c 'work N'
  otel-run --uprobe :work --traces-exporter console --console-output /dev/null -- work N
Then runs `work` paced at 100 000 calls/s under otel-run (traces queue of 65536,
100 ms schedule) and reports lost calls and exported spans.

Options:
  -r, --runs N     hyperfine runs per command     (env BENCH_RUNS,  default 5)
  -n, --calls N    calls in the long runs          (env BENCH_CALLS, default 500000)
  -h, --help       show this help

Environment:
  OTEL_RUN         otel-run binary to measure (default: the repository's release build,
                   built with `cargo build --release` if missing; it needs clang at build time)

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
command -v hyperfine >/dev/null || missing+=(hyperfine)
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
read -r LOAD1 _ < /proc/loadavg
log "load average (1 min) before: $LOAD1 on $(nproc) CPUs"

HF=(-N --warmup 1 --runs "$RUNS" --style basic
    --export-json "$RESULTS_DIR/hyperfine.json" --export-markdown "$RESULTS_DIR/hyperfine.md")
for i in "${!NAMES[@]}"; do HF+=(--command-name "${NAMES[$i]}" "${COMMANDS[$i]}"); done
log "hyperfine: ${#NAMES[@]} commands, $RUNS runs each"
hyperfine "${HF[@]}"

# --- CPU per call, as the program sees it ----------------------------------------------
# `work` reports its loop's CPU time (user + kernel: the probes run in the calling
# thread, so their cost is in it; time waiting for a CPU while otel-run builds and
# exports spans on a busy machine is not). Interleaved rounds.
log "CPU per call: $RUNS interleaved rounds of $CALLS calls"
CPU_TSV="$RESULTS_DIR/cpu.tsv"
printf 'command\tns_cpu_per_call\n' > "$CPU_TSV"
cpu_of() { grep -o '[0-9.]* ns CPU per call' | cut -d' ' -f1; }
for ((r = 0; r < RUNS; r++)); do
  printf 'bare\t%s\n' "$(WORK_TIMING=1 "$WORK" "$CALLS" 2>&1 >/dev/null | cpu_of)" >> "$CPU_TSV"
  printf 'bpftrace\t%s\n' "$(WORK_TIMING=1 bpftrace -e "$BPFTRACE_PROG" -c "$WORK $CALLS" 2>&1 | cpu_of)" >> "$CPU_TSV"
  printf 'otel-run\t%s\n' "$(WORK_TIMING=1 "$OTEL_RUN_BIN" "${OTEL_FLAGS[@]}" -- "$WORK" "$CALLS" 2>&1 >/dev/null | cpu_of)" >> "$CPU_TSV"
done

# --- lost calls at 100 000 calls/s ----------------------------------------------------
RATE=100000
PACED=$((RATE * 3))
log "otel-run at $RATE calls/s for 3 s"
# A queue that holds a few batches of this rate: the default (2048 spans, 5 s
# schedule) is sized for application spans and would drop most of these.
"$OTEL_RUN_BIN" -v "${OTEL_FLAGS[@]}" --bsp-max-queue-size 65536 --bsp-schedule-delay 100 \
  -- "$WORK" "$PACED" 0 "$RATE" \
  >/dev/null 2>"$RESULTS_DIR/paced.stderr" || die "paced run failed: $(cat "$RESULTS_DIR/paced.stderr")"

python3 - "$RESULTS_DIR" "$CALLS" "$PACED" "$LOAD1" <<'PY'
import json, os, re, statistics, sys

results, calls, paced, load_before = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
hf = {r["command"]: r for r in json.load(open(os.path.join(results, "hyperfine.json")))["results"]}

def per_call_ns(tool):
    # The slope between 1 call and N calls: start-up and attach costs cancel out.
    return (hf[f"{tool} {calls}"]["median"] - hf[f"{tool} 1"]["median"]) / (calls - 1) * 1e9

bare, bpf, otel = per_call_ns("bare"), per_call_ns("bpftrace"), per_call_ns("otel-run")
cpu = {}
for line in open(os.path.join(results, "cpu.tsv")).read().splitlines()[1:]:
    name, value = line.split("\t")
    cpu.setdefault(name, []).append(float(value))
cpu = {name: statistics.median(values) for name, values in cpu.items()}
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
    f"- host: {os.cpu_count()} CPUs; load average (1 min) {load_before} before, {os.getloadavg()[0]:.2f} after",
    f"- {calls} calls of `work()`; CPU: the program's own CPU time per call (median of the rounds);",
    f"  wall: the slope of hyperfine's median wall times between 1 and {calls} calls, whole run\n",
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
print("\n" + text)
open(os.path.join(results, "summary.md"), "w").write(text)
PY
log "results in $RESULTS_DIR (hyperfine.json, hyperfine.md, cpu.tsv, paced.stderr, summary.md)"
