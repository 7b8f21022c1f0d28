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
cargo test --locked
