#!/usr/bin/env bash
# The Python client test: generates a Python client from proto/ with grpcio-tools (installed
# into a virtualenv from PyPI), starts a fresh `orgplane` on a temporary directory, and runs
# stories 1 to 3 against it with tests/python/stories.py, including reading the structured
# error details (google.rpc.Status → ErrorInfo, BadRequest) of refused calls.
#
# Usage: tests/python/run.sh            (builds the binary with cargo when ORGPLANE_BIN is unset)
#        ORGPLANE_ADDR=127.0.0.1:50051 ORGPLANE_MAIL_DIR=./data/mail tests/python/run.sh
#                                        (against an already running orgplane; its product
#                                         service account is not needed)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${ORGPLANE_PY_VENV:-${TMPDIR:-/tmp}/orgplane-py-venv}"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check grpcio grpcio-tools grpcio-status protobuf pyotp

# Generate the client: messages (_pb2) and stubs (_pb2_grpc) for every Orgplane proto. The
# google/protobuf well-known types come with grpcio-tools; google.rpc with grpcio-status.
mkdir -p "$work/gen"
(cd "$root/proto" && "$venv/bin/python" -m grpc_tools.protoc -I . \
  --python_out="$work/gen" --grpc_python_out="$work/gen" \
  $(find orgplane -name '*.proto' | sort))

if [ -z "${ORGPLANE_ADDR:-}" ]; then
  bin="${ORGPLANE_BIN:-}"
  if [ -z "$bin" ]; then
    (cd "$root" && cargo build --quiet -p orgplane)
    bin="$root/target/debug/orgplane"
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export ORGPLANE_ADDR="127.0.0.1:$port"
  export ORGPLANE_MAIL_DIR="$work/data/mail"
  (cd "$work" && ORGPLANE_LISTEN="$ORGPLANE_ADDR" ORGPLANE_HTTP_LISTEN=off ORGPLANE_DATA_DIR="$work/data" RUST_LOG=warn \
    exec "$bin" all >"$work/orgplane.log" 2>&1) &
  pid=$!
fi

PYTHONPATH="$work/gen" "$venv/bin/python" "$root/tests/python/stories.py"
