#!/bin/bash
# Regenerates ctdb-rs's event-protocol fixtures from the stock Debian binaries
# (ctdb, ctdb-event, ctdb-eventd 4.17.12). Re-runnable: every run rewrites
# ctdbd/tests/fixtures/eventd/.
#
# How: a stock ctdb-eventd runs in test mode (CTDB_TEST_MODE=1, CTDB_BASE=a scratch
# directory, so its socket is $CTDB_BASE/run/eventd.socket and nothing touches
# /run/ctdb or /etc/ctdb), inside a private mount namespace with its own /run.
# Once it listens, its socket is renamed and eventd_proxy.py takes the usual path,
# so the stock `ctdb event ...` / `ctdb scriptstatus` (which exec ctdb-event) talk
# through the proxy, which writes every frame both ways to <case>.hex. Then
# eventd_proxy.py sends hand-made requests straight to the daemon (the SCRIPT
# command, malformed packets) and prints what happened.
#
#   <case>.hex                          frames, `# REQUEST ...`/`# REPLY ...` + hex
#   stock-output/<case>.{txt,stderr,rc} what the stock tool printed (TZ=UTC)
#
# Usage (as root, for the namespace): tests/fixtures-capture/eventd_capture.sh
# shellcheck disable=SC2016  # the scripts' "$1" and "$0" expand when they run, not here
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FIX=$ROOT/ctdbd/tests/fixtures/eventd
CTDB=${CTDB:-/usr/bin/ctdb}
EVENTD=${EVENTD:-/usr/libexec/ctdb/ctdb-eventd}
PROXY=$HERE/eventd_proxy.py

TMP=$(mktemp -d /tmp/ctdb-eventcap.XXXXXX)
BASE=$TMP/base
REAL=$BASE/run/eventd.real.socket
SOCK=$BASE/run/eventd.socket
DAEMON_PID=""

