#!/usr/bin/env bash
# The container images, checked for real where a Docker engine runs (called
# by scripts/test.sh; skipped, saying so, only when `docker info` fails):
#   1. scripts/build-static.sh: static, stripped binaries in dist/.
#   2. Both images built offline from dist/ (Dockerfile.* --target offline).
#   3. Each image: at most 15 MB, a numeric non-root USER, nothing in its
#      layers but the binary, the CA bundle and the empty spool mount points
#      (owned by that user, which new named volumes inherit), answers --version.
#   3b. The wrapper scripts and docker-compose.yml run the images with the
#      appliance's mounts (compose: the host's spools), take DOCKER_RUN_OPTS,
#      never pull an image that is not here, and the wrappers refuse
#      root-owned spools and an unreadable host key, naming the fix.
#   4. Inside the images (FROM scratch: no libc, no NSS modules), the programs
#      themselves resolve names through /etc/hosts (--add-host) and through DNS
#      (a loopback DNS server) and complete verified TLS handshakes:
#      caso-extract with Keystone (the OpenStack simulator behind a TLS
#      terminator; [keystone_auth] cafile), refusing it with the image's own
#      CA bundle; ssmsend with the AMS double (capath), every signature
#      verified, every spooled record delivered once.
#   5. docker-compose.yml end to end in daemon mode (host network): records
#      extracted in one container reach the AMS double, signature-verified,
#      through the other, starting from the Python-era lastrun files already
#      in the host's /var/spool/caso; SIGTERM (compose stop) exits 0; `down`
#      then `up` advances every lastrun, loses and duplicates nothing.
# Nothing is pulled (--pull never everywhere) and containers talk only to
# 127.0.0.0/8: their resolv.conf names a loopback DNS server.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "test-images: SKIPPED: no Docker engine here (docker info failed); the image checks did not run" >&2
  exit 0
fi

max_bytes=15000000
uid=65532
extract_img=cloud-accounting/caso-extract:test
send_img=cloud-accounting/ssmsend:test
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "test-images: FAIL: $*" >&2
  exit 1
}
pass() { echo "test-images: ok: $*" >&2; }

# 1. Static binaries.
scripts/build-static.sh

# 2. Images from dist/. The legacy builder and BuildKit both accept this.
build_image() { # TAG CONTEXT [docker build options...]
  local tag=$1 ctx=$2
  shift 2
  if ! docker build --pull=false -t "$tag" "$@" "$ctx" >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    fail "docker build -t $tag $* $ctx"
  fi
}
build_image "$extract_img" . -f Dockerfile.extract --target offline
build_image "$send_img" . -f Dockerfile.send --target offline

# 3. Size, user, contents, --version.
check_image() { # TAG PROGRAM SPOOL-DIR...
  local img=$1 prog=$2 size user out want
  shift 2
  size=$(docker image inspect -f '{{.Size}}' "$img")
  [ "$size" -le "$max_bytes" ] || fail "$img is $size bytes, more than $max_bytes"
  user=$(docker image inspect -f '{{.Config.User}}' "$img")
  [ "$user" = "$uid:$uid" ] || fail "$img: USER is '$user', not the numeric non-root $uid:$uid"
  # Nothing else in the image: the binary and the CA bundle (root-owned), and
  # the spool mount points (empty, owned by the container user).
  docker image save -o "$work/image.tar" "$img"
  out=$(python3 - "$work/image.tar" <<'EOF'
import io, json, sys, tarfile
outer = tarfile.open(sys.argv[1])
manifest = json.load(outer.extractfile("manifest.json"))
entries = {}
for layer in manifest[0]["Layers"]:
    with tarfile.open(fileobj=io.BytesIO(outer.extractfile(layer).read())) as t:
        for m in t.getmembers():
            entries[m.name] = m
files = [f"{n}:{m.uid}" for n, m in entries.items() if not m.isdir()]
owned = [f"{n}/:{m.uid}" for n, m in entries.items() if m.isdir() and m.uid != 0]
print(" ".join(sorted(files + owned)))
EOF
)
  rm -f "$work/image.tar"
  want="etc/ssl/certs/ca-certificates.crt:0 usr/local/bin/$prog:0"
  for d in "$@"; do want="$want var/spool/$d/:$uid"; done
  [ "$out" = "$want" ] || fail "$img holds '$out', expected exactly '$want'"
  out=$(docker run --pull never --rm --network none "$img" --version)
  [ "$out" = "$prog $version" ] || fail "$img --version said '$out', not '$prog $version'"
  pass "$img: $size bytes, USER $user, holds $want, '$out'"
}
check_image "$extract_img" caso-extract apel caso
check_image "$send_img" ssmsend apel

