#!/bin/bash
# Regenerates the CTDB byte fixtures of ctdb-rs from the stock Debian binaries
# (ctdb/ctdbd 4.17.12). Re-runnable: every run rewrites the files below.
#
#   requests  the stock `ctdb` tool against stub_daemon.py; one file per command
#             in ctdbd/tests/fixtures/requests/<name>.hex
#   replies   a real `ctdbd` (test mode, one live node of two) in a private
#             network + mount namespace, queried by raw_client.py:
#             ctdbd/tests/fixtures/replies/<name>.hex, the stock tool's output
#             for the same commands in ctdbd/tests/fixtures/stock-output/, and
#             the experiments behind ctdbd/tests/fixtures/FINDINGS.md (printed)
#   databases the same daemon asked by raw_client.py for the database controls,
#             calls, a persistent commit and a traverse:
#             ctdbd/tests/fixtures/databases/<name>.hex
#
# Usage (as root, for the namespace):
#   tests/fixtures-capture/capture.sh [requests|replies|databases|all]
#
# Fixture format: per packet a `# <OPERATION> <detail>` line, then the packet as
# one line of lowercase hex. ctdbd/tests/fixtures.rs checks every file.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FIX=$ROOT/ctdbd/tests/fixtures
CTDB=${CTDB:-/usr/bin/ctdb}
CTDBD=${CTDBD:-/usr/sbin/ctdbd}
WHAT=${1:-all}

# name|arguments of `ctdb` (the name is the fixture's file name)
COMMANDS=(
  "status|status"
  "nodestatus|nodestatus"
  "pnn|pnn"
  "ping|ping"
  "uptime|uptime"
  "getpid|getpid"
  "runstate|runstate"
  "getcapabilities|getcapabilities"
  "leader|leader"
  "getvar_enablebans|getvar enablebans"
  "setvar_enablebans_0|setvar EnableBans 0"
  "listvars|listvars"
  "ip|ip"
  "ip_all|ip all"
  "ifaces|ifaces"
  "statistics|statistics"
  "getdebug|getdebug"
  "setdebug_info|setdebug INFO"
  "process_exists_1|process-exists 1"
  "process_exists_1_0x1234|process-exists 1 0x1234"
  "ipinfo_10.0.0.31|ipinfo 10.0.0.31"
  "shutdown|shutdown"
)

TMP=$(mktemp -d /tmp/ctdb-fixcap.XXXXXX)
NS=""
DAEMON_PID=""
STUB_PID=""

