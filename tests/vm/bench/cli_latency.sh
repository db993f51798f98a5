#!/usr/bin/env bash
# Measures `ctdb status` latency against our ctdbd: our ctdb tool and the stock
# CTDB 4.17 tool (/usr/bin/ctdb), N runs each (default 100), and prints the median,
# 10th and 90th percentile in milliseconds, as BENCHMARKS.md records them.
#
# The daemon runs in its own network and mount namespace (unshare), with its files
# in a temporary directory, so the machine's /etc/ctdb and /run/ctdb are untouched.
# Each sample is the wall time of one whole tool process, as an administrator sees it.
#
# Usage: sudo tests/vm/bench/cli_latency.sh [RUNS]   (builds release binaries first)
set -euo pipefail

runs=${1:-100}
top=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "cli_latency: must run as root (namespaces)" >&2; exit 1; }
[ -x /usr/bin/ctdb ] || { echo "cli_latency: /usr/bin/ctdb missing: apt-get install ctdb" >&2; exit 1; }
(cd "$top" && cargo build --release -q -p ctdbd -p ctl)

work=$(mktemp -d /tmp/ctdb-rs-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
printf '127.0.0.1\n127.0.0.2\n127.0.0.3\n' >"$work/nodes"
printf '10.0.0.31/24 eth1\n10.0.0.32/24 eth1\n' >"$work/public_addresses"
printf '[logging]\n\tlocation = file:%s/log.ctdb\n\tlog level = ERROR\n' "$work" >"$work/ctdb.conf"

cat >"$work/inner.sh" <<INNER
set -euo pipefail
ip link set lo up
export CTDB_BASE=$work CTDB_SOCKET=$work/ctdbd.socket CTDB_TEST_MODE=1 CTDB_SYSCONFIG=/dev/null
$top/target/release/ctdbd --interactive 2>>$work/stderr &
daemon=\$!
trap 'kill \$daemon 2>/dev/null; wait \$daemon 2>/dev/null || true' EXIT
for _ in \$(seq 100); do [ -S $work/ctdbd.socket ] && break; sleep 0.05; done
[ -S $work/ctdbd.socket ] || { echo "daemon did not start:"; cat $work/stderr; exit 1; }
measure() {
  local tool=\$1 i t0 t1
  for i in \$(seq $runs); do
    t0=\$(date +%s%N); "\$tool" status >/dev/null; t1=\$(date +%s%N)
    echo \$(( (t1 - t0) / 1000 ))
  done
}
report() {
  sort -n | awk -v name="\$1" '{ v[NR] = \$1 } END {
    printf "%-34s runs=%d median=%.2f ms p10=%.2f ms p90=%.2f ms\n", name, NR,
      v[int((NR + 1) / 2)] / 1000, v[int(NR * 0.1) + 1] / 1000, v[int(NR * 0.9)] / 1000 }'
}
measure $top/target/release/ctdb | report "ctdb-rs ctdb status"
measure /usr/bin/ctdb | report "stock 4.17 ctdb status"
INNER
unshare --net --mount --propagation private bash "$work/inner.sh"
