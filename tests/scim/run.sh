#!/usr/bin/env bash
# The SCIM conformance run (rule ID-14, issue 17): installs the pinned tools of
# tests/scim/requirements.txt and the Python client package proto/clients/python into a virtualenv,
# starts a fresh `orgplane all` on free gRPC and HTTP ports with SQLite
# in a temporary directory, and runs tests/scim/conformance.py: scim2-tester's check_server()
# (fails on any ERROR or CRITICAL result) and scim-sanity's probe (fails on a FAIL or ERROR it
# does not list as a documented disagreement).
#
# Usage: tests/scim/run.sh          (builds the binary with cargo when ORGPLANE_BIN is unset)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${ORGPLANE_SCIM_VENV:-${TMPDIR:-/tmp}/orgplane-scim-venv}"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# The tools, and the Orgplane client package (proto/clients/python) to set the server up with.
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/scim/requirements.txt" \
  "$root/proto/clients/python"

bin="${ORGPLANE_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet -p orgplane)
  bin="$root/target/debug/orgplane"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export ORGPLANE_ADDR="127.0.0.1:$(free_port)"
export ORGPLANE_HTTP_ADDR="127.0.0.1:$(free_port)"
export ORGPLANE_MAIL_DIR="$work/data/mail"
(cd "$work" && ORGPLANE_LISTEN="$ORGPLANE_ADDR" ORGPLANE_HTTP_LISTEN="$ORGPLANE_HTTP_ADDR" \
  ORGPLANE_DATA_DIR="$work/data" ORGPLANE_MAIL_URL="file://$ORGPLANE_MAIL_DIR" RUST_LOG=warn \
  exec "$bin" all >"$work/orgplane.log" 2>&1) &
pid=$!

status=0
(cd "$work" && "$venv/bin/python" "$root/tests/scim/conformance.py") || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- orgplane log (last 50 lines)"
  tail -n 50 "$work/orgplane.log"
fi
exit "$status"
