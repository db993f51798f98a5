#!/usr/bin/env bash
# Recovery lock on GlusterFS (BENCHMARKS.md, "GlusterFS"): how long until another
# node can take the lock after kill -9 of its holder and after power loss of the
# holder's node, the survivors' write+fsync meanwhile, and our daemons' failover
# on the volume, at GlusterFS's defaults and with the recommended options; RUNS
# runs per row (default 3). Builds release binaries, then runs
# tests/vm/src/bin/bench_gluster_lock.rs. PARTS=lock or PARTS=daemon runs one part,
# VOLUME_OPTIONS=defaults or VOLUME_OPTIONS=recommended one option set.
# Usage: sudo tests/vm/bench/gluster_lock.sh [RUNS]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "gluster_lock.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-gluster-lock "$@"
