#!/usr/bin/env bash
# The Python client test: pip-installs the client package proto/clients/python into a virtualenv
# (a real install: its build generates the `orgplane.*` modules from proto/ with the pinned
# grpcio-tools, so the client under test always matches the contracts of this checkout), starts a
# fresh `orgplane all` (tests/clients/lib.sh) and runs stories 1 to 3 against it with
# tests/clients/python/stories.py, reading refusals' ErrorInfo reasons as the ErrorReason enum.
#
# Usage: tests/clients/python.sh                    (builds the binary with cargo when
#                                                    ORGPLANE_BIN is unset)
#        ORGPLANE_BIN=target/debug/orgplane tests/clients/python.sh
#        ORGPLANE_ADDR=127.0.0.1:50051 ORGPLANE_MAIL_DIR=./data/mail tests/clients/python.sh
#                                                   (against an already running orgplane)
# The virtualenv is reused across runs: $ORGPLANE_PY_VENV, by default
# ${TMPDIR:-/tmp}/orgplane-client-py-venv. Needs python3 (>= 3.10) and PyPI (or a mirror).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/clients/lib.sh
source "$here/lib.sh"
venv="${ORGPLANE_PY_VENV:-${TMPDIR:-/tmp}/orgplane-client-py-venv}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# A local directory is always rebuilt and reinstalled, so edited contracts are regenerated.
# The `test` extra brings what the stories use beyond the package (pyotp).
"$venv/bin/pip" install --quiet --disable-pip-version-check "$orgplane_root/proto/clients/python[test]"

start_orgplane
# Run from elsewhere than the package's source, so that the installed copy is what is imported.
cd "$ORGPLANE_WORK"
"$venv/bin/python" "$here/python/stories.py"
