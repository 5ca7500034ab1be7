#!/usr/bin/env bash
# Cost per probed call of a Go function, next to the C figure and bpftrace.
#
# Usage: bench/uprobe-go/run.sh [-r|--rounds N] [-n|--calls N] [-h|--help]
# See bench/uprobe-go/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/uprobe-go/run.sh [OPTIONS]

Interleaved rounds of seven commands, each calling one function N times back to
back and reporting its loop's CPU time per call (user + kernel):
  go bare          examples/uprobe-go `bench N` (N calls of main.work)
  go bpftrace      bpftrace -e 'uprobe:uprobe-go:"main.work" { @ = count(); }' (entry only)
  go otel-run      otel-run --uprobe :main.work (entry and each ret, per goroutine)
  c bare           examples/uprobe-c `work N`
  c bpftrace       bpftrace on work's entry and return (uprobe + uretprobe)
  c otel-run       otel-run --uprobe :work
  c bpftrace leaf  bpftrace on the entry of work's callee leaf, whose first
                   instruction (lea) the kernel steps out of line, as it does
                   main.work's (a C function's push is emulated instead)
The probe cost of each is its CPU per call minus its bare program's.

Options:
  -r, --rounds N   interleaved rounds            (env BENCH_ROUNDS, default 7)
  -n, --calls N    calls per run                 (env BENCH_CALLS,  default 300000)
  -h, --help       show this help

Environment:
  OTEL_RUN         otel-run binary to measure (default: the repository's release build)

Needs root (eBPF). Results go to bench/uprobe-go/results/ (gitignored).
USAGE
}

ROUNDS="${BENCH_ROUNDS:-7}"
CALLS="${BENCH_CALLS:-300000}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r|--rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    -n|--calls)  CALLS="${2:?--calls needs a value}"; shift 2 ;;
    -h|--help)   usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 3 ]] || { echo "run.sh: --rounds must be >= 3" >&2; exit 2; }
[[ "$CALLS" =~ ^[0-9]+$ && "$CALLS" -ge 1000 ]] || { echo "run.sh: --calls must be >= 1000" >&2; exit 2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"

[[ "$(id -u)" -eq 0 ]] || die "eBPF probes need root: run with sudo"

missing=()
command -v bpftrace >/dev/null || missing+=(bpftrace)
command -v gcc >/dev/null || missing+=(gcc)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
if ! mountpoint -q /sys/kernel/tracing; then
  log "mounting tracefs for bpftrace"
  mount -t tracefs nodev /sys/kernel/tracing
fi

find_otel_run

mkdir -p "$RESULTS_DIR/build"
GO_BIN="$(bash "$REPO_ROOT/.ci/go/uprobe-example.sh" | tail -n 1)"
C_BIN="$RESULTS_DIR/build/work"
gcc -O2 -g -o "$C_BIN" "$REPO_ROOT/examples/uprobe-c/work.c"

while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)

OTEL_FLAGS=(--traces-exporter console --console-output /dev/null
            --metrics-exporter none --logs-exporter none)
GO_BPFTRACE="uprobe:$GO_BIN:\"main.work\" { @enter = count(); }"
C_BPFTRACE="uprobe:$C_BIN:work { @enter = count(); } uretprobe:$C_BIN:work { @return = count(); }"
C_LEAF_BPFTRACE="uprobe:$C_BIN:leaf { @enter = count(); }"

# Sanity: the probes really attach (a run that silently ran unprobed would look free).
check="$("$OTEL_RUN_BIN" -v "${OTEL_FLAGS[@]}" --uprobe :main.work -- "$GO_BIN" bench 1000 2>&1 >/dev/null)"
grep -q "1000 probed calls recorded" <<<"$check" || die "otel-run did not record the Go calls: $check"
bpftrace -e "$GO_BPFTRACE" -c "$GO_BIN bench 1000" 2>&1 | grep -q "@enter: 1000" \
  || die "bpftrace did not count the Go calls"

cpu_of() { grep -o '[0-9.]* ns CPU per call' | cut -d' ' -f1; }
one() {
  # one NAME COMMAND...: a row of the results, from the command's stderr.
  local name=$1; shift
  local ns
  ns="$(WORK_TIMING=1 "$@" 2>&1 >/dev/null | cpu_of)"
  [[ -n "$ns" ]] || die "$name reported no CPU time"
  printf '%s\t%s\n' "$name" "$ns" >> "$TSV"
}

