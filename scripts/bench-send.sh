#!/usr/bin/env bash
# Sending benchmark (issue 5, item 6): 1,000 messages of 100 cloud records
# each (rendered by the record module, ~50 kB per message) in a dirq queue,
# sent by the release `ssmsend` (a) to the test ActiveMQ over STOMP+SSL with
# a client certificate, a consumer draining the destination at the same time,
# and (b) to the AMS double (TLS, authx509 token, no added latency). Prints
# messages/s, wall time, peak RSS and CPU per message per transport beside
# the targets. Everything shares this machine's cores: the broker's and the
# consumer's CPU is taken from ssmsend's.
#
# A production broker has been up for months; ours may have started a second
# ago, and its JVM compiles the TLS and STOMP paths during the first thousand
# messages or so. So one untimed warm-up run of the same 1,000 messages goes
# first; its figure is printed too, as "cold broker".
#
# --wan (issue 15): the same 1,000 messages over a simulated WAN, 30 ms added
# (a) by the AMS double to every publish request, one message per request as
# APEL's SSM sends; (b) the same, batched (the sender's defaults); (c) by a
# delaying TCP proxy each way between ssmsend and ActiveMQ (STOMP+SSL).
# Usage: scripts/bench-send.sh [--wan] [MESSAGES=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
wan=false
if [ "${1:-}" = --wan ]; then
  wan=true
  shift
fi
messages=${1:-1000}
records_per_message=100

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
bench_need_gnu_time bench-send
scripts/setup-activemq.sh
cargo build --release --locked --bin ssmsend --example bench-spool --example ams-double \
  --example send-bench-consumer --example delay-proxy >&2
# shellcheck disable=SC1091
. target/activemq/env
pki=$ACTIVEMQ_PKI_DIR
bin=target/release
work=target/bench-send
rm -rf "$work"
mkdir -p "$work"

# CPU milliseconds per message (user + system) from a `time -v` report.
cpu_ms() { awk -F': ' -v n="$messages" '/User time|System time/ { s += $2 } END { printf "%.2f", s * 1000 / n }' "$1"; }
fill() { "$bin/examples/bench-spool" "$1" $((messages * records_per_message)) "$records_per_message" 100 >/dev/null; }
first_size() { wc -c <"$(find "$1" -type f -print -quit)"; }

# --- STOMP+SSL to ActiveMQ ----------------------------------------------------
broker_pid=$(cat target/activemq/activemq.pid)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# stomp_run NAME: fills a queue and sends it while a consumer drains the
# destination; leaves NAME.time, NAME.consumer and NAME.broker (the broker's
# CPU milliseconds per message during the send).
stomp_run() {
  local name=$1 destination=/queue/bench.send.$$.$RANDOM consumer before after
  fill "$work/$name/outgoing"
  size=$(first_size "$work/$name/outgoing")
  cat >"$work/$name.cfg" <<EOF
[sender]
protocol: STOMP
[broker]
host: 127.0.0.1
port: ${stomp_port:-$ACTIVEMQ_STOMP_SSL_PORT}
use_ssl: true
[certificates]
certificate: $ACTIVEMQ_CLIENT_CERT
key: $ACTIVEMQ_CLIENT_KEY
capath: $ACTIVEMQ_CAPATH
[messaging]
destination: $destination
path: $work/$name/outgoing
[logging]
level: WARN
EOF
  "$bin/examples/send-bench-consumer" "$destination" "$messages" >"$work/$name.consumer" &
  consumer=$!
  for _ in $(seq 1 100); do grep -q ready "$work/$name.consumer" && break; sleep 0.1; done
  before=$(ticks "$broker_pid")
  /usr/bin/time -v -o "$work/$name.time" "$bin/ssmsend" -c "$work/$name.cfg"
  after=$(ticks "$broker_pid")
  wait "$consumer"
  awk -v a="$before" -v b="$after" -v hz="$(getconf CLK_TCK)" -v n="$messages" \
    'BEGIN { printf "%.2f", (b - a) * 1000 / hz / n }' >"$work/$name.broker"
}
received() { sed -n 's/^received=\([0-9]*\) distinct=\([0-9]*\)$/\1 received, \2 distinct/p' "$1"; }
if $wan; then
  # shellcheck source=scripts/lib/bench-wan.sh
  . scripts/lib/bench-wan.sh
  exit 0
fi
stomp_run warmup
stomp_run stomp

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

rate() { awk -v n="$messages" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
row() { # LABEL TIMEFILE PEER_CPU TARGET
  local w
  w=$(wall "$2")
  printf '%-32s %8s %7s %12s %13s %14s  %s\n' "$1" "$w" "$(rate "$w")" "$(rss_mb "$2")" \
    "$(cpu_ms "$2")" "$3" "$4"
}
echo
echo "ssmsend, $messages messages of $records_per_message cloud records (~$size bytes each), $(nproc) cores;"
# The CPU decides most of the signing cost: OpenSSL's RSA-2048 path for
# AVX512-IFMA (Ice Lake, Zen 4 and later) signs about twice as fast as its
# MULX/ADX one, and RSA is most of ssmsend's CPU per message.
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
if grep -qw avx512ifma /proc/cpuinfo; then ifma=yes; else ifma=no; fi
echo "CPU: $cpu, AVX512-IFMA: $ifma${OPENSSL_ia32cap:+ (OPENSSL_ia32cap=$OPENSSL_ia32cap)}"
echo "RSA-2048 signatures here: $(openssl speed -seconds 1 rsa2048 2>/dev/null | awk '/^rsa 2048/ { print $6 }') per second on one core (openssl speed)"
printf '%-32s %8s %7s %12s %13s %14s  %s\n' transport "wall s" "msg/s" "peak RSS MB" "ms CPU/msg" "peer ms/msg" target
row "ActiveMQ STOMP+SSL" "$work/stomp.time" "$(cat "$work/stomp.broker")" ">= 1000 msg/s, < 30 MB"
row "ActiveMQ STOMP+SSL, cold broker" "$work/warmup.time" "$(cat "$work/warmup.broker")" "(warm-up, untimed)"
row "AMS double" "$work/ams.time" "-" ">= 500 msg/s, < 30 MB"
echo "reference, APEL ssmsend 4.0.0: 45 msg/s to ActiveMQ (plain STOMP), 16 msg/s to an AMS double, 48 MB peak RSS"
echo "ActiveMQ consumer: $(received "$work/stomp.consumer") (warm-up: $(received "$work/warmup.consumer")); AMS double: $stats"

# A rate from a run that lost, duplicated or mis-signed anything means nothing.
complete=true
for name in warmup stomp; do
  grep -qx "received=$messages distinct=$messages" "$work/$name.consumer" || complete=false
done
case $stats in
  "$messages stored, 0 duplicates, signatures verified: True") ;;
  *) complete=false ;;
esac
if ! $complete; then
  echo "bench-send: FAILED: a message was lost or duplicated, or the AMS double found a bad signature (see above)" >&2
  exit 1
fi
