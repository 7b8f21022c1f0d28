#!/usr/bin/env bash
# Runs the real cASO 5.2.2 (from .venv) against the OpenStack simulator and
# leaves its spool, log and the simulator's manifest/stats in a work directory.
#
#   scripts/run-caso-against-sim.sh WORKDIR [openstack-sim options...]
#
# Environment: SIM (simulator binary; default target/debug/examples/openstack-sim),
# CASO_EXTRA (extra caso-extract arguments), CASO_PROJECTS (the `projects`
# option; default empty: the caso tag finds them), CASO_FROM / CASO_TO (the
# period; default the manifest's), CASO_EXTRACTOR / CASO_MESSENGERS (default
# cASO's extractors, ssm), CASO_CONF_EXTRA (text appended to caso.conf, e.g.
# its [prometheus] and [greendigit_cim] sections).
# Prints the simulator's request counts at the end. Exit status = cASO's.
#
# The caso.conf written here is what cASO needs to work at all: the admin
# user with a password (cASO asks a system scope: application credentials
# cannot work, FORMATS.md defect 10), project ids (a name crashes it,
# defect 4), the voms.json the simulator wrote, TZ=UTC (defect 7).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${1:?usage: $0 WORKDIR [openstack-sim options...]}
shift
if [ ! -x .venv/bin/caso-extract ]; then
  echo "run-caso-against-sim: .venv/bin/caso-extract missing: run scripts/setup-python.sh" >&2
  exit 2
fi
sim=${SIM:-$root/target/debug/examples/openstack-sim}
[ -x "$sim" ] || cargo build --quiet --example openstack-sim
mkdir -p "$work"
work=$(cd "$work" && pwd)
rm -rf "$work/spool" "$work/outgoing"
mkdir -p "$work/spool" "$work/outgoing"

"$sim" --write-voms-json "$work/voms.json" --write-manifest "$work/manifest.json" "$@" \
  >"$work/sim.ready" 2>"$work/sim.log" &
sim_pid=$!
trap 'kill $sim_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -s "$work/sim.ready" ] && break
  sleep 0.1
done
url=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/sim.ready")
read -r from to < <(.venv/bin/python -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["period"]["from"], m["period"]["to"])' "$work/manifest.json")
from=${CASO_FROM:-$from}
to=${CASO_TO:-$to}

cat >"$work/caso.conf" <<EOF
[DEFAULT]
site_name = SIM-SITE
service_name = SIM-SITE
projects = ${CASO_PROJECTS:-}
messengers = ${CASO_MESSENGERS:-ssm}
extractor = ${CASO_EXTRACTOR:-nova,cinder,neutron}
spooldir = $work/spool
lock_path = $work/spool
mapping_file = $work/voms.json
debug = false

[keystone_auth]
auth_type = v3password
auth_url = $url/identity/v3
username = admin
password = secret
user_domain_name = Default

[ssm]
output_path = $work/outgoing

${CASO_CONF_EXTRA:-}
EOF

set +e
# shellcheck disable=SC2086
TZ=UTC .venv/bin/caso-extract --config-file "$work/caso.conf" \
  --extract-from "$from" --extract-to "$to" ${CASO_EXTRA:-} >"$work/caso.log" 2>&1
rc=$?
set -e
curl -fsS "$url/_sim/stats" >"$work/stats.json" 2>/dev/null \
  || .venv/bin/python -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' "$url/_sim/stats" >"$work/stats.json"
echo "caso-extract exit $rc; requests: $(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$work/stats.json"); log $work/caso.log"
exit $rc
