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
