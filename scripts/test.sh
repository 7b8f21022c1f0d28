#!/usr/bin/env bash
# Every check CI makes, in the order a failure is cheapest to see: formatting,
# lints, then every test with its real interoperability peers set up first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
scripts/setup-activemq.sh
# The real Prometheus of tests/energy (which says plainly it skips when
# the package cannot be installed).
scripts/setup-prometheus.sh || echo "test.sh: prometheus cannot be installed: tests/energy will skip its Prometheus test" >&2
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
scripts/test-images.sh
# The real OpenStack of tests/real_openstack (Debian's Zed packages; see
# scripts/setup-openstack.sh), stopped when this script exits, on failure too.
# Exit 3: the packages cannot be installed, and the test says it skips.
trap 'scripts/setup-openstack.sh stop' EXIT
openstack_started=$(date +%s)
openstack_rc=0
scripts/setup-openstack.sh || openstack_rc=$?
case $openstack_rc in
0) echo "test.sh: OpenStack installed, started and populated in $(($(date +%s) - openstack_started)) s" >&2 ;;
3) echo "test.sh: the OpenStack packages cannot be installed: tests/real_openstack will skip" >&2 ;;
*) exit "$openstack_rc" ;;
esac
cargo test --locked
