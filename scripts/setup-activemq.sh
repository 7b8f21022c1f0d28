#!/usr/bin/env bash
# Runs the ActiveMQ broker the STOMP tests talk to: our own instance under
# target/activemq (never the Debian system service), bound to 127.0.0.1 only,
# with a plain STOMP connector and a STOMP+TLS connector that requires a client
# certificate from a test CA generated here. Idempotent: reuses a running
# instance and a still-valid PKI. Tests read target/activemq/env.
#
#   scripts/setup-activemq.sh         install if needed, start if not running
#   scripts/setup-activemq.sh stop    stop our instance
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base=$root/target/activemq
pki=$base/pki
conf=$base/conf
data=$base/data
pidfile=$base/activemq.pid
envfile=$base/env
store_password=activemq-test
# shellcheck source=scripts/lib/pki.sh
. scripts/lib/pki.sh
amq_home=/usr/share/activemq

log() { echo "setup-activemq: $*" >&2; }

# Our broker's pid, if the pid file names a live process started with our config.
running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$conf/activemq.xml" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_broker() {
  local pid
  if pid=$(running_pid); then
    log "stopping ActiveMQ (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 100); do
      [ -d "/proc/$pid" ] || break
      sleep 0.2
    done
    if [ -d "/proc/$pid" ]; then kill -9 "$pid"; fi
  fi
  rm -f "$pidfile" "$envfile"
}

if [ "${1:-}" = stop ]; then
  stop_broker
  exit 0
fi

if [ ! -r "$amq_home/bin/activemq.jar" ]; then
  log "installing the Debian package activemq"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends activemq >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends activemq >/dev/null
  fi
fi

# --- test PKI (regenerated when missing or about to expire) -----------------
pki_valid() {
  local f
  for f in ca.pem broker.pem client.pem client.key other-ca.pem rogue-client.pem \
    rogue-client.key broker.p12 truststore.p12; do
    [ -s "$pki/$f" ] || return 1
  done
  for f in ca.pem broker.pem client.pem; do
    openssl x509 -in "$pki/$f" -noout -checkend 86400 >/dev/null || return 1
  done
  [ -n "$(ls -A "$pki/certificates" 2>/dev/null)" ] || return 1 # the capath
}

pki_changed=false
if ! pki_valid; then
  log "generating the test PKI in $pki"
  rm -rf "$pki"
  for ca in ca other-ca; do
    pki_ca "$pki" "$ca" "/DC=org/DC=example/CN=cloud-accounting test $ca" 30
  done
  pki_issue "$pki" broker "/DC=org/DC=example/CN=localhost" ca 30 \
    "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth
basicConstraints=CA:false"
  pki_issue "$pki" client "/DC=org/DC=example/CN=client.example.org" ca 30 \
    "extendedKeyUsage=clientAuth,serverAuth
basicConstraints=CA:false"
  pki_issue "$pki" rogue-client "/DC=org/DC=example/CN=rogue.example.org" other-ca 30 \
    "extendedKeyUsage=clientAuth
basicConstraints=CA:false"
  # The broker's key store (key + chain) and trust store (only our test CA).
  openssl pkcs12 -export -name broker -in "$pki/broker.pem" -inkey "$pki/broker.key" \
    -certfile "$pki/ca.pem" -passout "pass:$store_password" -out "$pki/broker.p12"
  keytool -importcert -noprompt -alias test-ca -file "$pki/ca.pem" \
    -keystore "$pki/truststore.p12" -storetype PKCS12 -storepass "$store_password" >/dev/null 2>&1
  # A hashed CA directory, like /etc/grid-security/certificates.
  pki_capath "$pki" ca
  pki_changed=true
fi

if $pki_changed; then
  stop_broker # a running broker still holds the old key store
fi

# --- the broker ---------------------------------------------------------------
if pid=$(running_pid) && [ -f "$envfile" ]; then
  # shellcheck disable=SC1090
  . "$envfile"
  if port_open "$ACTIVEMQ_STOMP_PORT" && port_open "$ACTIVEMQ_STOMP_SSL_PORT" &&
    port_open "${ACTIVEMQ_STOMP_SMALL_FRAMES_PORT:-0}"; then
    exit 0
  fi
  stop_broker
elif running_pid >/dev/null; then
  stop_broker
