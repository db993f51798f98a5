#!/usr/bin/env bash
# Recovery at scale (BENCHMARKS.md, issue #10 item 4): 3 nodes in namespaces; for
# each SIZE (default 1000 10000 100000) a volatile database whose SIZE records are
# spread over the three nodes (each node holds a third) and a persistent database
# of SIZE records that every node holds whole, then a recovery asked of node 0 as
# `ctdb recover` asks it (SET_RECMODE active), timed until all three nodes report a
# new generation in normal mode (polled every 5 ms), with the daemons' peak memory
# (ctdbd's VmHWM, reset before each recovery; the VmRSS sum of each node's daemon
# and its children, sampled every 10 ms); then `ctdb recover` (our tool, node 0)
# timed as a command (it polls once a second, as CTDB's does). Default tunables.
# ctdb-rs and CTDB 4.17 in the same harness, one after the other. Builds release
# binaries of ctdbd, ctl, lockvol (the recovery-lock helper) and vm, then runs
# tests/vm/src/bin/bench_records.rs.
# Usage: sudo tests/vm/bench/recovery.sh [SIZE...]
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "recovery.sh: must run as root (namespaces)" >&2; exit 1; }
cd "$top"
cargo build --release -p ctdbd -p ctl -p lockvol -p vm -q
CTDB_RS_PROFILE=release exec target/release/ctdbrs-bench-records recovery "$@"
