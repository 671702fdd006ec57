#!/usr/bin/env bash
# Regenerates the Go client (orgplane/**/*.pb.go) from the contracts in proto/ with buf and the
# local plugins named in buf.gen.yaml. The generated code is committed: Go consumers cannot run
# generators. tests/clients/go.sh regenerates into a temporary directory and fails on any
# difference, so run this after every change to proto/orgplane and commit the result.
#
# Usage: proto/clients/go/generate.sh [OUT_DIR]   (default: this directory)
#
# Needs: node/npx (buf comes from npm as @bufbuild/buf), and the plugins at the versions the
# committed code was made with, from Debian bookworm (as root: apt-get install
# protoc-gen-go protoc-gen-go-grpc):
#   protoc-gen-go       v1.28.1  (google.golang.org/protobuf, APIv2)
#   protoc-gen-go-grpc  1.0      (built from google.golang.org/grpc 1.33.3)
# A different plugin version makes different code, which the freshness check would report.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)"
buf_version=1.75.0
want_go="protoc-gen-go v1.28.1"
want_grpc="protoc-gen-go-grpc 1.0"

for plugin in protoc-gen-go protoc-gen-go-grpc; do
  command -v "$plugin" >/dev/null || { echo "generate.sh: $plugin is not on PATH (apt-get install $plugin)" >&2; exit 1; }
done
got_go="$(protoc-gen-go --version)"
got_grpc="$(protoc-gen-go-grpc --version)"
if [ "$got_go" != "$want_go" ] || [ "$got_grpc" != "$want_grpc" ]; then
  echo "generate.sh: plugin versions are '$got_go' and '$got_grpc'; the committed code is made" >&2
  echo "with '$want_go' and '$want_grpc' (Debian bookworm's protoc-gen-go and protoc-gen-go-grpc)" >&2
  exit 1
fi

buf="${ORGPLANE_BUF:-}"
if [ -z "$buf" ]; then
  buf="$(cd "${TMPDIR:-/tmp}" && npx --yes -p "@bufbuild/buf@$buf_version" -c 'command -v buf')"
fi

# Files of removed protos must go too: start the generated tree afresh.
rm -rf "$out/orgplane"
cd "$here"
"$buf" generate --template buf.gen.yaml --output "$out"