TSV="$RESULTS_DIR/cpu.tsv"
printf 'command\tns_cpu_per_call\n' > "$TSV"
LOAD_BEFORE="$(load_average)"
log "load average before: $LOAD_BEFORE on $(nproc) CPUs; $ROUNDS rounds of $CALLS calls"
row() {  # row NAME ROUND: one run of the row's command
  case $1 in
    "go bare")        one "$1" "$GO_BIN" bench "$CALLS" ;;
    "go bpftrace")    one "$1" bpftrace -e "$GO_BPFTRACE" -c "$GO_BIN bench $CALLS" ;;
    "go otel-run")    one "$1" "$OTEL_RUN_BIN" "${OTEL_FLAGS[@]}" --uprobe :main.work -- "$GO_BIN" bench "$CALLS" ;;
    "c bare")         one "$1" "$C_BIN" "$CALLS" ;;
    "c bpftrace")     one "$1" bpftrace -e "$C_BPFTRACE" -c "$C_BIN $CALLS" ;;
    "c otel-run")     one "$1" "$OTEL_RUN_BIN" "${OTEL_FLAGS[@]}" --uprobe :work -- "$C_BIN" "$CALLS" ;;
    "c bpftrace leaf") one "$1" bpftrace -e "$C_LEAF_BPFTRACE" -c "$C_BIN $CALLS" ;;
  esac
}
interleave_rounds "$ROUNDS" row "go bare" "go bpftrace" "go otel-run" "c bare" "c bpftrace" "c otel-run" "c bpftrace leaf"
LOAD_AFTER="$(load_average)"

python3 - "$RESULTS_DIR" "$CALLS" "$ROUNDS" "$LOAD_BEFORE" "$LOAD_AFTER" "$(otel_run_identity)" <<'PY'
import os, statistics, sys

results, calls, rounds, before, after, identity = sys.argv[1:7]
rows = {}
for line in open(os.path.join(results, "cpu.tsv")).read().splitlines()[1:]:
    name, value = line.split("\t")
    rows.setdefault(name, []).append(float(value))
med = {k: statistics.median(v) for k, v in rows.items()}
def cost(name):
    bare = med[name.split()[0] + " bare"]
    return med[name] - bare
out = [
    "# Go uprobe benchmark summary\n",
    f"- otel-run: `{identity}`",
    f"- host: {os.cpu_count()} CPUs; load average (1, 5, 15 min) {before} before, {after} after",
    f"- {rounds} interleaved rounds of {calls} calls; CPU per call is the loop's own (user + kernel)\n",
    "| command | CPU per call, median (ns) | min–max (ns) | probe cost over bare (ns) |",
    "|---|---:|---:|---:|",
]
for name in ("go bare", "go bpftrace", "go otel-run", "c bare", "c bpftrace", "c otel-run", "c bpftrace leaf"):
    v = rows[name]
    extra = "—" if name.endswith("bare") else f"{cost(name):.0f}"
    out.append(f"| {name} | {med[name]:.0f} | {min(v):.0f}–{max(v):.0f} | {extra} |")
out += [
    "",
    f"- Go otel-run (entry + ret uprobes, per-goroutine) / Go bpftrace (entry only): {cost('go otel-run') / cost('go bpftrace'):.2f}x",
    f"- Go otel-run / C otel-run (uprobe + uretprobe, per-thread): {cost('go otel-run') / cost('c otel-run'):.2f}x",
    f"- C otel-run / C bpftrace (uprobe + uretprobe): {cost('c otel-run') / cost('c bpftrace'):.2f}x",
    f"- one probe on an instruction stepped out of line (C leaf's lea, bpftrace): {cost('c bpftrace leaf'):.0f} ns;"
    f" Go otel-run pays two (entry, ret): {cost('go otel-run') / cost('c bpftrace leaf'):.2f}x that",
]
text = "\n".join(out) + "\n"
print("\n" + text)
open(os.path.join(results, "summary.md"), "w").write(text)
PY
log "results in $RESULTS_DIR (cpu.tsv, summary.md)"