# A fresh named volume (for sites that mount one instead of the host's
# spool) takes the mount point's owner.
vol=cloud-accounting-test-$$
docker run --pull never --rm --network none -v "$vol:/var/spool/apel" "$send_img" --version >/dev/null
owner=$(stat -c %u:%g "$(docker volume inspect -f '{{.Mountpoint}}' "$vol")")
docker volume rm "$vol" >/dev/null
[ "$owner" = "$uid:$uid" ] || fail "a new named volume at /var/spool/apel is owned by $owner, not $uid:$uid"
pass "a new named volume at /var/spool/apel is owned by $uid:$uid"

# The appliance wrappers (scripts/caso-extract.sh, scripts/ssm-send.sh) and
# docker-compose.yml, on a fake host tree: their mounts, the read-only root,
# the ownership checks. --print-config reads every mounted configuration.
host=$work/host
mkdir -p "$host/etc/caso" "$host/etc/apel" "$host/grid-security" "$host/spool/caso" "$host/spool/apel/outgoing"
cp examples/caso.conf "$host/etc/caso/caso.conf"
cp tests/fixtures/config/voms.json "$host/etc/caso/voms.json"
cp examples/sender.cfg "$host/etc/apel/sender.cfg"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=host.test \
  -keyout "$host/grid-security/hostkey.pem" -out "$host/grid-security/hostcert.pem" 2>/dev/null
chmod 0600 "$host/grid-security/hostkey.pem"
chmod -R a+rX "$host/etc" "$host/grid-security/hostcert.pem"
export CASO_EXTRACT_IMAGE=${extract_img%:*} SSMSEND_IMAGE=${send_img%:*} TAG=test \
  CASO_CONF=$host/etc/caso/caso.conf VOMS_JSON=$host/etc/caso/voms.json CASO_SPOOL=$host/spool/caso \
  APEL_SPOOL=$host/spool/apel SENDER_CFG=$host/etc/apel/sender.cfg GRID_SECURITY=$host/grid-security
expect_refusal() { # WHAT-IN-MESSAGE COMMAND...
  local want=$1 rc=0
  shift
  "$@" >"$work/wrapper.out" 2>&1 || rc=$?
  if [ "$rc" != 1 ] || ! grep -qF "$want" "$work/wrapper.out"; then
    fail "$* should refuse with '$want' (exit $rc): $(cat "$work/wrapper.out")"
  fi
}
# Root-owned spools, as the Python images left them.
expect_refusal "chown -R 65532:65532" scripts/caso-extract.sh --print-config
chown -R "$uid:$uid" "$host/spool"
chown 0:0 "$host/spool/apel/outgoing"
expect_refusal "$host/spool/apel/outgoing is not owned" scripts/caso-extract.sh --print-config
chown "$uid:$uid" "$host/spool/apel/outgoing"
scripts/caso-extract.sh --print-config >"$work/wrapper.out" 2>&1 || fail "caso-extract.sh --print-config: $(cat "$work/wrapper.out")"
grep -q '^site_name = EXAMPLE-SITE .*/etc/caso/caso.conf:' "$work/wrapper.out" || fail "caso-extract.sh did not read caso.conf: $(cat "$work/wrapper.out")"
# A root-owned 0600 host key, as sites have it.
expect_refusal "hostkey.pem is not readable by uid 65532" scripts/ssm-send.sh --print-config
chown "$uid" "$host/grid-security/hostkey.pem"
scripts/ssm-send.sh --print-config >"$work/wrapper.out" 2>&1 || fail "ssm-send.sh --print-config: $(cat "$work/wrapper.out")"
grep -q '^protocol = AMS .*/etc/apel/sender.cfg:' "$work/wrapper.out" || fail "ssm-send.sh did not read sender.cfg: $(cat "$work/wrapper.out")"
# DOCKER_RUN_OPTS reaches docker run (a label is harmless and visible).
DOCKER_RUN_OPTS="--label cloud-accounting.test=$$ --network none" scripts/caso-extract.sh --version >"$work/wrapper.out" 2>&1 ||
  fail "caso-extract.sh with DOCKER_RUN_OPTS: $(cat "$work/wrapper.out")"
