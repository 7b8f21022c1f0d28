#!/usr/bin/env bash
# The real Prometheus the energy tests query: Debian's `prometheus` package
# (never its system service), one server per test on 127.0.0.1, a free port,
# a storage directory of the test's own, no scrape targets (or one, given
# with --scrape: the metrics tests).
#
#   scripts/setup-prometheus.sh                          install if needed
#   scripts/setup-prometheus.sh backfill FILE|DIR TSDB-DIR  OpenMetrics FILE (or DIR/*.om) into TSDB-DIR
#   scripts/setup-prometheus.sh start TSDB-DIR STATE-DIR [--scrape HOST:PORT]
#                                                        start, wait for /-/ready;
#                                                        writes STATE-DIR/port, /pid, /log;
#                                                        --scrape: scrape HOST:PORT/metrics
#                                                        every second (job "scrape")
#   scripts/setup-prometheus.sh stop STATE-DIR           stop the server of STATE-DIR (by pid)
#
# Idempotent: installing twice does nothing; `start` on a STATE-DIR whose
# server is alive, ready and has the same configuration reuses it.
set -euo pipefail

log() { echo "setup-prometheus: $*" >&2; }

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    return 0
  fi
  log "installing the Debian package prometheus"
  export DEBIAN_FRONTEND=noninteractive
  # No init system here, and the system service must not run anyway: tell
  # invoke-rc.d not to start it (101 = action forbidden), then restore.
  local policy=/usr/sbin/policy-rc.d saved=""
  if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
  fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  local ok=true
  if ! apt-get install -y --no-install-recommends prometheus >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends prometheus >/dev/null || ok=false
  fi
  if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
  $ok || { log "cannot install prometheus"; return 1; }
  # Whatever the package's scripts did: no system instance on :9090.
  stop_system_instance
}

# The system instance, if a post-install script started one anyway (matched by
# its pid file, never by name).
stop_system_instance() {
  local f=/run/prometheus/prometheus.pid
  if [ -s "$f" ]; then
    kill "$(cat "$f")" 2>/dev/null || true
  fi
}

# Our server's pid, if STATE/pid names a live prometheus using STATE's config.
running_pid() {
  local state=$1 pid
  [ -s "$state/pid" ] || return 1
  pid=$(cat "$state/pid")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config.file=$state/prometheus.yml" || return 1
  echo "$pid"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Seconds since a `date +%s%N`, with milliseconds.
elapsed() { local ms=$((($(date +%s%N) - $1) / 1000000)); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }

ready() { curl -fsS -m 2 "http://127.0.0.1:$1/-/ready" >/dev/null 2>&1; }

# The configuration: no scrape targets (the data are what the tests
# backfilled), or the one target given.
config() {
  local target=$1
  if [ -z "$target" ]; then
    printf 'global:\n  scrape_interval: 1h\nscrape_configs: []\n'
  else
    printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: scrape\n    static_configs:\n      - targets: ["%s"]\n' "$target"
  fi
}

start_server() {
  local tsdb=$1 state=$2 target=${3:-} pid port
  local re='^[][A-Za-z0-9.:-]+:[0-9]+$'
  if [ -n "$target" ] && ! [[ "$target" =~ $re ]]; then
    log "--scrape wants HOST:PORT, not $target"
    return 2
  fi
  mkdir -p "$tsdb" "$state"
  state=$(cd "$state" && pwd)
  tsdb=$(cd "$tsdb" && pwd)
  if pid=$(running_pid "$state") && [ -s "$state/port" ] && ready "$(cat "$state/port")" &&
    [ "$(config "$target")" = "$(cat "$state/prometheus.yml")" ]; then
    return 0
  fi
  stop_server "$state"
  config "$target" >"$state/prometheus.yml"
  port=$(free_port)
  local t0
  t0=$(date +%s%N)
  prometheus --config.file="$state/prometheus.yml" \
    --storage.tsdb.path="$tsdb" \
    --storage.tsdb.retention.time=100y \
    --web.listen-address="127.0.0.1:$port" \
    --log.level=warn \
    >"$state/log" 2>&1 &
  pid=$!
  echo "$pid" >"$state/pid"
  for _ in $(seq 1 600); do
    if ready "$port"; then
      echo "$port" >"$state/port"
      log "ready on 127.0.0.1:$port (pid $pid) after $(elapsed "$t0")"
      return 0
    fi
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  log "prometheus did not become ready; its log:"
  tail -n 20 "$state/log" >&2 || true
  stop_server "$state"
  return 1
}

stop_server() {
  local state=$1 pid
  # The pid file names the config by absolute path.
  [ -d "$state" ] || return 0
  state=$(cd "$state" && pwd)
  if pid=$(running_pid "$state"); then
    kill "$pid"
    for _ in $(seq 1 100); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then kill -9 "$pid"; fi
  fi
  rm -f "$state/pid" "$state/port"
}

# FILE, or every *.om of a directory (energy-series --slice-seconds), one
# promtool run each.
backfill() {
  local input=$1 tsdb=$2 t0 f
  mkdir -p "$tsdb"
  t0=$(date +%s%N)
  local files=("$input")
  if [ -d "$input" ]; then files=("$input"/*.om); fi
  for f in "${files[@]}"; do
    # Blocks of up to a day (promtool's default 2 h makes a dozen tiny blocks
    # per day, and it reads its input once per block); it holds one block of
    # samples in memory (about 1 GB for 2,000 series x a day).
    promtool tsdb create-blocks-from openmetrics --max-block-duration="${PROMETHEUS_BLOCK_DURATION:-24h}" "$f" "$tsdb" >/dev/null
  done
  log "backfilled $(du -sh "$input" | cut -f1) of OpenMetrics (${#files[@]} file(s)) in $(elapsed "$t0")"
}

case "${1:-install}" in
install) install_prometheus ;;
backfill) install_prometheus && backfill "$2" "$3" ;;
start)
  target=""
  if [ "${4:-}" = "--scrape" ]; then
    target=${5:?--scrape needs HOST:PORT}
  elif [ -n "${4:-}" ]; then
    log "start: unknown argument $4"
    exit 2
  fi
  install_prometheus && start_server "$2" "$3" "$target"
  ;;
stop) stop_server "$2" ;;
*)
  log "usage: $0 [install | backfill FILE TSDB-DIR | start TSDB-DIR STATE-DIR [--scrape HOST:PORT] | stop STATE-DIR]"
  exit 2
  ;;
esac
