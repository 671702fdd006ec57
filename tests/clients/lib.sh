# Sourced by the client-package tests (tests/clients/*.sh): starts a fresh `orgplane all` on
# loopback in a temporary directory and exports where it listens.
#
# After `start_orgplane`: ORGPLANE_ADDR (host:port of the gRPC listener), ORGPLANE_URL
# (http://host:port), ORGPLANE_MAIL_DIR (where the mailed .eml files land) and ORGPLANE_WORK (the
# temporary directory, removed on exit with the server). ORGPLANE_BIN names the binary; without
# it, `cargo build -p orgplane` makes one. With ORGPLANE_ADDR and ORGPLANE_MAIL_DIR already set,
# nothing is started (run against your own server).

orgplane_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ORGPLANE_WORK="$(mktemp -d)"
export ORGPLANE_WORK
orgplane_pid=""
stop_orgplane() {
  if [ -n "$orgplane_pid" ]; then
    kill -TERM "$orgplane_pid" 2>/dev/null || true
    wait "$orgplane_pid" 2>/dev/null || true
    orgplane_pid=""
  fi
  rm -rf "$ORGPLANE_WORK"
}
trap stop_orgplane EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_orgplane() {
  if [ -n "${ORGPLANE_ADDR:-}" ] && [ -n "${ORGPLANE_MAIL_DIR:-}" ]; then
    export ORGPLANE_URL="http://$ORGPLANE_ADDR"
    return
  fi
  local bin="${ORGPLANE_BIN:-}"
  if [ -z "$bin" ]; then
    (cd "$orgplane_root" && cargo build --quiet -p orgplane)
    bin="$orgplane_root/target/debug/orgplane"
  fi
  local port
  port=$(free_port)
  export ORGPLANE_ADDR="127.0.0.1:$port"
  export ORGPLANE_URL="http://$ORGPLANE_ADDR"
  export ORGPLANE_MAIL_DIR="$ORGPLANE_WORK/data/mail"
  (cd "$ORGPLANE_WORK" && ORGPLANE_LISTEN="$ORGPLANE_ADDR" ORGPLANE_HTTP_LISTEN=off \
    ORGPLANE_DATA_DIR="$ORGPLANE_WORK/data" RUST_LOG=warn \
    exec "$bin" all >"$ORGPLANE_WORK/orgplane.log" 2>&1) &
  orgplane_pid=$!
  # Ready when `orgplane health` (the probe the Kubernetes manifests use) says SERVING.
  for _ in $(seq 150); do
    if ORGPLANE_LISTEN="$ORGPLANE_ADDR" "$bin" health >/dev/null 2>&1; then return; fi
    if ! kill -0 "$orgplane_pid" 2>/dev/null; then
      cat "$ORGPLANE_WORK/orgplane.log" >&2
      echo "orgplane exited before serving" >&2
      return 1
    fi
    sleep 0.2
  done
  cat "$ORGPLANE_WORK/orgplane.log" >&2
  echo "orgplane did not become SERVING within 30 s" >&2
  return 1
}