DOCKER_RUN_OPTS="--network none" scripts/ssm-send.sh --version >"$work/wrapper.out" 2>&1 ||
  fail "ssm-send.sh with DOCKER_RUN_OPTS: $(cat "$work/wrapper.out")"
rc=0
DOCKER_RUN_OPTS="--network host --no-such-option" scripts/caso-extract.sh --version >"$work/wrapper.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q 'no-such-option' "$work/wrapper.out" ||
  fail "caso-extract.sh did not pass DOCKER_RUN_OPTS on to docker run: $(cat "$work/wrapper.out")"
# A tag that is not here is an error, never a pull from a public registry.
for wrapper in scripts/caso-extract.sh scripts/ssm-send.sh; do
  rc=0
  TAG=absent-$$ "$wrapper" --version >"$work/wrapper.out" 2>&1 || rc=$?
  [ "$rc" != 0 ] || fail "$wrapper ran an image tagged absent-$$"
  if grep -qiE 'unable to find image|pulling' "$work/wrapper.out"; then
    fail "$wrapper tried to pull an image: $(cat "$work/wrapper.out")"
  fi
done
pass "the wrapper scripts mount what the appliance's did, pass DOCKER_RUN_OPTS on, never pull, refuse root-owned spools and an unreadable host key"

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} = 0 ]; then
  echo "test-images: no docker compose here: docker-compose.yml is checked only statically (tests/ops/deploy_manifests.rs)" >&2
else
  project=cloud-accounting-test-$$
  rc=0
  {
    "${compose[@]}" -p "$project" run --rm -T caso-extract --config-file /etc/caso/caso.conf --print-config &&
      "${compose[@]}" -p "$project" run --rm -T ssmsend --config /etc/apel/sender.cfg --print-config
  } >"$work/compose.out" 2>&1 || rc=$?
  "${compose[@]}" -p "$project" down -v >/dev/null 2>&1 || true
  [ "$rc" = 0 ] || fail "docker-compose run --print-config: $(cat "$work/compose.out")"
  if ! grep -q '^site_name = EXAMPLE-SITE' "$work/compose.out" || ! grep -q '^protocol = AMS' "$work/compose.out"; then
    fail "the compose services did not read their mounted configuration: $(cat "$work/compose.out")"
  fi
  pass "docker-compose.yml: both services start read-only as $uid with their configuration mounted"
  # A tag that is not here: docker-compose builds it from the Dockerfile
  # (here the offline stage) and never pulls it.
  rc=0
  TAG=absent-$$ IMAGE_BUILD_TARGET=offline "${compose[@]}" -p "$project" run --rm -T ssmsend --version \
    >"$work/compose.out" 2>&1 || rc=$?
  "${compose[@]}" -p "$project" down >/dev/null 2>&1 || true
  docker rmi "${SSMSEND_IMAGE}:absent-$$" "${CASO_EXTRACT_IMAGE}:absent-$$" >/dev/null 2>&1 || true
  if grep -qiE 'pulling|unable to find image|pull access' "$work/compose.out"; then
    fail "docker-compose tried to pull an image: $(cat "$work/compose.out")"
  fi
  [ "$rc" = 0 ] && grep -q "^ssmsend $version" "$work/compose.out" ||
    fail "docker-compose with a missing tag did not build and run it (exit $rc): $(cat "$work/compose.out")"
  pass "docker-compose.yml: a missing image is built, never pulled"
fi
unset CASO_EXTRACT_IMAGE SSMSEND_IMAGE TAG CASO_CONF VOMS_JSON CASO_SPOOL APEL_SPOOL SENDER_CFG GRID_SECURITY

# 4. Names and TLS inside the image (FROM scratch: no libc resolver, no NSS),
# with the programs themselves: caso-extract to Keystone and ssmsend to AMS,
# each by host name over verified TLS.
# A test grid PKI: CA (also as a capath), a server certificate for every name
# the containers use, the host certificate that signs and authenticates.
pki=$work/pki
host_dn="/C=XX/O=Cloud Accounting Image Test/CN=host.image.test"
# shellcheck source=scripts/lib/pki.sh
. scripts/lib/pki.sh
pki_ca "$pki" ca /CN=image-test-ca 2
pki_issue "$pki" server /CN=keystone.test ca 2 \
  'subjectAltName=DNS:localhost,DNS:keystone.test,DNS:keystone.dns.test,DNS:ams.test,DNS:ams.dns.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
