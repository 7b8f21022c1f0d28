#!/usr/bin/env bash
# Extraction benchmark (issue 4): cASO 5.2.2 (.venv) and our caso-extract
# (release build) side by side against the OpenStack simulator, on scenarios
# S (3 projects x 20 servers), M (20 x 100) and L (100 x 200, 2 volumes and
# 1 floating IP per 10 servers) at 0 ms and 20 ms latency per API request.
# For each: a fresh simulator (seed 1, lenient Cinder filters so cASO reports
# storage too), cASO under `time -v`, the simulator's request count, a reset,
# ours under `time -v` three times (median wall time, largest peak RSS), its
# request count; then wall time, peak RSS, API requests and records of each,
# and the ratios. Targets on L at 20 ms: at
# least 40x faster, at most 1/8 of cASO's requests, peak RSS at most 40 MB.
# Last, the time ours takes to give up on credentials Keystone rejects.
#
#   scripts/bench-extract.sh [SCENARIO...]     (default: S M L; cASO on L at
#                                               20 ms takes about 3 minutes)
# Environment: LATENCIES (default "0ms 20ms"), SEED (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(S M L)
read -r -a latencies <<<"${LATENCIES:-0ms 20ms}"
seed=${SEED:-1}

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
bench_need_gnu_time bench-extract
[ -x .venv/bin/caso-extract ] || scripts/setup-python.sh >&2
cargo build --release --locked --bin caso-extract --example openstack-sim >&2
ours_bin=$root/target/release/caso-extract
sim_bin=$root/target/release/examples/openstack-sim
py=$root/.venv/bin/python

work=$root/target/bench-extract
rm -rf "$work"
mkdir -p "$work"

