# The --wan mode of scripts/bench-send.sh (sourced by it, after its setup and
# helpers): 30 ms per AMS publish request, 30 ms each way to ActiveMQ.
latency_ms=30
host_dn=$(openssl x509 -in "$ACTIVEMQ_CLIENT_CERT" -noout -subject -nameopt compat | sed 's/^subject=//')
helpers=()
trap 'for p in "${helpers[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# ams_run NAME [SENDER_OPTION_LINE]: one AMS double (30 ms per publish) per run,
# so its stats count that run only; leaves NAME.time and NAME.stats.
ams_run() {
  local name=$1 extra=${2:-} double
  "$bin/examples/ams-double" --ca "$pki/ca.pem" --cert "$pki/broker.pem" --key "$pki/broker.key" \
    --token bench-token --verify-ca "$pki/ca.pem" --allowed-dn "$host_dn" \
    --latency-ms "$latency_ms" >"$work/$name.ports" &
  double=$!
  helpers+=("$double")
  for _ in $(seq 1 100); do [ -s "$work/$name.ports" ] && break; sleep 0.1; done
  aport() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$work/$name.ports"; }
  fill "$work/$name/outgoing"
  size=$(first_size "$work/$name/outgoing")
  cat >"$work/$name.cfg" <<CFG
[sender]
protocol: AMS
ams_port: $(aport ams_port)
ams_authn_port: $(aport authn_port)
$extra
[broker]
host: 127.0.0.1
[certificates]
certificate: $ACTIVEMQ_CLIENT_CERT
key: $ACTIVEMQ_CLIENT_KEY
capath: $ACTIVEMQ_CAPATH
[messaging]
ams_project: accounting
destination: eu-egi-cloud-accounting
path: $work/$name/outgoing
[logging]
level: WARN
CFG
  /usr/bin/time -v -o "$work/$name.time" "$bin/ssmsend" -c "$work/$name.cfg"
  python3 -c 'import json, sys, urllib.request
s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/stats" % sys.argv[1]))
print("%d stored, %d duplicates, signatures verified: %s" % (s["messages"], s["duplicates"], s["signatures"]["all_verified"]))' \
    "$(aport admin_port)" >"$work/$name.stats"
  kill "$double" 2>/dev/null || true
}
# 1 message per request is SSM's way; the sender's defaults batch.
ams_run ams-single "ams_max_messages_per_request: 1"
ams_run ams-batched

# Broker warm-up on loopback (untimed, see the default mode), then through the proxy.
stomp_run warmup
"$bin/examples/delay-proxy" "127.0.0.1:$ACTIVEMQ_STOMP_SSL_PORT" "$latency_ms" >"$work/proxy.port" &
helpers+=("$!")
for _ in $(seq 1 100); do [ -s "$work/proxy.port" ] && break; sleep 0.1; done
stomp_port=$(sed -n 's/^port=//p' "$work/proxy.port")
stomp_run stomp-wan

rate() { awk -v n="$messages" -v s="$1" 'BEGIN { printf "%.1f", n / s }'; }
row() { # LABEL TIMEFILE TARGET
  local w
  w=$(wall "$2")
  printf '%-40s %8s %7s %12s  %s\n' "$1" "$w" "$(rate "$w")" "$(rss_mb "$2")" "$3"
}
echo
echo "ssmsend over a simulated WAN ($latency_ms ms), $messages messages of $records_per_message cloud records (~$size bytes each), $(nproc) cores"
printf '%-40s %8s %7s %12s  %s\n' transport "wall s" "msg/s" "peak RSS MB" "target (APEL ssmsend 4.0.0 here)"
row "AMS, $latency_ms ms/request, 1 msg/request" "$work/ams-single.time" "- (15.7 msg/s)"
row "AMS, $latency_ms ms/request, batched" "$work/ams-batched.time" ">= 800 msg/s (15.7 msg/s)"
row "ActiveMQ STOMP+SSL, $latency_ms ms each way" "$work/stomp-wan.time" ">= 500 msg/s (31 msg/s plain STOMP, loopback)"
echo "AMS double: 1 msg/request: $(cat "$work/ams-single.stats"); batched: $(cat "$work/ams-batched.stats")"
echo "ActiveMQ consumer: $(received "$work/stomp-wan.consumer") (warm-up: $(received "$work/warmup.consumer"))"

complete=true
grep -qx "received=$messages distinct=$messages" "$work/stomp-wan.consumer" || complete=false
for name in ams-single ams-batched; do
  grep -qx "$messages stored, 0 duplicates, signatures verified: True" "$work/$name.stats" || complete=false
done
if ! $complete; then
  echo "bench-send --wan: FAILED: a message was lost or duplicated, or the AMS double found a bad signature (see above)" >&2
  exit 1
fi