pki_issue "$pki" host "$host_dn" ca 2 \
  'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth,emailProtection'
pki_capath "$pki" ca
# /etc/grid-security as a site has it, the key readable only by the
# container user (scripts/ssm-send.sh asks for the same).
grid=$work/grid-security
mkdir -p "$grid"
cp -r "$pki/certificates" "$grid/certificates"
cp "$pki/host.pem" "$grid/hostcert.pem"
cp "$pki/host.key" "$grid/hostkey.pem"
chmod 0644 "$pki/ca.pem" "$grid/hostcert.pem" "$grid/certificates"/*
chmod 0600 "$grid/hostkey.pem"
chown "$uid:$uid" "$grid/hostkey.pem"
chmod -R a+rX "$grid"

# The OpenStack simulator (plain HTTP on 127.0.0.1) behind a TLS terminator,
# and the AMS double (TLS itself), which checks every message's signature.
cargo build --locked --quiet --example openstack-sim --example ams-double
examples=${CARGO_TARGET_DIR:-target}/debug/examples
"$examples/openstack-sim" --write-voms-json "$work/voms.json" --write-manifest "$work/manifest.json" \
  >"$work/sim.ready" 2>"$work/sim.log" &
pids+=($!)
wait_for() { # FILE WHAT
  for _ in $(seq 1 200); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  fail "$2 did not start: $(cat "$1" 2>/dev/null)"
}
wait_for "$work/sim.ready" openstack-sim
sim_port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"].rsplit(":",1)[1])' "$work/sim.ready")
python3 tests/images/tls_proxy.py "$pki/server.pem" "$pki/server.key" "$work/tls.log" "$sim_port" \
  >"$work/tls.ready" 2>"$work/tls.err" &
pids+=($!)
wait_for "$work/tls.ready" tls_proxy.py
port=$(awk '/^port /{print $2}' "$work/tls.ready")
start_ams() { # NAME: starts an AMS double, sets NAME_port, NAME_authn, NAME_admin
  "$examples/ams-double" --ca "$pki/ca.pem" --cert "$pki/server.pem" --key "$pki/server.key" \
    --token "image-test-token-$1" --verify-ca "$pki/ca.pem" --allowed-dn "$host_dn" \
    >"$work/$1.ready" 2>"$work/$1.log" &
  pids+=($!)
  wait_for "$work/$1.ready" "ams-double ($1)"
  read -r "${1}_port" "${1}_authn" "${1}_admin" < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["ams_port"], r["authn_port"], r["admin_port"])' "$work/$1.ready")
}
start_ams ams

# DNS: a loopback server answers the *.dns.test names; resolv.conf points
# there so no lookup ever leaves the machine. Port 53 needs root.
dns_addr=127.0.0.77
echo "nameserver $dns_addr" >"$work/resolv.conf"
keystone_dns=keystone.test ams_dns=ams.test
if [ "$(id -u)" = 0 ]; then
  python3 tests/images/dns_server.py "$dns_addr" "$work/dns.log" \
    keystone.dns.test=127.0.0.1 ams.dns.test=127.0.0.1 >"$work/dns.ready" 2>"$work/dns.err" &
  pids+=($!)
  wait_for "$work/dns.ready" dns_server.py
  keystone_dns=keystone.dns.test ams_dns=ams.dns.test
else
  echo "test-images: not root: DNS-server lookups are not tested (UDP port 53); /etc/hosts lookups are" >&2
fi

run_in_image() { # IMAGE [docker run options...] -- ARGS...
  local img=$1
  shift
  local opts=()
  while [ "$1" != -- ]; do
    opts+=("$1")
    shift
  done
  shift
  docker run --pull never --rm --network host --read-only \
    --add-host keystone.test:127.0.0.1 --add-host ams.test:127.0.0.1 \
    -v "$work/resolv.conf:/etc/resolv.conf:ro" "${opts[@]}" "$img" "$@"
}

# Configuration as sites mount it: /etc/caso, /etc/apel, /etc/grid-security.
etc=$work/etc
mkdir -p "$etc/caso" "$etc/apel" "$work/spool-caso" "$work/spool-apel"
chown "$uid:$uid" "$work/spool-caso" "$work/spool-apel"
cp "$pki/ca.pem" "$etc/caso/keystone-ca.pem"
cp "$work/voms.json" "$etc/caso/voms.json"
caso_conf() { # KEYSTONE-HOST [extra keystone_auth lines]
  cat <<EOF
[DEFAULT]
site_name = IMAGE-TEST
service_name = IMAGE-TEST
messengers = ssm
mapping_file = /etc/caso/voms.json

[keystone_auth]
auth_type = password
auth_url = https://$1:$port/identity/v3
username = admin
password = secret
user_domain_name = Default
project_domain_name = Default
${2:-}
EOF
}
sender_cfg() { # AMS-HOST PORT AUTHN-PORT
  cat <<EOF
[sender]
protocol: AMS
ams_port: $2
ams_authn_port: $3

[broker]
host: $1

[certificates]
certificate: /etc/grid-security/hostcert.pem
key: /etc/grid-security/hostkey.pem
capath: /etc/grid-security/certificates

[messaging]
ams_project: accounting
destination: eu-egi-cloud-accounting
path: /var/spool/apel/outgoing/openstack
path_type: dirq

[logging]
level: INFO
console: true
EOF
}
caso_conf keystone.test "cafile = /etc/caso/keystone-ca.pem" >"$etc/caso/hosts.conf"
caso_conf "$keystone_dns" "cafile = /etc/caso/keystone-ca.pem" >"$etc/caso/dns.conf"
caso_conf keystone.test >"$etc/caso/system-bundle.conf"
sender_cfg "$ams_dns" "$ams_port" "$ams_authn" >"$etc/apel/sender.cfg"
chmod -R a+rX "$etc"
extract_in_image() { # CONF [caso-extract args...]
  local conf=$1
  shift
  run_in_image "$extract_img" -v "$etc/caso:/etc/caso:ro" \
    -v "$work/spool-caso:/var/spool/caso" -v "$work/spool-apel:/var/spool/apel" \
    -- --config-file "/etc/caso/$conf" "$@"
}
read -r from to < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["period"]["from"], m["period"]["to"])' "$work/manifest.json")

# 4a. caso-extract: Keystone by an /etc/hosts name (a dry run: nothing
# written), then by a DNS name (records into the spool).
: >"$work/tls.log"
rc=0
extract_in_image hosts.conf --dry-run --extract-from "$from" --extract-to "$to" >"$work/extract-hosts.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "caso-extract in the image against https://keystone.test:$port (exit $rc): $(cat "$work/extract-hosts.out")"
grep -q '^handshake keystone.test TLSv1' "$work/tls.log" || fail "caso-extract did not come through TLS as keystone.test: $(cat "$work/tls.log")"
grep -q '^APEL-cloud-message: v0.4' "$work/extract-hosts.out" || fail "the dry run printed no cloud message: $(cat "$work/extract-hosts.out")"
if grep -q '^keystone.test ' "$work/dns.log" 2>/dev/null; then
  fail "keystone.test (an --add-host name) was asked of DNS: /etc/hosts should answer it"
fi
pass "caso-extract in the image: Keystone as keystone.test (/etc/hosts) over TLS verified with [keystone_auth] cafile"
rc=0
extract_in_image dns.conf --extract-from "$from" --extract-to "$to" >"$work/extract-dns.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "caso-extract in the image against https://$keystone_dns:$port (exit $rc): $(cat "$work/extract-dns.out")"
grep -q "^handshake $keystone_dns TLSv1" "$work/tls.log" || fail "caso-extract did not come through TLS as $keystone_dns"
[ "$keystone_dns" = keystone.test ] || grep -q '^keystone.dns.test 1$' "$work/dns.log" ||
  fail "keystone.dns.test was not asked of the DNS server: $(cat "$work/dns.log")"
spooled=$(python3 tests/images/apel_count.py spool "$work/spool-apel/outgoing")
spooled_messages=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["messages"])' "$spooled")
[ "$spooled_messages" -gt 0 ] || fail "caso-extract wrote nothing to /var/spool/apel/outgoing"
pass "caso-extract in the image: Keystone as $keystone_dns (DNS), $spooled in /var/spool/apel"

# With the image's own CA bundle the test CA is unknown: verification refuses.
rc=0
extract_in_image system-bundle.conf --dry-run --extract-from "$from" --extract-to "$to" >"$work/extract-untrusted.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "caso-extract trusted a server its bundle does not cover (exit $rc): $(cat "$work/extract-untrusted.out")"
grep -q 'certificate verify failed' "$work/extract-untrusted.out" ||
  fail "expected 'certificate verify failed': $(cat "$work/extract-untrusted.out")"
pass "caso-extract in the image: an unknown CA is refused with the image's bundle (certificate verify failed)"

# 4b. ssmsend: the spool caso-extract filled, to the AMS double by name
# (authx509 with the host certificate, then publish), signatures checked.
rc=0
run_in_image "$send_img" -v "$etc/apel/sender.cfg:/etc/apel/sender.cfg:ro" -v "$grid:/etc/grid-security:ro" \
  -v "$work/spool-apel:/var/spool/apel" -- --config /etc/apel/sender.cfg >"$work/send.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "ssmsend in the image to https://$ams_dns:$ams_port (exit $rc): $(cat "$work/send.out")"
[ "$ams_dns" = ams.test ] || grep -q '^ams.dns.test 1$' "$work/dns.log" ||
  fail "ams.dns.test was not asked of the DNS server: $(cat "$work/dns.log")"
received=$(python3 tests/images/apel_count.py ams "$ams_admin")
left=$(python3 tests/images/apel_count.py spool "$work/spool-apel/outgoing")
python3 - "$spooled" "$received" "$left" <<'EOF' || fail "ssmsend in the image: spooled $spooled, the double got $received, left $left"
import json, sys
spooled, got, left = (json.loads(a) for a in sys.argv[1:])
assert got["all_verified"] and got["duplicates"] == 0, got
assert got["received"] == spooled["messages"] == got["messages"], (spooled, got)
assert got["by_type"] == spooled["by_type"], (spooled, got)
assert left["messages"] == 0, left
EOF
pass "ssmsend in the image: AMS as $ams_dns over TLS verified with capath, $received"
echo "test-images: DNS server saw: $(sort -u "$work/dns.log" 2>/dev/null | tr '\n' ';')" >&2
echo "test-images: TLS terminator saw: $(sort -u "$work/tls.log" | tr '\n' ';')" >&2

# 5. docker-compose.yml end to end, as a migrated site runs it (daemon mode,
# the host's spools, host network): the lastrun files the Python cASO left in
# /var/spool/caso are honoured; records extracted in one container reach the
# AMS double, signature-verified, through the other; `down` then `up` again
# loses and duplicates nothing.
if [ ${#compose[@]} = 0 ]; then
  echo "test-images: no docker compose here: the compose end-to-end run is skipped" >&2
else
  start_ams e2e
  e2e=$work/e2e
  mkdir -p "$e2e"
  caso_conf keystone.test "cafile = /etc/caso/keystone-ca.pem" >"$e2e/caso.conf"
  sender_cfg ams.test "$e2e_port" "$e2e_authn" >"$e2e/sender.cfg"
  cp "$pki/ca.pem" "$e2e/keystone-ca.pem"
  chmod -R a+rX "$e2e"
  # The host's spools as a Python-era appliance leaves them (chowned once to
  # the container user): one lastrun per project, in cASO's format, at the
  # start of the simulator's period (a project that is not extracted keeps
  # its file as it is).
  mkdir -p "$e2e/spool/caso" "$e2e/spool/apel"
  python3 - "$work/manifest.json" "$e2e/spool/caso" <<'EOF'
import datetime, json, sys
m = json.load(open(sys.argv[1]))
start = datetime.datetime.fromisoformat(m["period"]["from"].replace("Z", "+00:00"))
for p in m["projects"]:
    with open(f"{sys.argv[2]}/lastrun.{p['id']}", "w") as f:
        f.write(str(start.astimezone(datetime.timezone.utc)))
EOF
  chown -R "$uid:$uid" "$e2e/spool"
  (cd "$e2e/spool/caso" && for f in lastrun.*; do printf '%s %s\n' "$f" "$(cat "$f")"; done) >"$e2e/lastruns.0"
  [ -s "$e2e/lastruns.0" ] || fail "compose: no lastrun files seeded"
  # Host network (the doubles listen on 127.0.0.1 only), the names, the
  # Keystone CA, and ssmsend every 2 s instead of 6 h, first after 5 s
  # instead of 15 min; caso-extract keeps the file's 1 h: one run per `up`.
  # The metrics on a free port of the host's loopback (host network: the
  # file's 0.0.0.0 would be every interface of this machine).
  mport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$e2e/override.yml" <<EOF
services:
  caso-extract:
    network_mode: host
    extra_hosts: ["keystone.test:127.0.0.1"]
    command: ["--config-file", "/etc/caso/caso.conf", "--metrics-listen", "127.0.0.1:$mport", "--interval", "1h"]
    volumes:
      - $e2e/keystone-ca.pem:/etc/caso/keystone-ca.pem:ro
  ssmsend:
    network_mode: host
    extra_hosts: ["ams.test:127.0.0.1"]
    command: ["--config", "/etc/apel/sender.cfg", "--interval", "2s", "--initial-delay", "5s"]
EOF
  project=cloud-accounting-e2e-$$
  dc() {
    CASO_EXTRACT_IMAGE=${extract_img%:*} SSMSEND_IMAGE=${send_img%:*} TAG=test CASO_CONF=$e2e/caso.conf \
      VOMS_JSON=$work/voms.json SENDER_CFG=$e2e/sender.cfg GRID_SECURITY=$grid \
      CASO_SPOOL=$e2e/spool/caso APEL_SPOOL=$e2e/spool/apel \
      "${compose[@]}" -p "$project" -f docker-compose.yml -f "$e2e/override.yml" "$@"
  }
  compose_cleanup() { dc down -v >/dev/null 2>&1 || true; }
  trap 'compose_cleanup; cleanup' EXIT
  extracted_records() { # records spooled by every finished extraction run in LOG (its summary line)
    sed -n 's/.* projects ok, .*[0-9] messages (\([0-9]*\) records) spooled.*/\1/p' "$1" | awk '{s += $1} END {print s + 0}'
  }
  # Waits until caso-extract finished RUNS runs in total and the double holds
  # every record extracted so far.
  wait_delivered() { # RUNS
    local got want runs
    for _ in $(seq 1 240); do
      dc logs --no-color caso-extract >"$e2e/extract.now" 2>&1 || true
      cat "$e2e"/extract.log.* "$e2e/extract.now" >"$e2e/extract.all" 2>/dev/null || true
      runs=$(grep -c 'run done, sleeping' "$e2e/extract.all" || true)
      want=$(extracted_records "$e2e/extract.all")
      got=$(python3 tests/images/apel_count.py ams "$e2e_admin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')
      if [ "$runs" -ge "$1" ] && [ "$got" = "$want" ]; then
        return 0
      fi
      sleep 0.5
    done
    dc logs --no-color >&2 || true
    fail "compose: after 120 s, $runs extraction runs and $got of $want records at the AMS double"
  }
  lastruns() { (cd "$e2e/spool/caso" && for f in lastrun.*; do printf '%s %s\n' "$f" "$(cat "$f")"; done); }
  spool_left() { python3 tests/images/apel_count.py spool "$e2e/spool/apel/outgoing" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])'; }
  stop_and_check_exit() { # LOG-SUFFIX: docker-compose stop (SIGTERM), both exit 0
    local c code
    dc stop >/dev/null 2>&1 || fail "docker-compose stop"
    dc logs --no-color caso-extract >"$e2e/extract.log.$1" 2>&1
    dc logs --no-color ssmsend >"$e2e/send.log.$1" 2>&1
    for c in $(dc ps -q); do
      code=$(docker inspect -f '{{.State.ExitCode}} {{.Name}}' "$c")
      [ "${code%% *}" = 0 ] || fail "compose: ${code#* } exited ${code%% *} on SIGTERM: $(docker logs "$c" 2>&1 | tail -5)"
    done
  }

  dc up -d >"$e2e/up.log" 2>&1 || fail "docker-compose up: $(cat "$e2e/up.log")"
  wait_delivered 1
  # The daemon in the scratch image serves its last run's metrics.
  curl -fsS "http://127.0.0.1:$mport/metrics" >"$e2e/metrics" || fail "compose: no /metrics on 127.0.0.1:$mport"
  grep -q '^caso_extract_last_success_timestamp_seconds{project="' "$e2e/metrics" ||
    fail "compose: /metrics has no last success per project: $(head -20 "$e2e/metrics")"
  pass "docker-compose up: caso-extract's daemon serves /metrics ($(grep -c '^caso_extract_records{' "$e2e/metrics") record series)"
  [ "$(spool_left)" = 0 ] || fail "compose: messages left in the host's /var/spool/apel after delivery"
  lastruns >"$e2e/lastruns.1"
  stop_and_check_exit 1
  # The sender's first run came after the extractor's (--initial-delay).
  first_found=$(sed -n 's/.*Found \([0-9]*\) messages.*/\1/p' "$e2e/send.log.1" | head -n1)
  [ "${first_found:-0}" -gt 0 ] || fail "compose: ssmsend's first run found ${first_found:-no} messages: it ran before caso-extract's first run"
  grep -q 'the first run after the initial delay' "$e2e/send.log.1" || fail "compose: ssmsend did not wait its --initial-delay: $(head -5 "$e2e/send.log.1")"
  if grep -q 'no lastrun file' "$e2e/extract.log.1"; then
    fail "compose: caso-extract did not find the host's lastrun files: $(grep 'no lastrun file' "$e2e/extract.log.1" | head -3)"
  fi
  python3 - "$e2e/lastruns.0" "$e2e/lastruns.1" <<'EOF' || fail "compose: the Python-era lastruns were not honoured: $(cat "$e2e/lastruns.0" "$e2e/lastruns.1")"
