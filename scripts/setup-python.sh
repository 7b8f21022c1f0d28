#!/usr/bin/env bash
# Creates .venv with the Python tools we must stay compatible with: cASO 5.2.2
# (record rendering, extraction) and dirq 1.8 (the spool), used by the tests as
# interoperability oracles; kubernetes-validate (with its bundled Kubernetes
# schemas, so it works offline) checks deploy/kubernetes and check-jsonschema
# (its bundled GitHub workflow schema) .github/workflows in
# tests/ops/deploy_manifests.rs. Idempotent: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
want="caso==5.2.2 dirq==1.8 kubernetes-validate==1.37.0 check-jsonschema==0.39.0"
stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import caso, dirq, kubernetes_validate, check_jsonschema' 2>/dev/null; then
  exit 0
fi
echo "setup-python: installing $want into .venv" >&2
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check $want
echo "$want" > "$stamp"