cleanup() {
  set +e
  if [ -n "$STUB_PID" ] && kill -0 "$STUB_PID" 2>/dev/null; then
    kill "$STUB_PID"; wait "$STUB_PID" 2>/dev/null
  fi
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill "$DAEMON_PID"
    for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DAEMON_PID" 2>/dev/null
  fi
  [ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

capture_requests() {
  mkdir -p "$FIX/requests"
  local entry name args keep
  for entry in "${COMMANDS[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    keep=()
    # listvars runs getvar for every tunable; the first packets show the pattern.
    [ "$name" = listvars ] && keep=(--keep 7)
    python3 "$HERE/stub_daemon.py" "$TMP/stub.socket" "$FIX/requests/$name.hex" "${keep[@]}" &
    STUB_PID=$!
    for _ in $(seq 100); do [ -S "$TMP/stub.socket" ] && break; sleep 0.05; done
    # shellcheck disable=SC2086  # word splitting of the command is intended
    if ! CTDB_SOCKET=$TMP/stub.socket timeout 30 "$CTDB" $args >/dev/null 2>"$TMP/stub.err"; then
      echo "requests: ctdb $args failed:" >&2
      cat "$TMP/stub.err" >&2
    fi
    if kill -0 "$STUB_PID" 2>/dev/null; then kill "$STUB_PID"; fi
    wait "$STUB_PID" 2>/dev/null || true
    STUB_PID=""
    rm -f "$TMP/stub.socket"
    echo "requests/$name.hex: $(grep -c '^#' "$FIX/requests/$name.hex") packets"
  done
}

start_daemon() {
  local base=$TMP/base
  mkdir -p "$base/run" "$base/events/legacy" "$base/var/volatile" \
    "$base/var/persistent" "$base/var/state"
  cat >"$base/ctdb.conf" <<EOF
[logging]
	location = file:$TMP/ctdbd.log
	log level = INFO
[database]
	volatile database directory = $base/var/volatile
	persistent database directory = $base/var/persistent
	state database directory = $base/var/state
EOF
  # Node 1 never starts: node 0 runs alone with a disconnected peer.
  printf '127.0.0.1\n127.0.0.2\n' >"$base/nodes"
  printf '10.0.0.31/24 lo\n10.0.0.32/24 lo\n' >"$base/public_addresses"
  NS=fixcap-$$
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  SOCK=$TMP/ctdbd.socket
  # The TCP transport's lock file lives in the compiled-in /run/ctdb even in test
  # mode, so the daemon gets a private tmpfs /run (nothing leaks to the host).
  # --interactive logs to stderr.
  CTDB_BASE=$base CTDB_SOCKET=$SOCK CTDB_TEST_MODE=1 \
    ip netns exec "$NS" unshare -m --propagation private sh -c \
    'mount -t tmpfs -o mode=755 fixcap /run && mkdir -p /run/ctdb && exec "$0" --interactive' \
    "$CTDBD" >"$TMP/ctdbd.log" 2>&1 &
  DAEMON_PID=$!
  # Sample the state from the very first moment the socket accepts.
  echo "== (ii) state over time after start (t=0: first accepted connection)"
  python3 "$HERE/raw_client.py" timeline "$SOCK" 20
  echo "== (iv) socket and pid file"
  stat -c '%A %U:%G %n' "$SOCK"
  ls -l "$base/run"
  echo "pid file $base/run/ctdbd.pid holds $(cat "$base/run/ctdbd.pid"); daemon pid $DAEMON_PID"
  local state
  for _ in $(seq 60); do
    state=$(CTDB_SOCKET=$SOCK "$CTDB" runstate 2>/dev/null || true)
    [ "$state" = RUNNING ] && break
    sleep 0.5
  done
  echo "runstate: $state"
}

capture_replies() {
  start_daemon
  echo "== replies"
  mkdir -p "$FIX/replies" "$FIX/stock-output"
  python3 "$HERE/raw_client.py" replies "$SOCK" "$FIX/replies"
  python3 "$HERE/raw_client.py" probe "$SOCK"
  echo "== stock tool against the real daemon"
  local entry name args rc
  for entry in "${COMMANDS[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    rc=0
    # shellcheck disable=SC2086
    CTDB_SOCKET=$SOCK timeout 60 "$CTDB" $args >"$FIX/stock-output/$name.txt" \
      2>"$FIX/stock-output/$name.stderr" || rc=$?
    echo "$rc" >"$FIX/stock-output/$name.rc"
    echo "stock-output/$name: exit $rc"
  done
  # `shutdown` came last; the daemon should now be exiting.
  for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$DAEMON_PID" 2>/dev/null; then echo "daemon still running after shutdown"; fi
  echo "== daemon log (last lines)"
  grep -v talloc "$TMP/ctdbd.log" | tail -15
}

# Ends the daemon of start_daemon and its namespace, so that another can start.
stop_daemon() {
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill "$DAEMON_PID"
    for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DAEMON_PID" 2>/dev/null || true
  fi
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=""
  [ -n "$NS" ] && ip netns del "$NS"
  NS=""
  rm -rf "$TMP/base"
}

capture_databases() {
  start_daemon
  echo "== databases"
  mkdir -p "$FIX/databases"
  python3 "$HERE/raw_client.py" databases "$SOCK" "$FIX/databases"
}

case "$WHAT" in
  requests) capture_requests ;;
  replies) capture_replies ;;
  databases) capture_databases ;;
  all) capture_requests; capture_replies; stop_daemon; capture_databases ;;
  *) echo "usage: $0 [requests|replies|databases|all]" >&2; exit 2 ;;
esac
