#!/usr/bin/env bash
# Failover of clustered Samba on GlusterFS (recommended options) beside the plain
# directory, ctdb-rs and CTDB 4.17 in the same run (BENCHMARKS.md; issue #11 item
# 5): cold start; kill -9 and power loss of the leader and of a follower, until
# the victim's address answers from a survivor and until a new SMB session
# through it reads a file written before the fault. RUNS runs per case (default
# 3); every wait is bounded (the bound and the total time are printed). Builds
# release binaries, then runs tests/vm/src/bin/bench_gluster_failover.rs.
# Usage: sudo tests/vm/bench/gluster_failover.sh [RUNS] [ours|stock|both] [dir|gluster|both]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "gluster_failover.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-gluster-failover "$@"