fi

# Fixed high ports when free, else any free ones (another worktree's broker may
# hold the defaults); the env file tells the tests which.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
stomp_port=26613
ssl_port=26612
if port_open "$stomp_port"; then stomp_port=$(free_port); fi
if port_open "$ssl_port"; then ssl_port=$(free_port); fi
small_port=26614
if port_open "$small_port"; then small_port=$(free_port); fi

mkdir -p "$conf" "$data" "$base/tmp"
sed -e "s|@STOMP_PORT@|$stomp_port|g" -e "s|@STOMP_SSL_PORT@|$ssl_port|g" \
  -e "s|@STOMP_SMALL_FRAMES_PORT@|$small_port|g" \
  -e "s|@PKI_DIR@|$pki|g" -e "s|@DATA_DIR@|$data|g" \
  -e "s|@STORE_PASSWORD@|$store_password|g" \
  tests/fixtures/activemq/activemq.xml.in >"$conf/activemq.xml"
cp tests/fixtures/activemq/log4j.properties "$conf/log4j.properties"

log "starting ActiveMQ on 127.0.0.1:$stomp_port (stomp), 127.0.0.1:$ssl_port (stomp+ssl) and 127.0.0.1:$small_port (stomp, frames up to 100 kB)"
started=$(date +%s%N)
# setsid: the broker must outlive this script and the test run that started it.
setsid java -Xms64m -Xmx256m -XX:+UseSerialGC \
  -Djava.net.preferIPv4Stack=true \
  -Dorg.apache.activemq.UseDedicatedTaskRunner=false \
  --add-reads=java.xml=java.logging \
  --add-opens java.base/java.security=ALL-UNNAMED \
  --add-opens java.base/java.net=ALL-UNNAMED \
  --add-opens java.base/java.lang=ALL-UNNAMED \
  --add-opens java.base/java.util=ALL-UNNAMED \
  --add-opens java.naming/javax.naming.spi=ALL-UNNAMED \
  --add-opens java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED \
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED \
  --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED \
  -Dlog4j.configuration="file:$conf/log4j.properties" \
  -Dactivemq.classpath="$conf" \
  -Dactivemq.home="$amq_home" \
  -Dactivemq.base="$base" \
  -Dactivemq.conf="$conf" \
  -Dactivemq.data="$data" \
  -Djava.io.tmpdir="$base/tmp" \
  -jar "$amq_home/bin/activemq.jar" start "xbean:file:$conf/activemq.xml" \
  >"$data/console.log" 2>&1 </dev/null &
echo $! >"$pidfile"

for _ in $(seq 1 600); do
  if port_open "$stomp_port" && port_open "$ssl_port" && port_open "$small_port"; then break; fi
  if ! running_pid >/dev/null; then
    log "ActiveMQ exited during startup; last log lines:"
    tail -n 30 "$data/console.log" "$data/activemq.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.2
done
if ! { port_open "$stomp_port" && port_open "$ssl_port" && port_open "$small_port"; }; then
  log "ActiveMQ did not open its ports within 120 s; last log lines:"
  tail -n 30 "$data/console.log" "$data/activemq.log" >&2 2>/dev/null || true
  stop_broker
  exit 1
fi
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
log "ActiveMQ up in ${elapsed_ms} ms"

cat >"$envfile.tmp" <<EOF
ACTIVEMQ_STOMP_PORT=$stomp_port
ACTIVEMQ_STOMP_SSL_PORT=$ssl_port
ACTIVEMQ_STOMP_SMALL_FRAMES_PORT=$small_port
ACTIVEMQ_PKI_DIR=$pki
ACTIVEMQ_CA_CERT=$pki/ca.pem
ACTIVEMQ_CAPATH=$pki/certificates
ACTIVEMQ_CLIENT_CERT=$pki/client.pem
ACTIVEMQ_CLIENT_KEY=$pki/client.key
ACTIVEMQ_OTHER_CA_CERT=$pki/other-ca.pem
ACTIVEMQ_ROGUE_CLIENT_CERT=$pki/rogue-client.pem
ACTIVEMQ_ROGUE_CLIENT_KEY=$pki/rogue-client.key
ACTIVEMQ_STARTUP_MS=$elapsed_ms
EOF
mv "$envfile.tmp" "$envfile"
