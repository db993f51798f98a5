#!/usr/bin/env bash
# Cluster benchmarks (BENCHMARKS.md): cold start with the NAS event scripts and
# Samba, then without scripts cold start, failure detection and leader failover after
# kill -9 and power loss, at default and fast tunables, RUNS runs each (default 10).
# Builds release binaries, then runs tests/vm/src/bin/bench_cluster.rs.
# Usage: sudo tests/vm/bench/cluster.sh [RUNS] [cold-start]
#   cold-start: only the cold-start rows.
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "cluster.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-cluster "$@"
