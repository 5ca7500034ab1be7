#!/usr/bin/env bash
# Cost per traced process: a shell loop of `true` with and without --trace-processes.
#
# Usage: bench/processes/run.sh [-r|--rounds N] [-n|--processes N] [-h|--help]
# See bench/processes/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/processes/run.sh [OPTIONS]

Times a shell loop that runs `/bin/true` N times (a fork, an exec and an exit each),
in interleaved rounds of three commands:
  bash -c LOOP                                             (bare)
  otel-run EXPORT -- bash -c LOOP                          (otel-run, no process spans)
  otel-run EXPORT --trace-processes -- bash -c LOOP        (a span per process)
where EXPORT is `--traces-exporter console --console-output /dev/null` with a traces
queue that holds every span. Reports the median wall and CPU time (user + system of
the command and otel-run together) of each, their spread, the cost per traced
process and the ratio traced / untraced.

Options:
  -r, --rounds N      interleaved rounds              (env BENCH_ROUNDS,    default 7)
  -n, --processes N   `true` runs per loop            (env BENCH_PROCESSES, default 10000)
  -h, --help          show this help

Environment:
  OTEL_RUN         otel-run binary to measure (default: the repository's release build,
                   built with `cargo build-installed` if missing; it needs clang at build time)

Needs root (eBPF). Results go to bench/processes/results/ (gitignored).
USAGE
}

ROUNDS="${BENCH_ROUNDS:-7}"
PROCESSES="${BENCH_PROCESSES:-10000}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r|--rounds)    ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    -n|--processes) PROCESSES="${2:?--processes needs a value}"; shift 2 ;;
    -h|--help)      usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 3 ]] || { echo "run.sh: --rounds must be >= 3" >&2; exit 2; }
[[ "$PROCESSES" =~ ^[0-9]+$ && "$PROCESSES" -ge 100 ]] || { echo "run.sh: --processes must be >= 100" >&2; exit 2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"

[[ "$(id -u)" -eq 0 ]] || die "eBPF tracepoints need root: run with sudo"
command -v python3 >/dev/null || apt_install python3
find_otel_run

while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)
unset TRACEPARENT TRACESTATE

LOOP="i=0; while [ \$i -lt $PROCESSES ]; do /bin/true; i=\$((i+1)); done"
FLAGS=(--traces-exporter console --console-output /dev/null
       --metrics-exporter none --logs-exporter none
       --bsp-max-queue-size 65536 --bsp-schedule-delay 200)

# Sanity: every process is recorded (a run that silently traced nothing would look free).
check="$("$OTEL_RUN_BIN" -v "${FLAGS[@]}" --trace-processes -- bash -c "$LOOP" 2>&1 >/dev/null)"
grep -q "^otel-run: $PROCESSES process spans recorded\|$PROCESSES process spans recorded" <<<"$check" \
  || die "otel-run did not record $PROCESSES process spans: $check"

mkdir -p "$RESULTS_DIR"
printf '%s\n' "$check" > "$RESULTS_DIR/traced.stderr"
LOAD_BEFORE="$(load_average)"
log "load average before: $LOAD_BEFORE on $(nproc) CPUs; $ROUNDS rounds of $PROCESSES processes"

python3 - "$RESULTS_DIR" "$ROUNDS" "$PROCESSES" "$LOAD_BEFORE" "$OTEL_RUN_BIN" "$(otel_run_identity)" "$LOOP" "${FLAGS[@]}" <<'PY'
import os, resource, statistics, subprocess, sys, time

