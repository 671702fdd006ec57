#!/usr/bin/env bash
# The README's TLS block, tested: extracts the block between `<!-- tls:begin` and `<!-- tls:end -->`
# in README.md and runs it in a temporary directory with `set -euo pipefail`: the openssl lines
# make the CA and certificate, `cargo run … &` starts the built binary over TLS (on free ports),
# and every `buf curl`, `curl` and `orgplane health` line must succeed against it. Also checks
# that a plaintext client is refused by the same server.
#
# Usage: tests/readme/tls.sh   (builds the binary with cargo when ORGPLANE_BIN is unset)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
cleanup() {
  if [ -f "$work/pid" ]; then kill -TERM "$(cat "$work/pid")" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

awk '/^<!-- tls:begin/{on=1; next} /^<!-- tls:end/{on=0} on && !/^```/' "$root/README.md" >"$work/block.sh"
grep -q '^openssl ' "$work/block.sh" || { echo "the README TLS block has no openssl lines" >&2; exit 1; }
expected=$(grep -c '^buf curl ' "$work/block.sh" || true)
[ "$expected" -ge 2 ] || { echo "the README TLS block has only $expected buf curl lines" >&2; exit 1; }

bin="${ORGPLANE_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet -p orgplane)
  bin="$root/target/debug/orgplane"
fi
buf_bin=$(npx --yes -p @bufbuild/buf@1.75.0 -c 'command -v buf' 2>/dev/null | tail -1)
[ -x "$buf_bin" ] || { echo "cannot install @bufbuild/buf@1.75.0 with npx" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
http_port=$(free_port)
metrics_port=$(free_port)

# The block as written, but: `cargo run … --` is the built binary, the server it starts in the
# background is waited for (and stopped at the end), and the ports are free ones.
{
  echo 'set -euo pipefail'
  echo "export ORGPLANE_LISTEN=127.0.0.1:$port ORGPLANE_HTTP_LISTEN=127.0.0.1:$http_port ORGPLANE_DATA_DIR='$work/data' RUST_LOG=warn"
  echo "buf() { echo \"buf \$*\" >>'$work/calls'; \"$buf_bin\" \"\$@\"; }"
  sed -e "s#^cargo run --release -p orgplane -- #'$bin' #" \
      -e "s/:50051/:$port/g" -e "s/:50052/:$http_port/g" -e "s/:9090/:$metrics_port/g" "$work/block.sh" |
    awk -v work="$work" '{
      if ($0 ~ /&[[:space:]]*$/) {
        sub(/&[[:space:]]*$/, "");
        print $0 " > \"" work "/orgplane.log\" 2>&1 &";
        print "echo $! > \"" work "/pid\"";
        print "for _ in $(seq 150); do grep -q \"gRPC over TLS\" \"" work "/orgplane.log\" && break; sleep 0.2; done";
      } else print
    }'
} >"$work/run.sh"
(cd "$work" && bash "$work/run.sh") | tee "$work/out" || {
  echo "the README TLS block failed at the step above; orgplane's log:" >&2
  cat "$work/orgplane.log" >&2 || true
  exit 1
}
ran=$(grep -c '^buf curl ' "$work/calls" || true)
[ "$ran" -eq "$expected" ] || { echo "ran $ran of $expected buf curl lines" >&2; exit 1; }
grep -q '"status": "SERVING"' "$work/out" || { echo "the health check over TLS did not answer SERVING" >&2; exit 1; }
if "$buf_bin" curl --protocol grpc --http2-prior-knowledge -d '{}' \
  "http://127.0.0.1:$port/grpc.health.v1.Health/Check" >/dev/null 2>&1; then
  echo "a plaintext client reached the TLS server" >&2
  exit 1
fi
echo "README TLS block: $ran buf curl lines, curl and orgplane health over TLS succeeded; plaintext refused"
