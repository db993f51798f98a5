#!/usr/bin/env bash
# Runs every test binary of the workspace (already built: `cargo build --workspace
# --all-targets`), several binaries at once, and reports each one's result and time.
#
# Why not `cargo test`: it runs the binaries one after another, and most of the
# namespace suites' time is spent waiting (keepalive timeouts, a GlusterFS volume's
# own timeouts, smbd starting), not computing. Two lanes of binaries (each binary
# running its tests two at a time, as `cargo test` does on two cores) halve the wall
# time; every test builds its own uniquely named namespaces, so they do not collide.
#
# Usage: tests/run-test-binaries.sh [LANES]   (default 2; root, like tests/run-all.sh)
# Doc tests are not binaries: `cargo test --workspace --doc` runs them.
# Each binary's own output (libtest's "running N tests", one line per test and its
# "test result:" line) is printed whole when that binary ends, never interleaved
# with another's, so that the log reads as `cargo test`'s does; the total follows.
# Exit status: 0 if every binary passed, 1 otherwise (each failure's log is printed
# again at the end).
set -uo pipefail

lanes=${1:-2}
cd "$(dirname "$0")/.." || exit 1

logs=$(mktemp -d /tmp/ctdb-rs-tests.XXXXXX)
trap 'rm -rf "$logs"' EXIT

# "package-directory executable" per test binary, as cargo would run them (cargo
# runs each in its package's directory).
cargo test --workspace --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, os, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["profile"]["test"] \
            and message.get("executable"):
        print(os.path.dirname(message["manifest_path"]), message["executable"])
' >"$logs/binaries"
if [[ ! -s $logs/binaries ]]; then
    echo "no test binaries found: did the build fail?" >&2
    exit 1
fi

# The longest first, so that no lane is left with a long one at the end.
longest_first='gluster_faults gluster_leader smbtorture services gluster cluster public_ips clustered_smb sim_cluster compat_db scripts nfs'
{
    for name in $longest_first; do
        grep "/deps/${name}-[0-9a-f]*$" "$logs/binaries"
    done
    grep -v -E "/deps/($(tr ' ' '|' <<<"$longest_first"))-[0-9a-f]*$" "$logs/binaries"
} >"$logs/ordered"

# Called by xargs through `bash -c` (exported below).
# shellcheck disable=SC2317
run_one() {
    local dir=$1 exe=$2 logs=$3
    local name
    name=$(basename "$exe")
    local start=$SECONDS status=ok
    if ! (cd "$dir" && "$exe") >"$logs/$name.log" 2>&1; then
        status=FAILED
        touch "$logs/$name.failed"
    fi
    # One binary's output at a time: the lock keeps the lanes' outputs apart.
    {
        flock 9
        echo "     Running $exe"
        cat "$logs/$name.log"
        echo "$status   $((SECONDS - start)) s  ${name%-*}"
    } 9>"$logs/print.lock"
}
export -f run_one

start=$SECONDS
# shellcheck disable=SC2016 # expanded by the inner bash
xargs -P "$lanes" -L 1 bash -c 'run_one "$0" "$1" "$2"' <<<"$(sed "s|\$| $logs|" "$logs/ordered")"
echo "all test binaries ran in $((SECONDS - start)) s ($lanes lanes)"
cat "$logs"/*.log | python3 -c '
import re, sys
totals = [0, 0, 0]
for line in sys.stdin:
    found = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if found:
        totals = [t + int(n) for t, n in zip(totals, found.groups())]
print("tests: %d passed, %d failed, %d ignored" % tuple(totals))
'

failed=0
for marker in "$logs"/*.failed; do
    [[ -e $marker ]] || continue
    failed=1
    log=${marker%.failed}.log
    echo
    echo "==== $(basename "${marker%.failed}") failed; its output (without backtraces):"
    grep -v -E '^ +([0-9]+: | +at )' "$log" | tail -n 150
done
exit "$failed"
