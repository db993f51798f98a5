#!/usr/bin/env bash
# SMB benchmarks (BENCHMARKS.md, issue #9 items 7 and 8), smbd with
# `clustering = yes` on 3 nodes, ctdb-rs and CTDB 4.17 in the same harness:
#   stall [RUNS]    the survivors' stall: clients of two nodes keep opening,
#                   locking, writing and closing while the third loses power
#                   (a follower, then the leader); RUNS fresh clusters each (3)
#   rate [SECONDS]  open + lock + unlock + close per second from clients spread
#                   over the 3 nodes, one file or a file each; SECONDS each (10)
# The next argument picks the daemons: ours, stock or both (the default); for
# stall, the one after it the node that loses power: follower, leader or both.
# Builds release binaries, then runs tests/vm/src/bin/bench_smb.rs.
# Usage: sudo tests/vm/bench/smb.sh stall [RUNS] [ours|stock|both] [follower|leader|both]
#        sudo tests/vm/bench/smb.sh rate [SECONDS] [ours|stock|both]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "smb.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release --workspace -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-smb "$@"
