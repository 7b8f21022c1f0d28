#!/usr/bin/env bash
# A real OpenStack (Debian bookworm's Zed packages) for tests/real_openstack:
# MariaDB, RabbitMQ, Keystone (uwsgi), Glance, Placement (uwsgi), Neutron (ML2,
# no agents), Nova API, conductor, scheduler and compute with the fake driver.
# No systemd: every service is a plain background process bound to 127.0.0.1,
# its pid in target/openstack/pids/; configs, logs, the database and the
# broker's data all live under target/openstack. Idempotent: installs what is
# missing, reuses a running stack, never resets a service user's password
# (that revokes the tokens the running services hold). Tests read
# target/openstack/env (written last, once nova-compute is mapped and the
# cloud is populated by scripts/lib/openstack-populate.py).
#
#   scripts/setup-openstack.sh          install if needed, start, populate
#   scripts/setup-openstack.sh stop     stop every service of ours (by pid)
#
# Exit status: 0 ready, 1 a service failed (logs printed), 3 the packages
# cannot be installed (target/openstack/unavailable says so; the test skips).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base=$root/target/openstack
conf=$base/conf
logs=$base/log
pids=$base/pids
state=$base/state
envfile=$base/env

# Ports: away from every default, so that nothing else on the machine clashes.
mysql_port=23306
amqp_port=25673
rabbit_dist_port=25674
epmd_port=24369
keystone_port=25000
glance_port=29292
placement_port=28778
neutron_port=29696
nova_port=28774
admin_password=admin-test
service_password=service-test

log() { echo "setup-openstack: $*" >&2; }
elapsed() { local ms=$((($(date +%s%N) - $1) / 1000000)); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid of service NAME, if its pid file names a live process that start()
# below started for this directory (its environment says so: command lines
# change along the exec chains of rabbitmq-server and erl, and
# epmd's never names it).
running_pid() {
  local f=$pids/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/environ" ] || return 1
  # (setproctitle overwrites the environment of Neutron's processes, but
  # leaves their command line, which names our config file.)
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "CASO_OPENSTACK_BASE=$base" ||
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$base" || return 1
  echo "$pid"
}

# Services in start order; stopped in reverse.
services="epmd mariadb rabbitmq keystone glance placement neutron nova-api nova-conductor nova-scheduler nova-compute"

stop_one() {
  local pid
  if pid=$(running_pid "$1"); then
    # setsid made the service the leader of its own process group: the
    # group holds its workers (and the VM of rabbitmq-server).
    log "stopping $1 (pid $pid and its process group)"
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 75); do
      [ -d "/proc/$pid" ] || break
      sleep 0.2
    done
    if [ -d "/proc/$pid" ]; then kill -9 -- "-$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pids/$1.pid"
}

stop_all() {
  local s
  for s in $(echo "$services" | tr ' ' '\n' | tac); do stop_one "$s"; done
  rm -f "$envfile"
}

if [ "${1:-}" = stop ]; then
  stop_all
  exit 0
fi

# --- install ------------------------------------------------------------------
packages="mariadb-server rabbitmq-server keystone glance-api placement-api neutron-server
  nova-api nova-conductor nova-scheduler nova-compute uwsgi uwsgi-plugin-python3 python3-pymysql"
installed() {
  command -v mariadbd >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] &&
    command -v keystone-manage >/dev/null && command -v glance-api >/dev/null &&
    [ -x /usr/bin/placement-api ] && command -v neutron-server >/dev/null &&
    command -v nova-api >/dev/null && command -v nova-compute >/dev/null &&
    command -v nova-conductor >/dev/null && command -v nova-scheduler >/dev/null &&
    command -v uwsgi >/dev/null && [ -e /usr/lib/uwsgi/plugins/python3_plugin.so ]
}
t=$(date +%s%N)
mkdir -p "$base"
if ! installed; then
  log "installing Debian's OpenStack packages"
  export DEBIAN_FRONTEND=noninteractive
  # No package may configure a database, register endpoints or start a service.
  for p in keystone glance nova neutron placement; do
    c=$p-common
    [ "$p" = keystone ] && c=keystone
    for q in configure_db configure_ksat configure_rabbit configure_api-database; do
      echo "$c $p/$q boolean false"
    done
    echo "$p-api $p/register-endpoint boolean false"
  done | sed -e 's/^neutron-api /neutron-server /' -e 's/^keystone-api /keystone /' |
    debconf-set-selections
  echo "keystone keystone/create-admin-tenant boolean false" | debconf-set-selections
  policy=/usr/sbin/policy-rc.d saved=""
  if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
  fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  ok=true
  # shellcheck disable=SC2086
  if ! apt-get install -y --no-install-recommends $packages >"$base/apt.log" 2>&1; then
    apt-get update >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $packages >"$base/apt.log" 2>&1 || ok=false
  fi
  if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
  if ! $ok; then
    log "cannot install the OpenStack packages; last lines of $base/apt.log:"
    tail -n 20 "$base/apt.log" >&2
    # tests/real_openstack skips (saying why) only when this file exists.
    echo "apt-get install $(echo $packages) failed: see $base/apt.log" >"$base/unavailable"
    exit 3
  fi
  log "install: $(elapsed "$t")"
