#!/usr/bin/env bash
# Installs otel-run: the system packages it needs (with apt-get, when root), then
# builds the binary and installs it into $PREFIX/bin (default /usr/local as root,
# ~/.local otherwise). Re-running it is harmless: it rebuilds and replaces the binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

say() { printf 'install.sh: %s\n' "$*" >&2; }

if [[ $(id -u) -eq 0 ]]; then
  prefix=${PREFIX:-/usr/local}
else
  prefix=${PREFIX:-$HOME/.local}
fi

# TLS roots for exporting to https:// endpoints, and a C compiler for the build.
packages=()
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || packages+=(ca-certificates)
command -v cc >/dev/null || packages+=(gcc)
# clang and libbpf's headers compile the eBPF probes of `--uprobe`; without them
# otel-run builds and runs, with `--uprobe` unavailable.
probe_packages=()
command -v clang >/dev/null || probe_packages+=(clang)
[[ -f /usr/include/bpf/bpf_helpers.h ]] || probe_packages+=(libbpf-dev)
if ((${#probe_packages[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    packages+=("${probe_packages[@]}")
  else
    say "note: without ${probe_packages[*]} (install them as root), \`--uprobe\` is unavailable"
  fi
fi
if ((${#packages[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${packages[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
  else
    say "please install: ${packages[*]}"
    exit 1
  fi
fi

if ! command -v cargo >/dev/null; then
  [[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null || { say "cargo not found: install Rust (https://rustup.rs) and re-run"; exit 1; }

say "building otel-run (release)"
# Statically linked (see .cargo/config.toml); a machine without the C
# library's static archive (libc.a) gets the usual dynamic binary.
if ! cargo build-installed >&2; then
  say "note: the static link failed; building the dynamically linked binary (it starts slower)"
  cargo build --release --locked >&2
fi
mkdir -p "$prefix/bin"
install -m 0755 target/release/otel-run "$prefix/bin/otel-run"
say "installed $("$prefix/bin/otel-run" --version) to $prefix/bin/otel-run"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) say "note: $prefix/bin is not on PATH; add it, or run $prefix/bin/otel-run" ;;
esac
