#!/usr/bin/env bash
# Fetch the OpenTelemetry Java agent (io.opentelemetry.javaagent:opentelemetry-javaagent)
# from Maven Central with Maven, for otel-run's Java integration tests.
# Idempotent: if the jar is already in the cache, it only prints its path
# (no Maven, no network).
#
# stdout: exactly one line, the absolute path of the agent jar:
#   $OTEL_RUN_CACHE/javaagent-<VERSION>/opentelemetry-javaagent.jar
# stderr: progress and diagnostics.
#
# Env:
#   OTEL_RUN_CACHE          cache root (default: $HOME/.cache/otel-run-ci)
#   OTEL_JAVAAGENT_VERSION  agent version (default: the pinned one below);
#                           "latest" asks Maven Central for its newest release
#                           (the RELEASE of the artifact's maven-metadata.xml)
#                           and always runs Maven.
#
# Integrity:
#   * Maven runs with --strict-checksums (-C): the resolver checks the jar
#     against the .sha1 Central publishes next to it and fails on a mismatch,
#     or if no checksum is published at all (Maven's default is only to warn).
#   * Then the .jar.sha256 that Central publishes is fetched too (as artifact
#     type jar.sha256; without -C since Central has no checksum of a checksum)
#     and compared with sha256sum. This also covers a jar that was already in
#     the local Maven repository, where Maven does not check it again.
#
# A cold run (empty ~/.m2: Maven plugin + 26 MB jar) took 37 s here; later runs
# return at once.
set -euo pipefail

# Newest release on Maven Central when this was written.
PINNED_VERSION=2.33.1
# Pin the plugin: without a POM, Maven would otherwise look up its newest
# version on every cold run.
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
GA=io.opentelemetry.javaagent:opentelemetry-javaagent

# Keep stdout clean for the final path: everything else goes to stderr.
exec 3>&1 1>&2

die() { echo "agent.sh: error: $*" >&2; exit 1; }
log() { echo "agent.sh: $*" >&2; }

version=${OTEL_JAVAAGENT_VERSION:-$PINNED_VERSION}
[[ $version == latest || $version =~ ^[0-9]+(\.[0-9]+)*([.-][A-Za-z0-9.-]+)?$ ]] \
  || die "bad OTEL_JAVAAGENT_VERSION: $version"

cache_root=${OTEL_RUN_CACHE:-${HOME:?HOME is not set and OTEL_RUN_CACHE is empty}/.cache/otel-run-ci}
mkdir -p "$cache_root"
cache_root=$(cd "$cache_root" && pwd -P)

jar_path() { echo "$cache_root/javaagent-$1/opentelemetry-javaagent.jar"; }

if [[ $version != latest && -s $(jar_path "$version") ]]; then
  jar_path "$version" >&3
  exit 0
fi

command -v mvn >/dev/null 2>&1 || die "mvn not found in PATH"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found in PATH"

# Maven's own JVM honours JAVA_TOOL_OPTIONS / JDK_JAVA_OPTIONS: when this runs
# under otel-run (or with an agent in the environment), keep Maven itself
# uninstrumented and quiet.
# (Debian's Maven 3.8 prints stray ESC[0m resets even with -B -q: drop them.)
mvn_() {
  env -u JAVA_TOOL_OPTIONS -u JDK_JAVA_OPTIONS -u _JAVA_OPTIONS \
    mvn -B -q -Dstyle.color=never "$@" </dev/null 2>&1 | sed 's/\x1b\[0m//g' >&2
}

work=$(mktemp -d "$cache_root/.javaagent-tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. The jar, checksum-verified by Maven (-C).
extra=()
[[ $version == latest ]] && extra+=(-U)   # refresh maven-metadata.xml
want=$version
[[ $version == latest ]] && want=RELEASE
log "resolving $GA:$want from Maven Central (mvn -C)"
mvn_ -C "${extra[@]}" "$DEP_PLUGIN:copy" \
  -Dartifact="$GA:$want:jar" -DoutputDirectory="$work/jar" \
  -Dmdep.overWriteReleases=true \
  || die "mvn could not fetch $GA:$want"

shopt -s nullglob
got=("$work"/jar/opentelemetry-javaagent-*.jar)
shopt -u nullglob
(( ${#got[@]} == 1 )) || die "expected one jar in $work/jar, found ${#got[@]}"
name=${got[0]##*/}
version=${name#opentelemetry-javaagent-}
version=${version%.jar}
[[ -n $version ]] || die "could not read the version from $name"
log "version $version"

dest=$(jar_path "$version")
dest_dir=${dest%/*}
if [[ -s $dest ]]; then   # "latest" that we already had
  echo "$dest" >&3
  exit 0
fi

# 2. The SHA-256 Central publishes next to the jar.
if mvn_ "$DEP_PLUGIN:copy" -Dartifact="$GA:$version:jar.sha256" \
     -DoutputDirectory="$work/sum" -Dmdep.overWriteReleases=true; then
  expected=$(tr -d ' \t\r\n' <"$work/sum/opentelemetry-javaagent-$version.jar.sha256")
  expected=${expected:0:64}
  actual=$(sha256sum "${got[0]}" | cut -d' ' -f1)
  [[ $expected =~ ^[0-9a-f]{64}$ ]] || die "bad .sha256 from Maven Central: $expected"
  [[ $expected == "$actual" ]] \
    || die "SHA-256 mismatch for $name: Central says $expected, jar is $actual"
  log "SHA-256 OK ($actual)"
else
  log "warning: no .sha256 published for $version; relying on Maven's SHA-1 check (-C)"
  actual=$(sha256sum "${got[0]}" | cut -d' ' -f1)
fi

# 3. Into the cache, atomically (serialised against concurrent runs).
mkdir -p "$dest_dir"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dest_dir/.lock"
  flock 9
fi
if [[ ! -s $dest ]]; then
  cp "${got[0]}" "$dest_dir/.opentelemetry-javaagent.jar.tmp"
  echo "$actual  opentelemetry-javaagent.jar" >"$dest_dir/opentelemetry-javaagent.jar.sha256"
  mv -f "$dest_dir/.opentelemetry-javaagent.jar.tmp" "$dest"
fi
log "cached $dest"
echo "$dest" >&3
