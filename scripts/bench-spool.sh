#!/usr/bin/env bash
# Spool benchmark (issue 3): render RECORDS cloud records into messages of 100
# and add them to a dirq spool, ours (release build) and cASO 5.2.2 + Python
# dirq 1.8, one after the other on the same disk; prints wall time, peak RSS
# and the ratios. Target: at least 20x faster, peak RSS under 50 MB.
# Usage: scripts/bench-spool.sh [RECORDS=1000000] [COMMIT_EVERY=100]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
commit_every=${2:-100}
per_message=100

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
bench_need_gnu_time bench-spool
scripts/setup-python.sh
cargo build --release --locked --example bench-spool >&2

work=target/bench-spool
rm -rf "$work"
mkdir -p "$work"

# elements in a dirq queue, and records in them (one VMUUID line each)
elements() { find "$1" -mindepth 2 -maxdepth 2 -regextype posix-extended -regex '.*/[0-9a-f]{8}/[0-9a-f]{14}' | wc -l; }
records_in() { find "$1" -mindepth 2 -maxdepth 2 -type f -regextype posix-extended -regex '.*/[0-9a-f]{14}' -exec cat {} + | grep -c '^VMUUID: '; }

sync
/usr/bin/time -v -o "$work/ours.time" \
  target/release/examples/bench-spool "$work/ours" "$records" "$per_message" "$commit_every"
sync
/usr/bin/time -v -o "$work/caso.time" \
  .venv/bin/python benches/spool/caso_spool.py "$work/caso" "$records" "$per_message"

ow=$(wall "$work/ours.time"); cw=$(wall "$work/caso.time")
orss=$(rss "$work/ours.time"); crss=$(rss "$work/caso.time")
oe=$(elements "$work/ours"); ce=$(elements "$work/caso")
orec=$(records_in "$work/ours"); crec=$(records_in "$work/caso")

awk -v r="$records" -v ow="$ow" -v cw="$cw" -v orss="$orss" -v crss="$crss" \
    -v oe="$oe" -v ce="$ce" -v orec="$orec" -v crec="$crec" -v ce_every="$commit_every" 'BEGIN {
  printf "\nSpool benchmark: %d cloud records, messages of 100, dirq; ours commits every %d messages\n\n", r, ce_every
  printf "%-28s %12s %14s %10s %10s\n", "", "wall (s)", "peak RSS (MB)", "messages", "records"
  printf "%-28s %12.2f %14.1f %10d %10d\n", "ours (release)", ow, orss / 1024, oe, orec
  printf "%-28s %12.2f %14.1f %10d %10d\n", "cASO 5.2.2 + dirq 1.8", cw, crss / 1024, ce, crec
  speed = (ow > 0) ? cw / ow : 0
  printf "%-28s %11.1fx %13.1fx\n", "ratio (cASO / ours)", speed, crss / orss
  printf "\ntarget >= 20x faster: %s; peak RSS < 50 MB: %s\n", (speed >= 20 ? "met" : "MISSED"), (orss < 50 * 1024 ? "met" : "MISSED")
}'
if [ "$oe" != "$ce" ] || [ "$orec" != "$crec" ] || [ "$orec" != "$records" ]; then
  echo "bench-spool: the two spools differ in messages or records" >&2
  exit 1
fi
