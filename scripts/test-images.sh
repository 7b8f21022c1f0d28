#!/usr/bin/env bash
# The container images, checked for real where a Docker engine runs (called
# by scripts/test.sh; skipped, saying so, only when `docker info` fails):
#   1. scripts/build-static.sh: static, stripped binaries in dist/.
#   2. Both images built offline from dist/ (Dockerfile.* --target offline).
#   3. Each image: at most 15 MB, a numeric non-root USER, nothing in its
#      layers but the binary, the CA bundle and the empty spool mount points
#      (owned by that user, which new named volumes inherit), answers --version.
#   3b. The wrapper scripts and docker-compose.yml run the images with the
#      appliance's mounts, and the wrappers refuse root-owned spools and an
#      unreadable host key, naming the fix.
#   4. Inside the image (FROM scratch: no libc, no NSS modules), a static build
#      of our network stack (tests/images/probe.rs, built like the programs)
#      resolves names through /etc/hosts (--add-host) and through DNS (a
#      loopback DNS server), completes a verified TLS handshake with the CA
#      bundle at the image's path, and refuses the same server with the
#      image's real bundle (verification is on).
#   5. caso-extract itself against the OpenStack simulator by host name and
#      TLS, once extraction exists (until then this step says it cannot run).
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
probe_img=cloud-accounting/image-probe:test
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  docker image rm -f "$probe_img" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "test-images: FAIL: $*" >&2
  exit 1
}
pass() { echo "test-images: ok: $*" >&2; }

# 1. Static binaries (and the probe, built the same way).
scripts/build-static.sh --example image-probe
triple=$(cat dist/TARGET)
probe_bin=${CARGO_TARGET_DIR:-target}/$triple/release/examples/image-probe

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

# A fresh named volume (docker-compose.yml) takes the mount point's owner.
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
pass "the wrapper scripts mount what the appliance's did, refuse root-owned spools and an unreadable host key"

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} = 0 ]; then
  echo "test-images: no docker compose here: docker-compose.yml is checked only statically (tests/deploy_manifests.rs)" >&2
else
  project=cloud-accounting-test-$$
  export CASO_EXTRACT_IMAGE=$extract_img SSMSEND_IMAGE=$send_img
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
fi
unset CASO_EXTRACT_IMAGE SSMSEND_IMAGE TAG CASO_CONF VOMS_JSON CASO_SPOOL APEL_SPOOL SENDER_CFG GRID_SECURITY

# 4. Names and TLS inside the image.
# A test CA and a server certificate for the names the containers use.
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=image-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=keystone.test \
  -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,DNS:keystone.test,DNS:keystone.dns.test\nextendedKeyUsage=serverAuth\n' >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null
chmod 0644 "$pki/ca.pem"

# The OpenStack simulator (plain HTTP on 127.0.0.1) behind a TLS terminator.
cargo build --locked --quiet --example openstack-sim
sim=${CARGO_TARGET_DIR:-target}/debug/examples/openstack-sim
"$sim" --write-voms-json "$work/voms.json" --write-manifest "$work/manifest.json" \
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

# DNS: a loopback server answers keystone.dns.test; resolv.conf points there so
# no lookup ever leaves the machine. Port 53 needs root.
dns_addr=127.0.0.77
echo "nameserver $dns_addr" >"$work/resolv.conf"
dns=no
if [ "$(id -u)" = 0 ]; then
  python3 tests/images/dns_server.py "$dns_addr" "$work/dns.log" keystone.dns.test=127.0.0.1 \
    >"$work/dns.ready" 2>"$work/dns.err" &
  pids+=($!)
  wait_for "$work/dns.ready" dns_server.py
  dns=yes
else
  echo "test-images: not root: the DNS-server lookup is not tested (UDP port 53); /etc/hosts lookups are" >&2
fi

# The probe in a layer on top of the caso-extract image: same scratch layout,
# user, CA bundle path and SSL_CERT_FILE as the real program gets.
mkdir -p "$work/probe-ctx"
cp "$probe_bin" "$work/probe-ctx/image-probe"
cat >"$work/probe-ctx/Dockerfile" <<EOF
FROM $extract_img
COPY image-probe /usr/local/bin/image-probe
ENTRYPOINT ["/usr/local/bin/image-probe"]
CMD []
EOF
build_image "$probe_img" "$work/probe-ctx"

urls=("https://localhost:$port/identity/v3" "https://keystone.test:$port/identity/v3")
[ "$dns" = no ] || urls+=("https://keystone.dns.test:$port/identity/v3")
run_in_image() { # IMAGE [docker run options...] -- ARGS...
  local img=$1
  shift
  local opts=()
  while [ "$1" != -- ]; do
    opts+=("$1")
    shift
  done
  shift
  docker run --pull never --rm --network host --add-host keystone.test:127.0.0.1 \
    -v "$work/resolv.conf:/etc/resolv.conf:ro" "${opts[@]}" "$img" "$@"
}