results, rounds, n, load_before, binary, identity, loop = sys.argv[1:8]
rounds, n = int(rounds), int(n)
flags = sys.argv[8:]
commands = {
    "bare": ["bash", "-c", loop],
    "otel-run": [binary, *flags, "--", "bash", "-c", loop],
    "otel-run --trace-processes": [binary, *flags, "--trace-processes", "--", "bash", "-c", loop],
}
names = list(commands)
wall = {k: [] for k in names}
cpu = {k: [] for k in names}
loads = []
for r in range(rounds):
    # Interleaved, each round in a rotated order: drift in the machine's load
    # falls on every command alike.
    order = names[r % 3:] + names[:r % 3]
    for name in order:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(commands[name], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall[name].append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[name].append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    loads.append(os.getloadavg()[0])

def hooks_and_own_cpu(traced):
    """One run that stops after the loop: the tracepoint programs' own kernel time
    (bpf_stats, from otel-run's program descriptors) and otel-run's own CPU time
    (not its children's), read while it is still alive. Both barely depend on
    the machine's load, unlike the wall time of a loop of forks."""
    done = os.path.join(results, "loop.done")
    if os.path.exists(done):
        os.unlink(done)
    extra = ["--trace-processes"] if traced else []
    script = f"{loop}; : > {done}; sleep 1.5"
    child = subprocess.Popen([binary, *flags, *extra, "--", "bash", "-c", script],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(done):
        time.sleep(0.05)
    time.sleep(1.0)  # the reader's and the exporter's timers have fired
    fields = open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()
    own_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hook_ns = hook_runs = 0
    for fd in os.listdir(f"/proc/{child.pid}/fdinfo"):
        try:
            info = dict(l.split(":\t", 1) for l in open(f"/proc/{child.pid}/fdinfo/{fd}").read().splitlines() if ":\t" in l)
        except OSError:
            continue
        if "run_time_ns" in info:
            hook_ns += int(info["run_time_ns"])
            hook_runs += int(info["run_cnt"])
    child.wait()
    return own_cpu, hook_ns, hook_runs

stats_path = "/proc/sys/kernel/bpf_stats_enabled"
stats_before = open(stats_path).read().strip()
open(stats_path, "w").write("1")
try:
    own = {True: [], False: []}
    hooks = []
    for r in range(3):
        for traced in (False, True):
            cpu_s, ns, runs = hooks_and_own_cpu(traced)
            own[traced].append(cpu_s)
            if traced:
                hooks.append((ns, runs))
finally:
    open(stats_path, "w").write(stats_before)

def stats(values):
    return statistics.median(values), min(values), max(values)

lines = [
    "# process-tracing benchmark summary\n",
    f"- binary: `{identity}`",
    f"- kernel {os.uname().release}, {os.cpu_count()} CPUs; load average (1, 5, 15 min) {load_before} before,"
    f" {' '.join(open('/proc/loadavg').read().split()[:3])} after;"
    f" 1 min {min(loads):.2f}-{max(loads):.2f} during the rounds",
    f"- {rounds} interleaved rounds of a shell loop running `/bin/true` {n} times\n",
    "| command | wall median (s) | wall min-max (s) | CPU median (s) | wall per process (us) |",
    "|---|---|---|---|---|",
]
for name in names:
    m, lo, hi = stats(wall[name])
    lines.append(f"| {name} | {m:.3f} | {lo:.3f}-{hi:.3f} | {statistics.median(cpu[name]):.3f} | {m / n * 1e6:.1f} |")
base, traced = statistics.median(wall["otel-run"]), statistics.median(wall["otel-run --trace-processes"])
cbase, ctraced = statistics.median(cpu["otel-run"]), statistics.median(cpu["otel-run --trace-processes"])
# Per round, so the spread of the ratio is that of paired runs.
ratios = sorted(t / b for t, b in zip(wall["otel-run --trace-processes"], wall["otel-run"]))
lines += [
    "",
    f"- cost per traced process (fork+exec+exit), wall: {(traced - base) / n * 1e6:.1f} us"
    f" ({base / n * 1e6:.1f} -> {traced / n * 1e6:.1f} us per process)",
    f"- cost per traced process, CPU (command and otel-run): {(ctraced - cbase) / n * 1e6:.1f} us",
    f"- ratio traced / untraced, wall: {traced / base:.3f}x (per round {ratios[0]:.3f}-{ratios[-1]:.3f}x); CPU: {ctraced / cbase:.3f}x",
]
hook_ns = statistics.median(ns for ns, _ in hooks) / n
hook_runs = statistics.median(runs for _, runs in hooks) / n
own_extra = (statistics.median(own[True]) - statistics.median(own[False])) / n * 1e6
lines += [
    f"- in the kernel, the tracepoint programs per traced process: {hook_ns:.0f} ns"
    f" ({hook_runs:.1f} runs per process; bpf_stats, median of 3 runs)",
    f"- otel-run's own CPU per traced process (reading, span building, console export): {own_extra:.1f} us"
    f" (otel-run's CPU {statistics.median(own[False]):.2f} s untraced, {statistics.median(own[True]):.2f} s traced; median of 3 runs)",
]
text = "\n".join(lines) + "\n"
print("\n" + text)
open(os.path.join(results, "summary.md"), "w").write(text)
PY
log "results in $RESULTS_DIR (summary.md, traced.stderr)"