import sys
before = dict(l.split(" ", 1) for l in open(sys.argv[1]).read().splitlines())
after = dict(l.split(" ", 1) for l in open(sys.argv[2]).read().splitlines())
assert set(after) == set(before), (before, after)
# Extracted from the Python-era lastrun (no "no lastrun file" above), up to now.
advanced = [p for p in before if after[p] > before[p]]
assert advanced and all(after[p] == before[p] for p in before if p not in advanced), (before, after)
EOF
  pass "docker-compose up: the Python-era lastrun files in the host's /var/spool/caso were honoured ($(wc -l <"$e2e/lastruns.0") there, every extracted project's advanced from it)"
  first=$(python3 tests/images/apel_count.py ams "$e2e_admin")
  pass "docker-compose up: $(extracted_records "$e2e/extract.log.1") records extracted in caso-extract reached the AMS double through ssmsend ($first); SIGTERM: both exit 0"

  # down (containers gone, the host's spools stay), up: a new extraction run
  # from the kept lastruns, every message delivered once.
  dc down >/dev/null 2>&1 || fail "docker-compose down"
  dc up -d >"$e2e/up.log" 2>&1 || fail "docker-compose up (again): $(cat "$e2e/up.log")"
  wait_delivered 2
  [ "$(spool_left)" = 0 ] || fail "compose: messages left in the host's /var/spool/apel after the second delivery"
  lastruns >"$e2e/lastruns.2"
  stop_and_check_exit 2
  final=$(python3 tests/images/apel_count.py ams "$e2e_admin")
  python3 - "$e2e/lastruns.0" "$e2e/lastruns.1" "$e2e/lastruns.2" "$final" <<'EOF' || fail "compose down/up: $(cat "$e2e/lastruns.1" "$e2e/lastruns.2") $final"
import json, sys
seeded = dict(l.split(" ", 1) for l in open(sys.argv[1]).read().splitlines())
before = dict(l.split(" ", 1) for l in open(sys.argv[2]).read().splitlines())
after = dict(l.split(" ", 1) for l in open(sys.argv[3]).read().splitlines())
assert set(after) == set(before), (before, after)
# cASO's format, "YYYY-MM-DD HH:MM:SS+00:00": compares as text. Projects
# that are not extracted keep their seeded file.
extracted = [p for p in before if before[p] != seeded[p]]
assert extracted and all(after[p] > before[p] for p in extracted), (before, after)
got = json.loads(sys.argv[4])
assert got["all_verified"] and got["duplicates"] == 0, got
assert got["received"] == got["messages"], got
EOF
  cat "$e2e"/extract.log.* "$e2e"/send.log.* | grep -E 'ERROR|error:' >&2 && fail "compose: errors in the logs"
  pass "docker-compose down + up: the host's spools kept, lastruns advanced, $(extracted_records <(cat "$e2e"/extract.log.*)) records in all reached the double once each ($final)"
  compose_cleanup
  trap cleanup EXIT
fi

echo "test-images: all image checks passed" >&2
