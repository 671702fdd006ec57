#!/usr/bin/env bash
# The Go client test. Checks that the committed Go client (proto/clients/go, module
# orgplane.dev/clients/go) is what proto/ generates, unit-tests its orgplaneerr helper, builds
# the story in tests/clients/go/story with the Go toolchain offline, starts a fresh
# `orgplane all` and runs the story against it.
#
# Everything Go comes from Debian bookworm's packages (installed here when missing): Go 1.19,
# protoc-gen-go 1.28.1, protoc-gen-go-grpc (grpc 1.33.3), and the library sources under
# /usr/share/gocode. The Go module proxy is not used: the build runs in GOPATH mode
# (GO111MODULE=off) with GOPATH=<tmp>/gopath:/usr/share/gocode, where <tmp>/gopath/src/
# orgplane.dev/clients/go is a symlink to proto/clients/go.
#
# Usage: tests/clients/go.sh           (ORGPLANE_BIN=path/to/orgplane, or cargo builds one)
#        ORGPLANE_ADDR=127.0.0.1:50051 ORGPLANE_MAIL_DIR=./data/mail tests/clients/go.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
client="$root/proto/clients/go"
# shellcheck source=tests/clients/lib.sh
source "$root/tests/clients/lib.sh"

# 1. Debian's Go toolchain, plugins and libraries, installed only when missing.
# golang-github-golang-protobuf-1-5-dev (github.com/golang/protobuf on APIv2) replaces the
# 1.3 one that golang-google-grpc-dev would otherwise pull in; protoc-gen-go is the APIv2 one.
packages=(golang-go protoc-gen-go protoc-gen-go-grpc golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev golang-google-grpc-dev golang-google-genproto-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "go client: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The committed generated code is fresh.
gen="$ORGPLANE_WORK/gen"
bash "$client/generate.sh" "$gen"
if ! diff -rq "$client/orgplane" "$gen/orgplane" >&2; then
  # The readable part of the difference (the raw descriptor bytes left out).
  diff -ru "$client/orgplane" "$gen/orgplane" | grep -vE '^[-+ ]\s+0x' | head -60 >&2 || true
  echo "go client: proto/clients/go is stale; run proto/clients/go/generate.sh and commit" >&2
  exit 1
fi
echo "go client: generated code is fresh"

# 3. Offline build: GOPATH mode over Debian's /usr/share/gocode.
export GO111MODULE=off GOFLAGS= GOPROXY=off GOPATH="$ORGPLANE_WORK/gopath:/usr/share/gocode"
mkdir -p "$ORGPLANE_WORK/gopath/src/orgplane.dev/clients"
ln -s "$client" "$ORGPLANE_WORK/gopath/src/orgplane.dev/clients/go"
mapfile -t go_pkgs < <(cd "$client" && find . -name '*.go' -printf '%h\n' | sort -u |
  sed 's|^\.|orgplane.dev/clients/go|')
unformatted="$(gofmt -l "$client/orgplaneerr" "$root/tests/clients/go")"
if [ -n "$unformatted" ]; then echo "go client: not gofmt-ed: $unformatted" >&2; exit 1; fi
go vet "${go_pkgs[@]}"
(cd "$root/tests/clients/go/story" && go vet . && go build -o "$ORGPLANE_WORK/story" .)
go test "${go_pkgs[@]}"

# 4. The story against a fresh server.
start_orgplane
"$ORGPLANE_WORK/story"
