#!/usr/bin/env bash
# The whole chain on this machine, against the test doubles, on loopback only:
#   OpenStack simulator -> caso-extract -> APEL spool (dirq) -> ssmsend
#   -> ARGO Messaging Service double, which checks every S/MIME signature the
#      way the APEL receiver does;
# then energy records: a real Prometheus (Debian's prometheus package, when it
# is installed or installable) backfilled with power series of the simulated
# VMs -> caso-extract (extractor = prometheus) -> GreenDIGIT CIM double. With
# no package (and no root to install it), it says so and skips that step.
# It builds the programs and the two doubles, makes a throw-away grid PKI with
# the openssl CLI, writes a caso.conf and a sender.cfg of the kind sites have,
# runs both programs once and says what happened. Everything lives in one
# temporary directory and every process it starts is stopped on exit, also on
# error or Ctrl-C.
#
#   scripts/demo.sh            # debug build (quicker to compile)
#   scripts/demo.sh --release  # optimised build, as shipped
#   KEEP=1 scripts/demo.sh     # keep the temporary directory to look at
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
build_flags=()
case "${1:-}" in
  --release) profile=release build_flags=(--release) ;;
  "") ;;
  *) echo "usage: scripts/demo.sh [--release]" >&2; exit 2 ;;
esac

for tool in cargo openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "demo: $tool is not installed (cargo: https://rustup.rs; openssl: the openssl package)" >&2
    exit 1
  fi
done

bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }
die() {
  printf '\n\033[1;31mdemo: FAILED: %s\033[0m\n' "$*" >&2
  exit 1
}

bold "Building caso-extract, ssmsend and the two test doubles ($profile; the first build takes a few minutes)"
cargo build --locked --quiet "${build_flags[@]}" --bins --example openstack-sim --example ams-double
bin=${CARGO_TARGET_DIR:-target}/$profile
started=$(date +%s%N)

