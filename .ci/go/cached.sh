# Sourced by the scripts that build a Go peer once and cache it. They keep fd 3
# as their stdout (the binary's path) and print progress on stderr.
#
# `cached_or_lock DEST_DIR BIN`: if BIN is built, print its path on fd 3 and
# exit; otherwise hold DEST_DIR's lock (so one build runs at a time), check
# again, and put `go` on PATH with a predictable environment.
cached_or_lock() {
  local dest_dir=$1 bin=$2
  if [[ -x $bin ]]; then
    echo "$bin" >&3
    exit 0
  fi
  mkdir -p "$dest_dir"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$dest_dir/.lock"
    flock 9
    if [[ -x $bin ]]; then
      echo "$bin" >&3
      exit 0
    fi
  fi
  if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
      export PATH=/usr/local/go/bin:$PATH
    else
      echo "error: go not found in PATH nor at /usr/local/go/bin/go" >&2
      exit 1
    fi
  fi
  # No workspace from a parent directory leaks into the scratch module.
  export GOWORK=off
}
