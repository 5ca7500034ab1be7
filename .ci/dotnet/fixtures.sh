#!/usr/bin/env bash
# Prepares (once) what otel-run's .NET integration tests run with, and prints
# where it is:
#
#   - a real .NET Core 3.1 runtime: PyPI's dotnetcore2, in a venv made by
#     `.ci/python/venv.sh dotnet` (pinned in .ci/python/dotnet.txt);
#   - mcs, the C# compiler (Debian's mono-mcs, installed with apt-get when
#     missing and run as root), whose IL that runtime runs;
#   - the fixtures of tests/fixtures/dotnet built with mcs and gcc:
#       dotnet                  the runtime's `dotnet` host (a symlink)
#       app/app.dll             the test application, with app.runtimeconfig.json
#       app/app                 a stand-in apphost for it (StandInAppHost.c)
#       app/UserHook.dll        an application's own startup hook
#       home/                   a STAND-IN OpenTelemetry .NET automatic
#                               instrumentation home, official file names:
#         RID/OpenTelemetry.AutoInstrumentation.Native.so      (StandInProfiler.c)
#         net/OpenTelemetry.AutoInstrumentation.StartupHook.dll (StandInStartupHook.cs)
#       sdk-root/dotnet         the same runtime with a STAND-IN SDK CLI in
#                               sdk-root/sdk/3.1.999/dotnet.dll (StandInSdk.cs)
#
#   dir : ${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}/dotnet-<sha256 of the sources>[:16]
#
# The real automatic instrumentation and SDK cannot be obtained where the tests
# run; see docs/guide/runtimes.md for what the stand-ins do and do not show.
# Idempotent: a complete directory (with its marker) is only printed. The LAST
# line on stdout is the directory (OTEL_RUN_TEST_DOTNET); diagnostics go to stderr.
set -euo pipefail

log() { printf 'dotnet/fixtures.sh: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
src="$repo/tests/fixtures/dotnet"

python="$(bash "$repo/.ci/python/venv.sh" dotnet | tail -n 1)"
runtime="$("$python" -c 'import dotnetcore2, os; print(os.path.join(os.path.dirname(dotnetcore2.__file__), "bin"))')"
[[ -x "$runtime/dotnet" ]] || { log "no dotnet host in $runtime"; exit 1; }

if ! command -v mcs >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing mono-mcs"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mono-mcs >&2
    else
        log "error: no mcs; install Debian's mono-mcs and re-run"
        exit 1
    fi
fi

case "$(uname -m)" in
    aarch64) arch=arm64 ;;
    *) arch=x64 ;;
esac
if compgen -G '/lib/ld-musl-*' >/dev/null; then rid="linux-musl-$arch"; else rid="linux-$arch"; fi

hash="$(cat "$src"/* "${BASH_SOURCE[0]}" <(printf '%s %s' "$runtime" "$rid") | sha256sum | cut -c1-16)"
cache="${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
out="$cache/dotnet-$hash"
marker="$out/.otel-run-complete"
if [[ -f "$marker" ]]; then
    printf '%s\n' "$out"
    exit 0
fi

exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if [[ -f "$marker" ]]; then
    printf '%s\n' "$out"
    exit 0
fi
rm -rf "$out"
mkdir -p "$out/app" "$out/home/$rid" "$out/home/net" "$out/sdk-root/sdk/3.1.999"

runtimeconfig='{"runtimeOptions":{"tfm":"netcoreapp3.1","framework":{"name":"Microsoft.NETCore.App","version":"3.1.0"}}}'
ln -s "$runtime/dotnet" "$out/dotnet"
mcs -nologo -out:"$out/app/app.dll" "$src/Program.cs" >&2
printf '%s\n' "$runtimeconfig" > "$out/app/app.runtimeconfig.json"
gcc -O2 -Wall -Wextra -DDOTNET_ROOT_DEFAULT="\"$runtime\"" -o "$out/app/app" "$src/StandInAppHost.c" -ldl >&2
mcs -nologo -target:library -out:"$out/app/UserHook.dll" "$src/UserStartupHook.cs" >&2

gcc -O2 -Wall -Wextra -shared -fPIC -o "$out/home/$rid/OpenTelemetry.AutoInstrumentation.Native.so" \
    "$src/StandInProfiler.c" >&2
mcs -nologo -target:library -out:"$out/home/net/OpenTelemetry.AutoInstrumentation.StartupHook.dll" \
    "$src/StandInStartupHook.cs" >&2

# The host resolves itself through /proc/self/exe and looks for SDKs beside
# itself: a copy, with the runtime's own host/ and shared/ linked in.
cp "$runtime/dotnet" "$out/sdk-root/dotnet"
ln -s "$runtime/host" "$out/sdk-root/host"
ln -s "$runtime/shared" "$out/sdk-root/shared"
mcs -nologo -out:"$out/sdk-root/sdk/3.1.999/dotnet.dll" "$src/StandInSdk.cs" >&2
printf '%s\n' "$runtimeconfig" > "$out/sdk-root/sdk/3.1.999/dotnet.runtimeconfig.json"

DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 "$out/dotnet" "$out/app/app.dll" >&2 || {
    log "the runtime does not run the test application"
    exit 1
}
touch "$marker"
log "runtime: $runtime/dotnet ($("$out/dotnet" --list-runtimes 2>/dev/null | head -n 1))"
log "stand-in home: $out/home"
log "stand-in SDK: $out/sdk-root/dotnet"
printf '%s\n' "$out"
