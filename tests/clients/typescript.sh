#!/usr/bin/env bash
# The TypeScript client test: builds the package proto/clients/typescript (@orgplane/client:
# `npm ci`, then `npm run build` = buf generate from proto/ + tsc to dist/), installs it into
# tests/clients/typescript from the repo path as a client team would, type-checks the story
# against the package's .d.ts, starts a fresh `orgplane all` and runs the story against it over
# gRPC (sign up → verify by mail → login → organization → invite accepted → workspace →
# CheckAccess, and refused calls read as ErrorReason).
#
# Usage: tests/clients/typescript.sh          (ORGPLANE_BIN=path/to/orgplane, else cargo build)
#        ORGPLANE_ADDR=127.0.0.1:50051 ORGPLANE_MAIL_DIR=./data/mail tests/clients/typescript.sh
#                                              (against an already running orgplane)
# Needs Node.js >= 20 and npm; network to the npm registry for `npm ci` (lockfiles committed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pkg="$root/proto/clients/typescript"
story="$here/typescript"
# shellcheck source=tests/clients/lib.sh
source "$here/lib.sh"

step() { printf '== %s\n' "$*"; }
started=$SECONDS
npm_quiet=(--no-audit --no-fund --loglevel=error)

step "node $(node --version), npm $(npm --version)"
step "proto/clients/typescript: npm ci"
(cd "$pkg" && npm ci "${npm_quiet[@]}")
step "proto/clients/typescript: npm run build (buf generate + tsc → dist/)"
(cd "$pkg" && npm run --silent build)
step "tests/clients/typescript: npm ci (@orgplane/client from the repo path) + tsc story.ts"
(cd "$story" && npm ci "${npm_quiet[@]}" && rm -rf dist && npm run --silent build)
step "starting orgplane all"
start_orgplane
echo "   listening on $ORGPLANE_ADDR, mail in $ORGPLANE_MAIL_DIR"
step "story ($(( SECONDS - started )) s so far)"
(cd "$story" && node dist/story.js)
step "typescript client test passed in $(( SECONDS - started )) s"
