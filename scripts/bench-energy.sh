#!/usr/bin/env bash
# Energy benchmark (issue 13): cASO 5.2.2 (.venv) and our caso-extract
# (release build) side by side, `extractor = prometheus`, against a real
# Prometheus (Debian's package) holding 100 projects x 20 VMs x 7 days of
# power samples at a 30 s step (2,000 series, about 40M samples) and the
# OpenStack simulator with the same 100 x 20 servers.
#
# The series come from `energy-series --manifest` (the simulator's server
# ids, vCPUs, starts and ends) and are backfilled ONCE into a cached TSDB
# under target/bench-energy-cache/<key> (key: the generator's parameters and
# the manifest's hash), reused when present; generation and backfill times
# are printed (and kept beside the TSDB).
#
# Requests are Prometheus's own count,
# prometheus_http_requests_total{handler="/api/v1/query_range" or "/api/v1/query"} on its
# /metrics, read before and after each run; wall time and peak RSS from GNU time. Targets: ours at
# least 50x faster, at most 1/50 of cASO's requests, peak RSS under 60 MB.
# CASO=0 skips cASO's run (4 minutes here) and prints only ours.
#
#   scripts/bench-energy.sh
# Environment: PROJECTS (100), VMS (20), DAYS (7), STEP (30), SEED (1),
#   MESSENGER (noop; or greendigit_cim, to the cim-double).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
projects=${PROJECTS:-100}
vms=${VMS:-20}
days=${DAYS:-7}
step=${STEP:-30}
seed=${SEED:-1}
messenger=${MESSENGER:-noop}

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
bench_need_gnu_time bench-energy
[ -x .venv/bin/caso-extract ] || scripts/setup-python.sh >&2
scripts/setup-prometheus.sh install
cargo build --release --locked --bin caso-extract --example openstack-sim --example energy-series --example cim-double >&2
ours_bin=$root/target/release/caso-extract
sim_bin=$root/target/release/examples/openstack-sim
gen_bin=$root/target/release/examples/energy-series
cim_bin=$root/target/release/examples/cim-double
py=$root/.venv/bin/python

work=$root/target/bench-energy
rm -rf "$work"
mkdir -p "$work"
log() { echo "bench-energy: $*" >&2; }

