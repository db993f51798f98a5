#!/usr/bin/env bash
# Record benchmarks (BENCHMARKS.md, issue #9 item 8): fetch-lock rate on one node,
# one hot record migrating between 2 and 3 nodes, recovery time against database
# size; ctdb-rs and CTDB 4.17 in the same harness. SECONDS (default 3) is the length
# of each rate measurement. Builds release binaries, then runs
# tests/vm/src/bin/bench_records.rs.
# `records.sh memory [RECORDS]` instead reports node 0's daemon memory (VmRSS,
# RssAnon, VmHWM of it and its child processes) before and after its copy of a
# volatile database is filled with RECORDS records (default 1000000), and after a
# recovery.
# Usage: sudo tests/vm/bench/records.sh [SECONDS]
#        sudo tests/vm/bench/records.sh memory [RECORDS]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "records.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-records "$@"