cleanup() {
  set +e
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill "$DAEMON_PID"
    for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DAEMON_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

script() { # script FILE BODY...: an executable shell script
  printf '#!/bin/sh\n%s\n' "$2" >"$1"
  chmod 755 "$1"
}

make_tree() {
  mkdir -p "$BASE/run" "$BASE/share/events/legacy" "$BASE/events/legacy"
  # Provided scripts (DATADIR, $CTDB_BASE/share in test mode); two enabled by link.
  script "$BASE/share/events/legacy/01.ok.script" 'echo "hello $*"'
  script "$BASE/share/events/legacy/05.quiet.script" 'exit 0'
  script "$BASE/share/events/legacy/11.natgw.script" 'exit 0'
  ln -s "$BASE/share/events/legacy/01.ok.script" "$BASE/events/legacy/01.ok.script"
  ln -s "$BASE/share/events/legacy/05.quiet.script" "$BASE/events/legacy/05.quiet.script"
  # Local scripts: one disabled (no execute bits), one enabled.
  printf '#!/bin/sh\nexit 0\n' >"$BASE/events/legacy/02.disabled.script"
  chmod 644 "$BASE/events/legacy/02.disabled.script"
  script "$BASE/events/legacy/03.local.script" 'echo "local $1"'
  echo "not a script" >"$BASE/events/legacy/README"
  # More components, each a directory under $CTDB_BASE/events.
  mkdir -p "$BASE/events/failing" "$BASE/events/slow" "$BASE/events/signal" \
    "$BASE/events/empty" "$BASE/events/queue"
  script "$BASE/events/failing/01.ok.script" 'exit 0'
  script "$BASE/events/failing/02.fail.script" 'printf "bad thing\nsecond line\n"; exit 3'
  script "$BASE/events/failing/03.after.script" 'echo after'
  script "$BASE/events/slow/01.ok.script" 'exit 0'
  script "$BASE/events/slow/02.slow.script" 'echo partial; sleep 30'
  script "$BASE/events/signal/01.sig.script" 'printf "no newline"; kill -TERM $$'
  script "$BASE/events/queue/01.sleep.script" 'sleep 2; echo "slept $1"'
}

start_daemon() {
  # --propagation private: the tmpfs over /run stays in the daemon's namespace.
  CTDB_BASE=$BASE CTDB_TEST_MODE=1 CTDB_INTERACTIVE=1 \
    unshare -m --propagation private sh -c \
    'mount -t tmpfs -o mode=755 eventcap /run && exec "$0"' \
    "$EVENTD" >"$TMP/eventd.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
  [ -S "$SOCK" ] || { cat "$TMP/eventd.log" >&2; exit 1; }
  mv "$SOCK" "$REAL"
}

# tool CASE CONNS ARGS...: the stock ctdb tool through the proxy
tool() {
  local name=$1 conns=$2 rc=0
  shift 2
  python3 "$PROXY" proxy "$SOCK" "$REAL" "$FIX/$name.hex" "$conns" &
  local proxy_pid=$!
  for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
  env CTDB_BASE="$BASE" CTDB_TEST_MODE=1 TZ=UTC timeout 60 "$CTDB" "$@" \
    >"$FIX/stock-output/$name.txt" 2>"$FIX/stock-output/$name.stderr" || rc=$?
  echo "$rc" >"$FIX/stock-output/$name.rc"
  wait "$proxy_pid"
  local frames=0
  [ -f "$FIX/$name.hex" ] && frames=$(grep -c '^#' "$FIX/$name.hex")
  echo "$name: ctdb $* -> exit $rc, $frames frames"
}

# concurrent CASE DELAY 'ARGS1' 'ARGS2': ARGS2 starts DELAY seconds after ARGS1
concurrent() {
  local name=$1 delay=$2 first=$3 second=$4 rc1=0 rc2=0
  python3 "$PROXY" proxy "$SOCK" "$REAL" "$FIX/$name.hex" 2 &
  local proxy_pid=$!
  for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
  # shellcheck disable=SC2086  # word splitting of the arguments is intended
  env CTDB_BASE="$BASE" CTDB_TEST_MODE=1 TZ=UTC "$CTDB" $first \
    >"$FIX/stock-output/$name.1.txt" 2>&1 &
  local first_pid=$!
  sleep "$delay"
  # shellcheck disable=SC2086
  env CTDB_BASE="$BASE" CTDB_TEST_MODE=1 TZ=UTC "$CTDB" $second \
    >"$FIX/stock-output/$name.2.txt" 2>&1 || rc2=$?
  wait "$first_pid" || rc1=$?
  echo "$rc1" >"$FIX/stock-output/$name.1.rc"
  echo "$rc2" >"$FIX/stock-output/$name.2.rc"
  wait "$proxy_pid"
  echo "$name: ctdb $first -> exit $rc1; ctdb $second (after ${delay}s) -> exit $rc2"
}

# README.md stays; everything captured is rewritten.
mkdir -p "$FIX"
rm -f "$FIX"/*.hex
rm -rf "$FIX/stock-output"
mkdir -p "$FIX/stock-output"
make_tree
start_daemon

echo "== stock tool through the proxy"
tool status_never_run 1 event status legacy monitor
tool run_monitor 1 event run 10 legacy monitor
tool status_monitor 1 event status legacy monitor
tool scriptstatus 1 scriptstatus
tool scriptstatus_startup 1 scriptstatus startup
tool run_takeip 1 event run 10 legacy takeip eth1 10.0.0.31 24
tool status_takeip 1 event status legacy takeip
tool run_failing 1 event run 10 failing monitor
tool status_failing 1 event status failing monitor
tool run_timeout 1 event run 1 slow monitor
tool status_timeout 1 event status slow monitor
tool run_signal 1 event run 10 signal startup
tool status_signal 1 event status signal startup
tool run_empty 1 event run 10 empty monitor
tool status_empty 1 event status empty monitor
tool run_unknown_component 1 event run 10 nosuch monitor
tool status_unknown_component 1 event status nosuch monitor
tool run_unknown_event 1 event run 10 legacy bogus
tool status_unknown_event 1 event status legacy bogus
tool run_timeout_zero 1 event run 0 legacy monitor
tool run_negative_timeout 1 event run -5 legacy monitor
CTDB_EVENT_RUN_ALL=1 tool run_all_flag 1 event run 10 failing monitor
tool status_all_flag 1 event status failing monitor

echo "== cancellation"
concurrent cancel_monitor 0.5 "event run 10 queue monitor" "event run 10 queue startup"
concurrent monitor_while_busy 0.5 "event run 10 queue startup" "event run 10 queue monitor"
tool status_queue_monitor 1 event status queue monitor

echo "== local commands (expect no connection)"
export EVENTD_PROXY_ACCEPT_TIMEOUT=3
tool script_list 1 event script list legacy
tool script_enable_provided 1 event script enable legacy 11.natgw
tool script_enable_local 1 event script enable legacy 02.disabled
tool script_disable_provided 1 event script disable legacy 05.quiet
tool script_enable_missing 1 event script enable legacy 99.missing
tool script_list_after 1 event script list legacy
unset EVENTD_PROXY_ACCEPT_TIMEOUT
echo "$BASE/events/legacy after enable/disable:"
# shellcheck disable=SC2012  # a listing for people to read
ls -l "$BASE/events/legacy" | sed "s|$BASE|\$CTDB_BASE|g"

echo "== raw requests to the stock daemon"
python3 "$PROXY" raw "$REAL" "$FIX"

echo "== daemon log (last lines)"
tail -20 "$TMP/eventd.log"
