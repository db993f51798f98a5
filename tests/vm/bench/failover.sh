#!/usr/bin/env bash
# Failover benchmark (BENCHMARKS.md): time from kill -9 and from power loss of the
# node hosting a public address until that address answers TCP from a survivor,
# follower and leader victims, default and fast tunables, RUNS runs each (default
# 10). Builds release binaries, then runs tests/vm/src/bin/bench_failover.rs.
# Usage: sudo tests/vm/bench/failover.sh [RUNS]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "failover.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-failover "$@"
