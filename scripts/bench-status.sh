#!/usr/bin/env bash
# Status benchmark (issue 14): `ssmsend status`, `ssmsend status --check` and
# `caso-extract status --json` on a spool of MESSAGES dirq messages (spread
# over intermediate directories as a busy site's would be, a few locked,
# some rejected with reasons) and 100 projects' lastrun files. Release
# binaries, warm page cache; prints each command's median and worst wall
# time over RUNS runs and its peak RSS. Target: under 100 ms at 100,000.
# Usage: scripts/bench-status.sh [MESSAGES=100000] [RUNS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-100000}
runs=${2:-20}

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
bench_need_gnu_time bench-status
cargo build --release --locked --bin caso-extract --bin ssmsend >&2

work=$PWD/target/bench-status
# Filling takes minutes: a spool of this size from an earlier run is reused.
if [ ! -e "$work/filled.$messages" ]; then
rm -rf "$work"
mkdir -p "$work/caso" "$work/apel/outgoing" "$work/apel/reject"

# The spool, as Python dirq names it: one directory per minute of adds
# (1,000 messages each), elements %08x%05x%01x; 10 locks, 50 rejected.
python3 - "$work" "$messages" <<'PY'
import os, sys
work, n = sys.argv[1], int(sys.argv[2])
q = os.path.join(work, "apel/outgoing")
start = 1796212800 - n  # one second apart, ending at 2026-12-02T12:00:00Z
body = b"APEL-cloud-message: v0.4\n" + b"VMUUID: x\n" * 100
for i in range(n):
    t = start + i
    d = os.path.join(q, "%08x" % (t // 60 * 60))
    if i % 60 == 0 or not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
    name = "%08x%05x%01x" % (t, i % 100000, 7)
    with open(os.path.join(d, name), "wb") as f:
        f.write(body)
    if i < 10:
        os.link(os.path.join(d, name), os.path.join(d, name + ".lck"))
r = os.path.join(work, "apel/reject")
for i in range(50):
    open(os.path.join(r, "rej%04d" % i), "wb").write(body)
    open(os.path.join(r, "rej%04d.reason" % i), "w").write("refused by the broker: too large\n")
for p in range(100):
    open(os.path.join(work, "caso/lastrun.project%03d" % p), "w").write("2026-12-02 11:00:00")
PY
touch "$work/filled.$messages"
fi
cat >"$work/caso.conf" <<CONF
[DEFAULT]
site_name = BENCH
messengers = ssm
spooldir = $work/caso
[ssm]
output_path = $work/apel/outgoing
CONF
cat >"$work/sender.cfg" <<CONF
[sender]
protocol: STOMP
[messaging]
destination: eu-egi-cloud-accounting
path: $work/apel/outgoing
CONF

now=2026-12-02T12:00:00Z
run_one() { # label, command...
  local label=$1; shift
  "$@" >/dev/null || [ $? -le 3 ]  # the probe exits 0-3
  /usr/bin/time -v -o "$work/$label.time" "$@" >/dev/null || true
  python3 - "$label" "$runs" "$(rss_mb "$work/$label.time")" "$@" <<'PY'
import statistics, subprocess, sys, time
label, runs, rss, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
walls = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    walls.append((time.perf_counter() - t) * 1000)
print(f"| {label} | {statistics.median(walls):.1f} ms | {max(walls):.1f} ms | {rss} MB |")
PY
}

found=$(find "$work/apel/outgoing" -mindepth 2 -maxdepth 2 -regextype posix-extended -regex '.*/[0-9a-f]{14}' | wc -l)
echo "spool: $found messages in $(find "$work/apel/outgoing" -mindepth 1 -maxdepth 1 | wc -l) directories, 10 locked, 50 rejected; 100 lastrun files; $runs runs each, warm cache"
echo "| command | median | worst | peak RSS |"
echo "|---|---|---|---|"
run_one "ssmsend status" target/release/ssmsend -c "$work/sender.cfg" status --now "$now"
run_one "ssmsend status --check" target/release/ssmsend -c "$work/sender.cfg" status --check --now "$now"
run_one "ssmsend status --json" target/release/ssmsend -c "$work/sender.cfg" status --json --now "$now"
run_one "caso-extract status --json" target/release/caso-extract --config-file "$work/caso.conf" status --json --now "$now"
run_one "caso-extract status --check" target/release/caso-extract --config-file "$work/caso.conf" status --check --now "$now"