fi

rm -f "$base/unavailable"
mkdir -p "$conf" "$logs" "$pids" "$state"

# Reuse a stack whose every service is alive and whose env file is written.
all_running() {
  local s
  for s in $services; do running_pid "$s" >/dev/null || return 1; done
  [ -s "$envfile" ]
}
if all_running && port_open $keystone_port && port_open $nova_port; then
  log "reusing the running stack (target/openstack/env)"
  exit 0
fi
stop_all

fail() {
  log "$1; last lines of the logs:"
  local f
  for f in "$logs"/*.log; do
    echo "== $f" >&2
    tail -n 15 "$f" >&2
  done
  # (OPENSTACK_KEEP_ON_FAILURE=1: leave the stack running, to look at it.)
  [ "${OPENSTACK_KEEP_ON_FAILURE:-}" = 1 ] || stop_all
  exit 1
}

# start NAME CMD...: a plain background process in its own session.
start() {
  local name=$1
  shift
  CASO_OPENSTACK_BASE=$base setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$name.pid"
}

wait_port() {
  local name=$1 port=$2 n=${3:-300}
  for _ in $(seq 1 "$n"); do
    port_open "$port" && return 0
    running_pid "$name" >/dev/null || fail "$name exited during startup"
    sleep 0.2
  done
  fail "$name did not open 127.0.0.1:$port"
}

for p in $mysql_port $amqp_port $rabbit_dist_port $epmd_port $keystone_port $glance_port \
  $placement_port $neutron_port $nova_port; do
  port_open "$p" && fail "port 127.0.0.1:$p is taken by a process not of ours"
done

# --- MariaDB ------------------------------------------------------------------
t=$(date +%s%N)
db=$state/mysql
sock=$state/mysql.sock
if [ ! -d "$db/mysql" ]; then
  mariadb-install-db --no-defaults --datadir="$db" --user=root --auth-root-authentication-method=socket \
    >"$logs/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed"
fi
start mariadb mariadbd --no-defaults --datadir="$db" --socket="$sock" --port=$mysql_port \
  --bind-address=127.0.0.1 --user=root --pid-file="$state/mysql.pidfile" \
  --log-error="$logs/mariadb.log" --innodb-buffer-pool-size=128M --skip-name-resolve \
  --max-connections=500 --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci
wait_port mariadb $mysql_port
sql() { mariadb --no-defaults --socket="$sock" -uroot "$@"; }
sql -e "CREATE USER IF NOT EXISTS 'os'@'127.0.0.1' IDENTIFIED BY 'os';
  GRANT ALL ON *.* TO 'os'@'127.0.0.1';
  $(for d in keystone glance neutron nova_api nova nova_cell0 placement; do echo "CREATE DATABASE IF NOT EXISTS $d;"; done)"
dburl() { echo "mysql+pymysql://os:os@127.0.0.1:$mysql_port/$1?charset=utf8"; }
log "mariadb: $(elapsed "$t")"

# --- RabbitMQ -----------------------------------------------------------------
t=$(date +%s%N)
mkdir -p "$state/rabbitmq"
start epmd epmd -address 127.0.0.1 -port $epmd_port
wait_port epmd $epmd_port
echo "loopback_users = none" >"$conf/rabbitmq.conf"
# Our pid is the script's: it stops the VM on SIGTERM and waits for it.
start rabbitmq env HOME="$state/rabbitmq" ERL_EPMD_PORT=$epmd_port ERL_EPMD_ADDRESS=127.0.0.1 \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
  RABBITMQ_NODENAME=caso-test@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_NODE_PORT=$amqp_port RABBITMQ_DIST_PORT=$rabbit_dist_port \
  RABBITMQ_MNESIA_BASE="$state/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$logs/rabbitmq" \
  RABBITMQ_CONFIG_FILE="$conf/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$conf/rabbitmq-plugins" \
  RABBITMQ_SERVER_ERL_ARGS="+S 1:1 +A 4" \
  /usr/lib/rabbitmq/bin/rabbitmq-server
wait_port rabbitmq $amqp_port 600
log "rabbitmq: $(elapsed "$t")"
transport="rabbit://guest:guest@127.0.0.1:$amqp_port/"

# --- configuration --------------------------------------------------------------
authtoken() {
  cat <<EOF
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$keystone_port/v3
auth_url = http://127.0.0.1:$keystone_port/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $service_password
memcached_servers =
service_token_roles_required = true
EOF
}
svcauth() { # a [SECTION] with service credentials
  cat <<EOF
[$1]
auth_url = http://127.0.0.1:$keystone_port/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $service_password
region_name = RegionOne
EOF
}

mkdir -p "$conf/keystone" "$conf/placement" "$state/fernet-keys" "$state/credential-keys" \
  "$state/glance/images" "$state/nova/instances" "$state/locks"
cat >"$conf/keystone/keystone.conf" <<EOF
[DEFAULT]
log_file = $logs/keystone-app.log
[database]
connection = $(dburl keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $state/fernet-keys
[credential]
key_repository = $state/credential-keys
[cache]
enabled = false
EOF

cat >"$conf/placement/placement.conf" <<EOF
[DEFAULT]
log_file = $logs/placement-app.log
[api]
auth_strategy = keystone
[placement_database]
connection = $(dburl placement)
$(authtoken placement)
EOF

cat >"$conf/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $glance_port
workers = 1
log_file = $logs/glance-app.log
enabled_backends = file:file
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $state/glance/images
[database]
connection = $(dburl glance)
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $state/locks
$(authtoken glance)
EOF

cat >"$conf/neutron.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $neutron_port
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
core_plugin = ml2
service_plugins = router,port_forwarding
auth_strategy = keystone
transport_url = $transport
api_paste_config = /etc/neutron/api-paste.ini
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
state_path = $state/neutron
log_file = $logs/neutron-app.log
[database]
connection = $(dburl neutron)
[oslo_concurrency]
lock_path = $state/locks
[agent]
root_helper =
$(authtoken neutron)
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
EOF

cat >"$conf/nova.conf" <<EOF
[DEFAULT]
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = $nova_port
osapi_compute_workers = 1
transport_url = $transport
compute_driver = fake.FakeDriver
host = caso-test-compute
state_path = $state/nova
instances_path = $state/nova/instances
log_dir = $logs/nova
# The fake driver forgets its servers when nova-compute restarts: no power
# state sync may then stop them on a reused stack.
sync_power_state_interval = -1
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[api_database]
connection = $(dburl nova_api)
[database]
connection = $(dburl nova)
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 2
[oslo_concurrency]
lock_path = $state/locks
[vnc]
enabled = false
[glance]
api_servers = http://127.0.0.1:$glance_port
$(authtoken nova)
$(svcauth placement placement)
$(svcauth neutron neutron)
EOF
mkdir -p "$logs/nova" "$state/neutron"

# --- Keystone -------------------------------------------------------------------
t=$(date +%s%N)
export OS_KEYSTONE_CONFIG_FILES=$conf/keystone/keystone.conf
keystone-manage --config-file "$conf/keystone/keystone.conf" db_sync >>"$logs/keystone-manage.log" 2>&1 ||
  fail "keystone-manage db_sync failed"
if [ -z "$(ls -A "$state/fernet-keys")" ]; then
  keystone-manage --config-file "$conf/keystone/keystone.conf" fernet_setup --keystone-user root --keystone-group root >>"$logs/keystone-manage.log" 2>&1
  keystone-manage --config-file "$conf/keystone/keystone.conf" credential_setup --keystone-user root --keystone-group root >>"$logs/keystone-manage.log" 2>&1
fi
# bootstrap is idempotent (it never changes an existing admin's password).
keystone-manage --config-file "$conf/keystone/keystone.conf" bootstrap --bootstrap-password "$admin_password" \
  --bootstrap-admin-url "http://127.0.0.1:$keystone_port/v3" \
  --bootstrap-public-url "http://127.0.0.1:$keystone_port/v3" \
  --bootstrap-internal-url "http://127.0.0.1:$keystone_port/v3" \
  --bootstrap-region-id RegionOne >>"$logs/keystone-manage.log" 2>&1 || fail "keystone-manage bootstrap failed"
start keystone env OS_KEYSTONE_CONFIG_FILES="$conf/keystone/keystone.conf" uwsgi --plugin python3 \
  --http-socket "127.0.0.1:$keystone_port" --wsgi-file /usr/bin/keystone-wsgi-public \
  --processes 1 --threads 4 --master --die-on-term --add-header "Connection: close" \
  --set-ph "base=$base"
wait_port keystone $keystone_port
log "keystone: $(elapsed "$t")"

# Service users, endpoints (the admin's own REST calls; never resets a password).
export OS_ADMIN_PASSWORD=$admin_password OS_SERVICE_PASSWORD=$service_password
export OS_KEYSTONE_URL=http://127.0.0.1:$keystone_port/v3
export OS_ENDPOINTS="compute=http://127.0.0.1:$nova_port/v2.1 image=http://127.0.0.1:$glance_port network=http://127.0.0.1:$neutron_port placement=http://127.0.0.1:$placement_port"
python3 scripts/lib/openstack-populate.py services >>"$logs/populate.log" 2>&1 || fail "registering the services failed"

# --- Glance, Placement, Neutron -----------------------------------------------------
t=$(date +%s%N)
glance-manage --config-file "$conf/glance-api.conf" db_sync >>"$logs/glance-manage.log" 2>&1 || fail "glance-manage db_sync failed"
start glance glance-api --config-file "$conf/glance-api.conf"
placement-manage --config-dir "$conf/placement" db sync >>"$logs/placement-manage.log" 2>&1 || fail "placement-manage db sync failed"
start placement env OS_PLACEMENT_CONFIG_DIR="$conf/placement" uwsgi --plugin python3 \
  --http-socket "127.0.0.1:$placement_port" --wsgi-file /usr/bin/placement-api \
  --processes 1 --threads 4 --master --die-on-term --add-header "Connection: close" \
  --set-ph "base=$base"
neutron-db-manage --config-file "$conf/neutron.conf" upgrade heads >>"$logs/neutron-manage.log" 2>&1 || fail "neutron-db-manage failed"
start neutron neutron-server --config-file "$conf/neutron.conf"
wait_port glance $glance_port
wait_port placement $placement_port
wait_port neutron $neutron_port 600
log "glance, placement, neutron: $(elapsed "$t")"

# --- Nova -------------------------------------------------------------------------
t=$(date +%s%N)
nm() { nova-manage --config-file "$conf/nova.conf" "$@" >>"$logs/nova-manage.log" 2>&1; }
nm api_db sync || fail "nova-manage api_db sync failed"
nm cell_v2 map_cell0 --database_connection "$(dburl nova_cell0)" || true
cells=$(nova-manage --config-file "$conf/nova.conf" cell_v2 list_cells 2>/dev/null || true)
case $cells in *" cell1 "*) ;; *) nm cell_v2 create_cell --name cell1 || fail "nova-manage cell_v2 create_cell failed" ;; esac
nm db sync || fail "nova-manage db sync failed"
for s in api conductor scheduler compute; do
  start "nova-$s" "nova-$s" --config-file "$conf/nova.conf"
done
wait_port nova-api $nova_port 600
log "nova started: $(elapsed "$t")"

# Usable once the compute host is mapped to cell1 (discover_hosts maps it as
# soon as nova-compute has registered; the scheduler's own periodic discovery
# takes a minute).
t=$(date +%s%N)
mapped=false
for _ in $(seq 1 150); do
  nm cell_v2 discover_hosts || true
  hosts=$(nova-manage --config-file "$conf/nova.conf" cell_v2 list_hosts 2>/dev/null || true)
  case $hosts in *caso-test-compute*) mapped=true && break ;; esac
  for s in nova-conductor nova-scheduler nova-compute; do
    running_pid "$s" >/dev/null || fail "$s exited"
  done
  sleep 1
done
$mapped || fail "nova-compute was not mapped within 150 s"
log "nova-compute mapped: $(elapsed "$t")"

# --- populate ---------------------------------------------------------------------
t=$(date +%s%N)
python3 scripts/lib/openstack-populate.py populate "$envfile.tmp" >>"$logs/populate.log" 2>&1 ||
  fail "populating the cloud failed (see $logs/populate.log)"
cat >>"$envfile.tmp" <<EOF
OS_AUTH_URL=http://127.0.0.1:$keystone_port/v3
OS_ADMIN_PASSWORD=$admin_password
EOF
mv "$envfile.tmp" "$envfile"
log "populate: $(elapsed "$t")"
