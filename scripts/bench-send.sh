#!/usr/bin/env bash
# Sending benchmark (issue 5, item 6): 1,000 messages of 100 cloud records
# each (rendered by the record module, ~50 kB per message) in a dirq queue,
# sent by the release `ssmsend` (a) to the test ActiveMQ over STOMP+SSL with
# a client certificate, a consumer draining the queue, and (b) to the AMS
# double (TLS, authx509 token, no added latency). Prints messages/s, wall
# time and peak RSS per transport beside the targets.
# Usage: scripts/bench-send.sh [MESSAGES=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-1000}
records_per_message=100

if [ ! -x /usr/bin/time ]; then
  echo "bench-send: installing GNU time (/usr/bin/time -v)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq time >/dev/null; else sudo apt-get install -y -qq time >/dev/null; fi
fi
scripts/setup-activemq.sh
cargo build --release --locked --bin ssmsend --example bench-spool --example ams-double \
  --example send-bench-consumer >&2
# shellcheck disable=SC1091
. target/activemq/env
pki=$ACTIVEMQ_PKI_DIR
bin=target/release
work=target/bench-send
rm -rf "$work"
mkdir -p "$work"

wall() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"; }
rss_mb() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
fill() { "$bin/examples/bench-spool" "$1" $((messages * records_per_message)) "$records_per_message" 100 >/dev/null; }

# --- STOMP+SSL to ActiveMQ ----------------------------------------------------
destination=/queue/bench.send.$$.$RANDOM
fill "$work/stomp/outgoing"
size=$(wc -c <"$(find "$work/stomp/outgoing" -type f -print -quit)")
cat >"$work/stomp.cfg" <<EOF
[sender]
protocol: STOMP
[broker]
host: 127.0.0.1
port: $ACTIVEMQ_STOMP_SSL_PORT
use_ssl: true
[certificates]
certificate: $ACTIVEMQ_CLIENT_CERT
key: $ACTIVEMQ_CLIENT_KEY
capath: $ACTIVEMQ_CAPATH
[messaging]
destination: $destination
path: $work/stomp/outgoing
[logging]
level: WARN
EOF
"$bin/examples/send-bench-consumer" "$destination" "$messages" >"$work/consumer.out" &
consumer=$!
for _ in $(seq 1 100); do grep -q ready "$work/consumer.out" && break; sleep 0.1; done
/usr/bin/time -v -o "$work/stomp.time" "$bin/ssmsend" -c "$work/stomp.cfg"
wait "$consumer"
stomp_received=$(sed -n 's/^received=\([0-9]*\) distinct=\([0-9]*\)$/\1 received, \2 distinct/p' "$work/consumer.out")

# --- AMS double -----------------------------------------------------------------
host_dn=$(openssl x509 -in "$ACTIVEMQ_CLIENT_CERT" -noout -subject -nameopt compat | sed 's/^subject=//')
"$bin/examples/ams-double" --ca "$pki/ca.pem" --cert "$pki/broker.pem" --key "$pki/broker.key" \
  --token bench-token --verify-ca "$pki/ca.pem" --allowed-dn "$host_dn" >"$work/ams.ports" &
double=$!
trap 'kill $double 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$work/ams.ports" ] && break; sleep 0.1; done
port() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$work/ams.ports"; }
fill "$work/ams/outgoing"
cat >"$work/ams.cfg" <<EOF
[sender]
protocol: AMS
ams_port: $(port ams_port)
ams_authn_port: $(port authn_port)
[broker]
host: 127.0.0.1
[certificates]
certificate: $ACTIVEMQ_CLIENT_CERT
key: $ACTIVEMQ_CLIENT_KEY
capath: $ACTIVEMQ_CAPATH
[messaging]
ams_project: accounting
destination: eu-egi-cloud-accounting
path: $work/ams/outgoing
[logging]
level: WARN
EOF
/usr/bin/time -v -o "$work/ams.time" "$bin/ssmsend" -c "$work/ams.cfg"
stats=$(python3 -c 'import json, sys, urllib.request
s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/stats" % sys.argv[1]))
print("%d stored, %d duplicates, signatures verified: %s" % (s["messages"], s["duplicates"], s["signatures"]["all_verified"]))' "$(port admin_port)")

sw=$(wall "$work/stomp.time"); aw=$(wall "$work/ams.time")
rate() { awk -v n="$messages" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
echo
echo "ssmsend, $messages messages of $records_per_message cloud records (~$size bytes each), $(nproc) cores"
printf '%-22s %10s %9s %13s %22s\n' transport "wall (s)" "msg/s" "peak RSS MB" "target"
printf '%-22s %10s %9s %13s %22s\n' "ActiveMQ STOMP+SSL" "$sw" "$(rate "$sw")" "$(rss_mb "$work/stomp.time")" ">= 1000 msg/s, < 30 MB"
printf '%-22s %10s %9s %13s %22s\n' "AMS double" "$aw" "$(rate "$aw")" "$(rss_mb "$work/ams.time")" ">= 500 msg/s, < 30 MB"
echo "reference, APEL ssmsend 4.0.0: 45 msg/s to ActiveMQ (plain STOMP), 16 msg/s to an AMS double, 48 MB peak RSS"
echo "ActiveMQ consumer: $stomp_received; AMS double: $stats"
