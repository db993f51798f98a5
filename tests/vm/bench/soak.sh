#!/usr/bin/env bash
# Soak test (BENCHMARKS.md, "Soak"): SMB and persistent-database writes through a
# 3-node NAS cluster for MINUTES minutes (default 10) while nodes are killed and
# powered off at random, then checks that no acknowledged write was lost, that the
# persistent databases are alike on every node and that ctdbd's memory stayed flat.
# Not part of CI (it is bounded by MINUTES, not by a test's budget). Builds release
# binaries, then runs tests/vm/src/bin/bench_soak.rs. SEED replays a run's faults.
# Usage: sudo tests/vm/bench/soak.sh [MINUTES] [SEED]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "soak.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-soak "$@"