work=$(mktemp -d "${TMPDIR:-/tmp}/caso-demo.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "${prom_state:-}" ]; then scripts/setup-prometheus.sh stop "$prom_state" || true; fi
  if [ -n "${KEEP:-}" ]; then
    echo "demo: kept $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits for the first line of FILE (a double's ready line) and prints it.
ready_line() { # FILE WHAT PID
  for _ in $(seq 1 300); do
    if [ -s "$1" ]; then
      head -n1 "$1"
      return 0
    fi
    kill -0 "$3" 2>/dev/null || die "$2 exited: $(cat "$work"/*.log 2>/dev/null)"
    sleep 0.1
  done
  die "$2 did not start within 30 s"
}
json_str() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
json_num() { sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p"; }
# GET on the AMS double's plain-HTTP admin port, with bash alone.
http_get() { # PORT PATH
  local body
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  body=$(cat <&3)
  exec 3>&-
  printf '%s\n' "${body#*$'\r\n\r\n'}"
}

bold "A throw-away grid PKI in $work/pki (openssl CLI)"
pki=$work/pki
host_dn="/C=XX/O=Cloud Accounting Demo/CN=cloud.demo.example"
# shellcheck source=scripts/lib/pki.sh
. scripts/lib/pki.sh
pki_ca "$pki" ca "/C=XX/O=Cloud Accounting Demo/CN=Demo CA" 2
pki_issue "$pki" hostcert "$host_dn" ca 2 \
  'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth,emailProtection'
pki_issue "$pki" server "/C=XX/O=Cloud Accounting Demo/CN=localhost" ca 2 \
  'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1'
pki_capath "$pki" ca
say "CA 'Demo CA'; host certificate $host_dn (signs the messages, authenticates to AMS)"

bold "Starting the OpenStack simulator and the AMS double on 127.0.0.1"
"$bin/examples/openstack-sim" --scenario demo --write-voms-json "$work/voms.json" \
  >"$work/sim.ready" 2>"$work/sim.log" &
pids+=($!)
sim=$(ready_line "$work/sim.ready" openstack-sim "$!")
auth_url=$(json_str auth_url <<<"$sim")
sim_port=$(sed -n 's|^http://127.0.0.1:\([0-9]*\)/.*|\1|p' <<<"$auth_url")
say "openstack-sim: Keystone at $auth_url ($(json_num projects <<<"$sim") projects, $(json_num servers <<<"$sim") servers, $(json_num volumes <<<"$sim") volumes, $(json_num floating_ips <<<"$sim") floating IPs)"
"$bin/examples/ams-double" --ca "$pki/ca.pem" --cert "$pki/server.pem" --key "$pki/server.key" \
  --token "demo-$RANDOM$RANDOM" --verify-ca "$pki/ca.pem" --allowed-dn "$host_dn" \
  >"$work/ams.ready" 2>"$work/ams.log" &
pids+=($!)
ams=$(ready_line "$work/ams.ready" ams-double "$!")
ams_port=$(json_num ams_port <<<"$ams")
authn_port=$(json_num authn_port <<<"$ams")
admin_port=$(json_num admin_port <<<"$ams")
say "ams-double: publish on https://127.0.0.1:$ams_port, authx509 on :$authn_port, checks signatures against Demo CA"

bold "caso.conf and sender.cfg, as a site writes them (in $work/etc)"
mkdir -p "$work/etc"
cat >"$work/etc/caso.conf" <<EOF
[DEFAULT]
site_name = DEMO-SITE
service_name = DEMO-SITE
messengers = ssm
spooldir = $work/caso
lock_path = $work/caso
mapping_file = $work/voms.json

[ssm]
output_path = $work/apel/outgoing

[keystone_auth]
auth_type = password
auth_url = $auth_url
username = admin
password = secret
user_domain_name = Default
project_domain_name = Default
EOF
cat >"$work/etc/sender.cfg" <<EOF
[sender]
protocol: AMS
# Ours: the double listens on ephemeral ports (AMS itself: 443 and 8443).
ams_port: $ams_port
ams_authn_port: $authn_port

[broker]
host: 127.0.0.1

[certificates]
certificate: $pki/hostcert.pem
key: $pki/hostcert.key
capath: $pki/certificates

[messaging]
ams_project: accounting
destination: eu-egi-cloud-accounting
path: $work/apel/outgoing
path_type: dirq

[logging]
level: INFO
console: true
EOF
sed 's/^/    /' "$work/etc/caso.conf" | grep -v '^    $' | grep -v '^    password'

bold "caso-extract projects: what will be extracted, and each project's VO"
"$bin/caso-extract" --config-file "$work/etc/caso.conf" projects >"$work/projects.txt" 2>"$work/projects.log" ||
  die "caso-extract projects: $(cat "$work/projects.log")"
sed 's/^/    /' "$work/projects.txt"
# Why fewer projects than the simulator has: its untagged ones (from its manifest).
manifest=$(http_get "$sim_port" /_sim/manifest)
sim_projects=$(json_num projects <<<"$sim")
listed=$(wc -l <"$work/projects.txt")
untagged=$({ grep -o '"name":"untagged-[0-9]*"' <<<"$manifest" || true; } | sed 's/"name":"\(.*\)"/\1/' | paste -sd, -)
[ "$((sim_projects - listed))" = "$({ grep -o '"accounted":false' <<<"$manifest" || true; } | wc -l)" ] ||
  die "the simulator has $sim_projects projects, $listed are listed: not only untagged ones are missing"
say "$listed of the $sim_projects simulated projects: $untagged is not tagged caso ([DEFAULT] caso_tag) nor named in [DEFAULT] projects, so it is not extracted"

bold "caso-extract: OpenStack usage -> APEL records in the spool"
t0=$(date +%s%N)
"$bin/caso-extract" --config-file "$work/etc/caso.conf" 2>"$work/extract.log" ||
  die "caso-extract failed: $(cat "$work/extract.log")"
t1=$(date +%s%N)
grep -oE '[0-9]+/[0-9]+ projects ok.*' "$work/extract.log" | sed 's/^/    /'
elements=$(find "$work/apel/outgoing" -type f | grep -Ev '\.(tmp|lck)$' || true)
[ -n "$elements" ] || die "caso-extract spooled nothing: $(cat "$work/extract.log")"
count() { xargs cat <<<"$elements" | grep -o "$1" | wc -l; }
messages=$(wc -l <<<"$elements")
vms=$(count '^VMUUID: ')
accelerators=$(count '"AssociatedRecordType"')
gpu_vms=$(xargs cat <<<"$elements" | { grep -o '"AssociatedRecord": *"[^"]*"' || true; } | sort -u | wc -l)
servers=$(json_num servers <<<"$sim")
say "$messages messages in $work/apel/outgoing, in $(((t1 - t0) / 1000000)) ms:"
printf '      %-22s %s\n' "cloud (VMs)" "$vms" \
  "public IP" "$(count '"IPVersion"')" \
  "accelerator" "$accelerators" \
  "storage (volumes)" "$(count '<sr:StorageUsageRecord>')"
say "$vms VMs from the $servers simulated servers: the other $((servers - vms)) are $untagged's"
say "$accelerators accelerator records: one per VM and calendar month it ran, for the $gpu_vms VMs with a GPU flavour (the other $((vms - gpu_vms)) have none)"
say "lastrun files: $(cd "$work/caso" && ls lastrun.* | wc -l), one per project"

bold "ssmsend: sign each message (S/MIME), publish it to AMS, remove it once AMS has it"
t0=$(date +%s%N)
"$bin/ssmsend" --config "$work/etc/sender.cfg" 2>"$work/send.log" ||
  die "ssmsend failed: $(cat "$work/send.log")"
t1=$(date +%s%N)
grep -oE '(Messages will be signed using|Will publish to|[0-9]+/[0-9]+ messages sent).*' "$work/send.log" |
  sed 's/^/    /' || true
left=$(find "$work/apel/outgoing" -type f | grep -Ev '\.(tmp|lck)$' | wc -l || true)
say "sent in $(((t1 - t0) / 1000000)) ms; $left messages left in the spool"

bold "What the AMS double received"
stats=$(http_get "$admin_port" /stats)
got=$(json_num messages <<<"$stats")
verified=$(sed -n 's/.*"verified":\([0-9]*\).*/\1/p' <<<"$stats")
duplicates=$(json_num duplicates <<<"$stats")
all=$(sed -n 's/.*"all_verified":\(true\|false\).*/\1/p' <<<"$stats")
say "$got messages, $duplicates duplicates, signer $(sed -n 's/.*"signer_dns":\["\([^"]*\)".*/\1/p' <<<"$stats")"
if [ "$all" != true ] || [ "$got" != "$messages" ] || [ "$verified" != "$got" ] || [ "$duplicates" != 0 ] || [ "$left" != 0 ]; then
  die "expected $messages messages, all verified, none duplicated, none left; the double says: $stats"
fi
printf '\n\033[1;32m    AMS double verified %s/%s signatures\033[0m\n' "$verified" "$got"

# Energy records, when Prometheus can be had; the APEL chain above does not
# depend on it.
energy_demo() {
  bold "Energy records: power series in a real Prometheus -> caso-extract -> GreenDIGIT CIM double"
  cat >"$work/etc/caso-energy.conf" <<EOF
[DEFAULT]
site_name = DEMO-SITE
service_name = DEMO-SITE
extractor = prometheus
messengers = greendigit_cim
spooldir = $work/caso-energy
lock_path = $work/caso-energy
mapping_file = $work/voms.json

[keystone_auth]
auth_type = password
auth_url = $auth_url
username = admin
password = secret
user_domain_name = Default
project_domain_name = Default
EOF
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! scripts/setup-prometheus.sh install >"$work/prometheus-install.log" 2>&1; then
      say "energy records skipped: Debian's prometheus package is not installed"
      return 0
    fi
  fi
  cargo build --locked --quiet "${build_flags[@]}" --example energy-series --example cim-double
  # One day of the simulator's period, a sample every 30 s per VM (its
  # server ids, starts and ends from the manifest; in each project one VM
  # with gaps, one with a NaN sample, one with negative ones, as the tests).
  local from=2026-09-14T00:00:00Z to=2026-09-15T00:00:00Z cim pass n
  printf '%s\n' "$manifest" >"$work/manifest.json"
  "$bin/examples/energy-series" --manifest "$work/manifest.json" \
    --from "$(date -u -d "$from" +%s)" --to "$(date -u -d "$to" +%s)" \
    --out "$work/energy.om" 2>"$work/energy-series.log" || die "energy-series: $(cat "$work/energy-series.log")"
  scripts/setup-prometheus.sh backfill "$work/energy.om" "$work/tsdb" 2>"$work/prometheus.log" ||
    die "backfill: $(cat "$work/prometheus.log")"
  prom_state=$work/prometheus
  scripts/setup-prometheus.sh start "$work/tsdb" "$prom_state" 2>>"$work/prometheus.log" ||
    die "prometheus: $(cat "$work/prometheus.log")"
  say "Prometheus on 127.0.0.1:$(cat "$prom_state/port"): $(sed 's/^energy-series: //' "$work/energy-series.log")"
  pass="demo-$RANDOM$RANDOM"
  "$bin/examples/cim-double" --email demo@example.org --password "$pass" --token "demo-$RANDOM$RANDOM" \
    --record "$work/cim.jsonl" >"$work/cim.ready" 2>"$work/cim.log" &
  pids+=($!)
  cim=$(ready_line "$work/cim.ready" cim-double "$!")
  cat >>"$work/etc/caso-energy.conf" <<EOF

[prometheus]
prometheus_endpoint = http://127.0.0.1:$(cat "$prom_state/port")

[greendigit_cim]
base_url = http://127.0.0.1:$(json_num port <<<"$cim")
email = demo@example.org
password = $pass
EOF
  "$bin/caso-extract" --config-file "$work/etc/caso-energy.conf" --extract-from "$from" --extract-to "$to" \
    2>"$work/energy-extract.log" || die "caso-extract (energy) failed: $(cat "$work/energy-extract.log")"
  [ -s "$work/cim.jsonl" ] || die "the CIM double received no energy records: $(cat "$work/energy-extract.log")"
  n=$(grep -o '"ExecUnitID"' "$work/cim.jsonl" | wc -l)
  say "the CIM double received $n energy records for $from .. $to; the first:"
  head -n1 "$work/cim.jsonl" | sed 's/},{.*/}/; s/^\[//; s/,"/,\n      "/g' | sed 's/^/      /'
}
prom_state=
energy_demo

done_ms=$((($(date +%s%N) - started) / 1000000))
bold "Done in $((done_ms / 1000)).$(printf '%03d' $((done_ms % 1000))) s after the build. Run scripts/test.sh for every check."
