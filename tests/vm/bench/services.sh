#!/usr/bin/env bash
# File-service failover benchmark (BENCHMARKS.md): time from kill -9 of ctdbd and
# from power loss of the node serving a public address until smbclient / nfs-cat
# through that address succeeds again, RUNS runs each (default 10). Builds release
# binaries, then runs tests/vm/src/bin/bench_services.rs.
# Usage: sudo tests/vm/bench/services.sh [RUNS]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "services.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-services "$@"
