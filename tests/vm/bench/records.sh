#!/usr/bin/env bash
# Record benchmarks (BENCHMARKS.md, issue #9 item 8): fetch-lock rate on one node,
# one hot record migrating between 2 and 3 nodes, recovery time against database
# size; ctdb-rs and CTDB 4.17 in the same harness. SECONDS (default 3) is the length
# of each rate measurement. Builds release binaries, then runs
# tests/vm/src/bin/bench_records.rs.
# Usage: sudo tests/vm/bench/records.sh [SECONDS]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "records.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-records "$@"
