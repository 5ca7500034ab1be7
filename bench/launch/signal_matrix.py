"""How many times the command gets a signal, per way of sending it.

    python3 bench/launch/signal_matrix.py [OTEL_RUN_BINARY] [ROUNDS]

Runs `otel-run COUNTER` (tests/fixtures/signal_counter.c, built with gcc) and
sends SIGTERM or SIGINT to otel-run alone, to its process group, or through
GNU `timeout` (which signals the process and then its group); the counter
prints how many it got. Prints a table: in how many rounds the command got the
signal exactly once, and every distinct outcome seen.
"""
import os
import signal
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target/release/otel-run")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
env = dict(os.environ, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
           OTEL_LOGS_EXPORTER="none")
counter = os.path.join(tempfile.mkdtemp(), "signal-counter")
subprocess.run(["gcc", "-O2", "-o", counter,
                os.path.join(root, "tests/fixtures/signal_counter.c")], check=True)


def once(how, name):
    if how == "timeout":
        argv = ["timeout", "-s", name, "1", binary, counter]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    else:
        # Its own group, so that a signal to the group reaches no one else.
        child = subprocess.Popen([binary, counter], stdout=subprocess.PIPE, env=env,
                                 text=True, process_group=0)
    child.stdout.readline()
    number = getattr(signal, "SIG" + name)
    if how == "otel-run":
        os.kill(child.pid, number)
    elif how == "its group":
        os.killpg(child.pid, number)
    line = child.stdout.readline().strip()
    status = child.wait()
    return line or f"no count (status {status})"


print(f"binary: {binary}\nload average: {' '.join(open('/proc/loadavg').read().split()[:3])}\n")
print("| sent to | signal | exactly once | outcomes |\n|---|---|---:|---|")
for how in ["otel-run", "its group", "timeout"]:
    for name in ["TERM", "INT"]:
        seen = [once(how, name) for _ in range(rounds)]
        good = sum(f"{name}=1 " in s for s in seen)
        print(f"| {how} | SIG{name} | {good}/{rounds} | {'; '.join(sorted(set(seen)))} |",
              flush=True)
