#!/usr/bin/env bash
# Builds the OpenTelemetry Collector distribution otelcol-rtc (otelcol-rtc/, with
# otel_rtc's native rate processor) and Jaeger (scripts/jaeger/, Jaeger v2 from its Go
# module) into build/otelcol/. Both come from the Go module proxy, pinned by the
# go.mod/go.sum next to them. Skipped when their sources did not change; the first build
# takes several minutes (downloads and compiles the collector and Jaeger).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/otelcol
mkdir -p "$out"
# Go's default install location, for shells whose PATH lacks it.
export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null 2>&1; then
  echo "go not found: otelcol-rtc and Jaeger need Go (>= 1.26)" >&2
  exit 1
fi
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

build() {  # name, module dir, package, stamp sources...
  local name=$1 dir=$2 pkg=$3
  shift 3
  local want
  want=$( (go version; find "$@" -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) \
           ! -name '*_test.go' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)
  if [ -x "$out/$name" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "==> building $name (first build: several minutes)"
  local t0=$SECONDS
  (cd "$dir" && nice -n 10 go build -trimpath -o "$OLDPWD/$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "$want" > "$out/$name.stamp"
  echo "==> $name built in $((SECONDS - t0)) s"
}

build otelcol-rtc otelcol-rtc . otelcol-rtc
build jaeger scripts/jaeger github.com/jaegertracing/jaeger/cmd/jaeger scripts/jaeger