# Trusting the test CA, mounted where the image keeps its bundle.
rc=0
run_in_image "$probe_img" -v "$pki/ca.pem:/etc/ssl/certs/ca-certificates.crt:ro" -- "${urls[@]}" \
  >"$work/probe.out" 2>&1 || rc=$?
cat "$work/probe.out" >&2
[ "$rc" = 0 ] || fail "the probe could not reach the TLS server by name inside the image (exit $rc)"
for u in "${urls[@]}"; do
  grep -qxF "get $u -> 200" "$work/probe.out" || fail "no 200 from $u"
done
grep -q '^handshake keystone.test TLSv1' "$work/tls.log" || fail "no TLS handshake for keystone.test: $(cat "$work/tls.log")"
if grep -q '^keystone.test ' "$work/dns.log" 2>/dev/null; then
  fail "keystone.test (an --add-host name) was asked of DNS: /etc/hosts should answer it"
fi
if [ "$dns" = yes ]; then
  grep -q '^keystone.dns.test 1$' "$work/dns.log" || fail "keystone.dns.test was not asked of the DNS server"
  grep -q '^handshake keystone.dns.test TLSv1' "$work/tls.log" || fail "no TLS handshake for keystone.dns.test"
fi
echo "test-images: DNS server saw: $(sort -u "$work/dns.log" 2>/dev/null | tr '\n' ';')" >&2
echo "test-images: TLS server saw: $(sort -u "$work/tls.log" | tr '\n' ';')" >&2
pass "inside the image: /etc/hosts and DNS lookups, verified TLS with the bundle at /etc/ssl/certs/ca-certificates.crt"

# With the image's own bundle the test CA is unknown: verification refuses.
rc=0
run_in_image "$probe_img" -- "https://keystone.test:$port/identity/v3" >"$work/probe-untrusted.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "the probe trusted a server its bundle does not cover (exit $rc): $(cat "$work/probe-untrusted.out")"
grep -q 'certificate verify failed' "$work/probe-untrusted.out" \
  || fail "expected 'certificate verify failed': $(cat "$work/probe-untrusted.out")"
cat "$work/probe-untrusted.out" >&2
pass "an unknown CA is refused with the image's bundle (certificate verify failed)"

# 5. caso-extract itself, by host name and TLS (cafile, as sites configure a
# private Keystone CA), writing to spools owned by the container user.
mkdir -p "$work/etc-caso" "$work/spool-caso" "$work/spool-apel"
chown "$uid:$uid" "$work/spool-caso" "$work/spool-apel"
cp "$pki/ca.pem" "$work/etc-caso/keystone-ca.pem"
cp "$work/voms.json" "$work/etc-caso/voms.json"
cat >"$work/etc-caso/caso.conf" <<EOF
[DEFAULT]
site_name = IMAGE-TEST
service_name = IMAGE-TEST
messengers = ssm
mapping_file = /etc/caso/voms.json

[keystone_auth]
auth_type = password
auth_url = https://keystone.test:$port/identity/v3
username = admin
password = secret
user_domain_name = Default
project_domain_name = Default
cafile = /etc/caso/keystone-ca.pem
EOF
chmod -R a+rX "$work/etc-caso"
read -r from to < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["period"]["from"], m["period"]["to"])' "$work/manifest.json")
: >"$work/tls.log"
rc=0
run_in_image "$extract_img" \
  -v "$work/etc-caso/caso.conf:/etc/caso/caso.conf:ro" \
  -v "$work/etc-caso/voms.json:/etc/caso/voms.json:ro" \
  -v "$work/etc-caso/keystone-ca.pem:/etc/caso/keystone-ca.pem:ro" \
  -v "$work/spool-caso:/var/spool/caso" -v "$work/spool-apel:/var/spool/apel" --read-only \
  -- --config-file /etc/caso/caso.conf --extract-from "$from" --extract-to "$to" \
  >"$work/extract.out" 2>&1 || rc=$?
if grep -q 'extraction is not implemented' "$work/extract.out"; then
  echo "test-images: caso-extract cannot extract yet in this build: its own DNS/TLS run waits for the extract pipeline (the probe above covers the same stack)" >&2
else
  cat "$work/extract.out" >&2
  [ "$rc" = 0 ] || fail "caso-extract in the image against https://keystone.test:$port failed (exit $rc)"
  grep -q '^handshake keystone.test TLSv1' "$work/tls.log" || fail "caso-extract did not come through TLS as keystone.test"
  [ -n "$(find "$work/spool-apel" -type f ! -name '*.lck' | head -n1)" ] || fail "caso-extract wrote nothing to /var/spool/apel"
  pass "caso-extract in the image: Keystone by name over verified TLS, records in /var/spool/apel"
fi

echo "test-images: all image checks passed" >&2
