#!/usr/bin/env bash
# Contract compatibility: `buf breaking` (FILE rules, proto/buf.yaml) between proto/ as it is and
# proto/ at the released baseline, the commit named in proto/BREAKING_BASELINE. A change that would
# break generated clients (a removed or renumbered field, a changed type, a renamed RPC, a changed
# go_package …) fails; a breaking change goes into a new package version (orgplane.<service>.v2)
# beside the old one. Moving the baseline forward is a release: edit proto/BREAKING_BASELINE.
#
# Then the control: the same check against a copy of proto/ with one field deleted must fail, so
# this script cannot pass by checking nothing.
#
# Usage: tests/contracts/breaking.sh   (needs the git history of the baseline: not a shallow clone)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
baseline=$(grep -Eo '^[0-9a-f]{40}' "$root/proto/BREAKING_BASELINE" | head -1)
[ -n "$baseline" ] || { echo "proto/BREAKING_BASELINE names no commit" >&2; exit 1; }
git -C "$root" cat-file -e "$baseline^{commit}" 2>/dev/null || {
  echo "the baseline commit $baseline is not in this clone (shallow?); fetch the history first" >&2
  exit 1
}
buf=$(npx --yes -p @bufbuild/buf@1.75.0 -c 'command -v buf' 2>/dev/null | tail -1)
[ -x "$buf" ] || { echo "cannot install @bufbuild/buf@1.75.0 with npx" >&2; exit 1; }

echo "buf breaking: proto/ against $baseline"
(cd "$root/proto" && "$buf" breaking --against "$root/.git#ref=$baseline,subdir=proto")
echo "  compatible"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/proto/orgplane" "$root/proto/buf.yaml" "$work/"
# Delete `revision` from CreateOrganizationResponse: every client reading it would break.
python3 - "$work/orgplane/organization/v1/organization.proto" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
start = text.index("message CreateOrganizationResponse {")
end = text.index("}", start)
body = re.sub(r"\n[^\n]*int64 revision = \d+;", "", text[start:end], count=1)
assert body != text[start:end], "the control's field was not found"
open(path, "w").write(text[:start] + body + text[end:])
PY
if (cd "$work" && "$buf" breaking --against "$root/.git#ref=$baseline,subdir=proto" >"$work/out.txt" 2>&1); then
  echo "control failed: deleting a field was not reported as breaking" >&2
  exit 1
fi
echo "  control: a deleted field is reported: $(head -1 "$work/out.txt")"
