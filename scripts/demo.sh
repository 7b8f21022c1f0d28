#!/usr/bin/env bash
# Shows what works today, on the example configuration files shipped in
# examples/: both programs read the files sites already have and print the
# effective settings with where each value came from. Extraction is not
# implemented yet, and sending needs real credentials: the last steps show that.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "demo: cargo is not installed; get Rust from https://rustup.rs and rerun scripts/demo.sh" >&2
  exit 1
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# Runs a command, shows it, and reports its exit code without stopping the demo.
show() {
  printf '$ %s\n' "$*"
  local rc=0
  "$@" || rc=$?
  printf '(exit code %s)\n' "$rc"
}

step "Building caso-extract and ssmsend (debug build; the first build takes a few minutes)"
cargo build --locked --bins --quiet
bin=target/debug

step "caso-extract reads the EGI appliance caso.conf unchanged (site_name set to EXAMPLE-SITE)"
echo "Old spellings (ssmv4, v3password) are accepted with one warning each, on stderr."
show "$bin/caso-extract" --config-file examples/caso.conf --print-config

step "Environment and flags override the file: CASO_DEFAULT__SPOOLDIR and --projects"
CASO_DEFAULT__SPOOLDIR=/tmp/caso-demo show "$bin/caso-extract" --config-file examples/caso.conf \
  --projects demo,other --print-config 2>/dev/null | grep -E '^(spooldir|lock_path|projects) '

step "ssmsend reads the SSM 4 default sender.cfg unchanged (host set to the AMS test instance)"
show "$bin/ssmsend" -c examples/sender.cfg --print-config

step "The old STOMP/BDII sender.cfg is refused with a clear message (exit code 2)"
show "$bin/ssmsend" -c tests/fixtures/config/sender-stomp-legacy.cfg

step "The appliance caso.conf has no credentials yet: caso-extract refuses to start (exit code 2)"
show "$bin/caso-extract" --config-file examples/caso.conf

step "ssmsend checks the host certificate before touching the queue (exit code 2 without one)"
show "$bin/ssmsend" -c examples/sender.cfg

step "Done. Run scripts/test.sh for formatting, lints and every test."