json_get() { "$py" -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[k]
print(v)' "$@"; }
# records of every type in a spool (every element must parse)
records_in() { "$py" tests/oracle/spool_records.py "$1" | "$py" -c 'import json,sys; d=json.load(sys.stdin)
print(sum(len(d[k]) for k in ("cloud", "ip", "accelerator", "storage")))'; }

sim_pid=
stop_sim() { if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; sim_pid=; fi; }
trap stop_sim EXIT

# start_sim DIR ARGS...: a fresh simulator; sets $url, $from, $to
start_sim() {
  local dir=$1
  shift
  "$sim_bin" --write-voms-json "$dir/voms.json" --write-manifest "$dir/manifest.json" "$@" \
    >"$dir/sim.ready" 2>"$dir/sim.log" &
  sim_pid=$!
  for _ in $(seq 1 300); do
    [ -s "$dir/sim.ready" ] && break
    sleep 0.1
  done
  url=$(json_get url <"$dir/sim.ready")
  from=$(json_get period from <"$dir/manifest.json")
  to=$(json_get period to <"$dir/manifest.json")
}

# write_conf DIR PASSWORD: the caso.conf both programs read (cASO needs the
# admin with a password: it asks a system scope, FORMATS.md defect 10)
write_conf() {
  mkdir -p "$1/spool" "$1/outgoing"
  cat >"$1/caso.conf" <<EOF
[DEFAULT]
site_name = SIM-SITE
service_name = SIM-SITE
messengers = ssm
spooldir = $1/spool
lock_path = $1/spool
mapping_file = $(dirname "$1")/voms.json
debug = false

[keystone_auth]
auth_type = v3password
auth_url = $url/identity/v3
username = admin
password = $2
user_domain_name = Default

[ssm]
output_path = $1/outgoing
EOF
}

requests() { curl -fsS "$url/_sim/stats" | json_get total; }

rows=()
for sc in "${scenarios[@]}"; do
  for lat in "${latencies[@]}"; do
    dir=$work/$sc-$lat
    mkdir -p "$dir"
    echo "bench-extract: scenario $sc, latency $lat" >&2
    start_sim "$dir" --scenario "$sc" --seed "$seed" --latency "$lat" --lenient-cinder-filters

    write_conf "$dir/caso" secret
    set +e
    TZ=UTC /usr/bin/time -v -o "$dir/caso.time" .venv/bin/caso-extract --config-file "$dir/caso/caso.conf" \
      --extract-from "$from" --extract-to "$to" >"$dir/caso.log" 2>&1
    crc=$?
    set -e
    creq=$(requests)
    curl -fsS -X POST "$url/_sim/reset" >/dev/null

    # Ours three times (it takes seconds, and this machine is shared): the
    # median wall time and the largest peak RSS are reported.
    walls=() rsss=() orc=0
    for run in 1 2 3; do
      [ "$run" = 1 ] || curl -fsS -X POST "$url/_sim/reset" >/dev/null
      write_conf "$dir/ours$run" secret
      set +e
      /usr/bin/time -v -o "$dir/ours$run.time" "$ours_bin" --config-file "$dir/ours$run/caso.conf" \
        --extract-from "$from" --extract-to "$to" >"$dir/ours$run.log" 2>&1
      rc=$?
      set -e
      [ "$rc" = 0 ] || orc=$rc
      walls+=("$(wall "$dir/ours$run.time")")
      rsss+=("$(rss "$dir/ours$run.time")")
      oreq=$(requests)
    done
    owall=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n 2p)
    orss=$(printf '%s\n' "${rsss[@]}" | sort -g | tail -1)
    stop_sim
    [ "$crc" = 0 ] || echo "bench-extract: cASO exited $crc on $sc $lat (see $dir/caso.log)" >&2
    [ "$orc" = 0 ] || echo "bench-extract: caso-extract exited $orc on $sc $lat (see $dir/ours.log)" >&2
    echo "bench-extract: ours $sc $lat: wall ${walls[*]} s, peak RSS ${rsss[*]} kB" >&2
    rows+=("$sc $lat $owall $orss $oreq $(records_in "$dir/ours1/outgoing") $(wall "$dir/caso.time") $(rss "$dir/caso.time") $creq $(records_in "$dir/caso/outgoing") $orc $crc")
  done
done

# Credentials Keystone rejects: one request, exit 1, and how long it takes.
dir=$work/rejected
mkdir -p "$dir"
start_sim "$dir" --scenario S --seed "$seed" --latency 20ms
write_conf "$dir/ours" wrong-password
set +e
/usr/bin/time -v -o "$dir/ours.time" "$ours_bin" --config-file "$dir/ours/caso.conf" >"$dir/ours.log" 2>&1
rrc=$?
set -e
rreq=$(requests)
stop_sim
rwall=$(wall "$dir/ours.time")

printf '%s\n' "${rows[@]}" | awk -v rwall="$rwall" -v rrc="$rrc" -v rreq="$rreq" '
BEGIN {
  printf "\nExtraction benchmark: caso-extract (release; median of 3 runs) vs cASO 5.2.2, same simulator data (seed '"$seed"'), one period\n\n"
  printf "%-4s %-6s | %9s %9s %8s %8s | %9s %9s %8s %8s | %7s %9s %7s\n", "", "", "ours", "", "", "", "cASO", "", "", "", "ratio", "", ""
  printf "%-4s %-6s | %9s %9s %8s %8s | %9s %9s %8s %8s | %7s %9s %7s\n", "sc", "lat", "wall s", "RSS MB", "requests", "records", "wall s", "RSS MB", "requests", "records", "faster", "requests", "RSS"
}
{
  sc = $1; lat = $2; ow = $3; orss = $4 / 1024; oreq = $5; orec = $6; cw = $7; crss = $8 / 1024; creq = $9; crec = $10
  speed = (ow > 0) ? cw / ow : 0
  rq = (creq > 0) ? oreq / creq : 0
  printf "%-4s %-6s | %9.2f %9.1f %8d %8d | %9.2f %9.1f %8d %8d | %6.1fx %9s %6.1fx%s\n", sc, lat, ow, orss, oreq, orec, cw, crss, creq, crec, speed, sprintf("1/%.1f", (oreq > 0 ? creq / oreq : 0)), crss / orss, ($11 != 0 || $12 != 0) ? "  (exit ours " $11 ", cASO " $12 ")" : ""
  if (sc == "L" && lat == "20ms") {
    target = sprintf("\nL at 20 ms targets: >= 40x faster: %s (%.1fx); <= 1/8 of cASO requests: %s (%d of %d); peak RSS <= 40 MB: %s (%.1f MB)\n", \
      (speed >= 40 ? "met" : "MISSED"), speed, (oreq * 8 <= creq ? "met" : "MISSED"), oreq, creq, (orss <= 40 ? "met" : "MISSED"), orss)
  }
}
END {
  printf "%s", target
  printf "\nrejected credentials (ours, 20 ms latency): exit %d after %d request(s) in %.2f s\n", rrc, rreq, rwall
}'