json_get() { "$py" -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[k]
print(v)' "$@"; }
now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

from_s=$(date -u -d 2026-09-01T00:00:00Z +%s)
to_s=$((from_s + days * 86400))
from=$(date -u -d "@$from_s" +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d "@$to_s" +%Y-%m-%dT%H:%M:%SZ)

sim_pid='' cim_pid=''
prom_state=$work/prometheus
cleanup() {
  for p in $sim_pid $cim_pid; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  scripts/setup-prometheus.sh stop "$prom_state" || true
}
trap cleanup EXIT

# The simulator: 100 tagged projects of 20 servers, no untagged ones, the
# benchmark's week as its period (its data the same for the same seed).
"$sim_bin" --scenario custom --projects "$projects" --servers "$vms" --untagged-projects 0 \
  --seed "$seed" --period-from "$from" --period-to "$to" \
  --write-voms-json "$work/voms.json" --write-manifest "$work/manifest.json" \
  >"$work/sim.ready" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/sim.ready" ] && break
  sleep 0.1
done
url=$(json_get url <"$work/sim.ready")

# The cached TSDB, keyed by what the series depend on.
key=$( (
  echo "energy-series --manifest --plain --from $from_s --to $to_s --step $step --seed $seed --slice-seconds 86400"
  sha256sum <"$work/manifest.json"
  sha256sum <tests/sim/energy/main.rs
) | sha256sum | cut -c1-16)
cache=$root/target/bench-energy-cache/$key
if [ -f "$cache/done" ]; then
  log "reusing the TSDB in $cache ($(cat "$cache/done"))"
  gen_took=$(sed -n 's/^generation \([0-9.]*\) s.*/\1/p' "$cache/done")
  fill_took=$(sed -n 's/.*backfill \([0-9.]*\) s.*/\1/p' "$cache/done")
  cached=" (cached)"
else
  rm -rf "$cache"
  mkdir -p "$cache"
  log "generating $projects x $vms VMs x $days days at ${step} s into $cache/om"
  t0=$(now_ns)
  "$gen_bin" --manifest "$work/manifest.json" --plain --from "$from_s" --to "$to_s" --step "$step" \
    --seed "$seed" --slice-seconds 86400 --out "$cache/om" 2>"$cache/generate.log"
  gen_took=$(secs_since "$t0")
  log "generated in $gen_took s: $(cat "$cache/generate.log"), $(du -sh "$cache/om" | cut -f1)"
  t0=$(now_ns)
  scripts/setup-prometheus.sh backfill "$cache/om" "$cache/tsdb"
  fill_took=$(secs_since "$t0")
  rm -rf "$cache/om"
  echo "generation $gen_took s, backfill $fill_took s, $(cat "$cache/generate.log")" >"$cache/done"
  cached=''
fi
# Prometheus writes into its storage (lock, WAL): run it on a copy of the
# cached blocks, so the cache stays as backfilled.
cp -a "$cache/tsdb" "$work/tsdb"
scripts/setup-prometheus.sh start "$work/tsdb" "$prom_state"
prom=http://127.0.0.1:$(cat "$prom_state/port")

# From /metrics: this Prometheus scrapes nothing, itself included, so PromQL
# cannot see its own counters.
query_requests() {
  curl -fsS "$prom/metrics" |
    awk '/^prometheus_http_requests_total\{.*handler="\/api\/v1\/query(_range)?"/ { s += $NF } END { printf "%d\n", s }'
}

if [ "$messenger" = greendigit_cim ]; then
  "$cim_bin" --email bench@example.org --password bench-pass --token bench-token \
    --record "$work/cim.jsonl" >"$work/cim.ready" 2>"$work/cim.log" &
  cim_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$work/cim.ready" ] && break
    sleep 0.1
  done
fi

# write_conf DIR: the caso.conf both programs read.
write_conf() {
  mkdir -p "$1/spool"
  cat >"$1/caso.conf" <<EOF
[DEFAULT]
site_name = SIM-SITE
service_name = SIM-SITE
extractor = prometheus
messengers = $messenger
spooldir = $1/spool
lock_path = $1/spool
mapping_file = $work/voms.json
debug = false

[keystone_auth]
auth_type = v3password
auth_url = $url/identity/v3
username = admin
password = secret
user_domain_name = Default

[prometheus]
prometheus_endpoint = $prom
prometheus_step_seconds = $step
EOF
  if [ "$messenger" = greendigit_cim ]; then
    cat >>"$1/caso.conf" <<EOF

[greendigit_cim]
base_url = http://127.0.0.1:$(json_get port <"$work/cim.ready")
email = bench@example.org
password = bench-pass
EOF
  fi
}

# run NAME BIN: one extraction under `time -v`; sets $rc and $req.
run() {
  local name=$1 bin=$2 before
  write_conf "$work/$name"
  before=$(query_requests)
  set +e
  TZ=UTC /usr/bin/time -v -o "$work/$name.time" "$bin" --config-file "$work/$name/caso.conf" \
    --extract-from "$from" --extract-to "$to" >"$work/$name.log" 2>&1
  rc=$?
  set -e
  req=$(($(query_requests) - before))
  log "$name: exit $rc, wall $(wall "$work/$name.time") s, peak RSS $(rss_mb "$work/$name.time") MB, $req query requests (log $work/$name.log)"
}

if [ "${CASO:-1}" != 0 ]; then
  log "cASO 5.2.2 on $projects x $vms VMs over $from .. $to"
  run caso "$root/.venv/bin/caso-extract"
  crc=$rc creq=$req
  cwall=$(wall "$work/caso.time") crss=$(rss_mb "$work/caso.time")
fi

log "ours on $projects x $vms VMs over $from .. $to"
run ours "$ours_bin"
orc=$rc oreq=$req
owall=$(wall "$work/ours.time") orss=$(rss_mb "$work/ours.time")

printf '\nEnergy benchmark: %d projects x %d VMs x %d days at %d s, real Prometheus, %s messenger\n' \
  "$projects" "$vms" "$days" "$step" "$messenger"
printf 'series: %s; generation %s s, backfill %s s%s\n\n' "$(cat "$cache/generate.log")" "$gen_took" "$fill_took" "$cached"
printf '%-10s | %10s %10s %10s | %s\n' "" "wall s" "requests" "RSS MB" "exit"
if [ -n "${cwall:-}" ]; then
  printf '%-10s | %10s %10s %10s | %s\n' "cASO 5.2.2" "$cwall" "$creq" "$crss" "$crc"
fi
printf '%-10s | %10s %10s %10s | %s\n' "ours" "$owall" "$oreq" "$orss" "$orc"
if [ -n "${cwall:-}" ]; then
  awk -v cw="$cwall" -v ow="$owall" -v cr="$creq" -v or="$oreq" -v rss="$orss" 'BEGIN {
    speed = (ow > 0) ? cw / ow : 0
    printf "\ntargets: >= 50x faster: %s (%.1fx); <= 1/50 of cASO requests: %s (%d of %d); peak RSS < 60 MB: %s (%.1f MB)\n",
      (speed >= 50 ? "met" : "MISSED"), speed, (or * 50 <= cr ? "met" : "MISSED"), or, cr, (rss < 60 ? "met" : "MISSED"), rss
  }'
fi
