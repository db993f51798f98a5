#!/usr/bin/env bash
# The Debian package test (a step of tests/run-all.sh): builds the package and
# installs it in a throw-away root, then drives the installed daemon with the
# installed tool.
#
#     tests/package/deb-test.sh [--profile debug|release]
#
# The profile is packaging/build-deb.sh's. The default, debug, packages the
# binaries of the workspace build (tests/run-all.sh's build step, so nothing is
# compiled again); release builds the package as a machine would get it. Root only.
#
# The throw-away root: a private mount, network and PID namespace (unshare) in
# which an overlay over / with a tmpfs upper layer is mounted, with fresh /proc,
# /sys, /run and /tmp. Every package command runs chrooted into it, so dpkg's
# changes to its database, /etc, /usr and /var land in the tmpfs and vanish with
# the namespace; the PID namespace takes any process left behind with it (its
# first process ending kills the rest); its network has only lo, so the daemon's
# TCP 4379 meets nothing. Afterwards the host's ctdb and ctdb-rs package state and
# the files of its ctdb package are checked unchanged.
#
# Inside, in order, any step failing fails the test:
#  1. dpkg -i with Debian's ctdb installed: the package conflicts with and
#     replaces ctdb, so dpkg removes ctdb in favour of it (never both installed);
#  2. a fresh install (both purged, dpkg -i): the programs, scripts, conffiles and
#     unit are in place, postinst enabled 00.ctdb, 01.reclock and 10.interface,
#     and there is no nodes file (the unit's condition keeps it stopped);
#  3. systemd-analyze verify passes on the installed unit;
#  4. with /etc/ctdb/nodes = 127.0.0.1, the unit's ExecStart line starts the
#     daemon; the installed `ctdb status` shows the node OK (polled, deadline) and
#     `ctdb scriptstatus` the three enabled scripts OK;
#  5. the unit's ExecStop line (`ctdb shutdown`) stops it: ctdbd exits 0, its
#     guardian too (no process is left), socket and pid file are gone, nothing
#     listens on 4379;
#  6. dpkg --purge ctdb-rs removes the package, its links, its files and the
#     daemon's (/var/lib/ctdb goes).
set -euo pipefail

die() {
    echo "deb-test: FAILED: $*" >&2
    exit 1
}

step() {
    echo "deb-test: $*"
}

# Polls COMMAND... every 0.1 s until it succeeds or SECONDS pass.
wait_until() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.1
    done
}

# ---- inside the namespaces -------------------------------------------------

# Runs a command in the throw-away root with a service's clean environment.
in_root() {
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C "$@"
}

package_status() {
    # shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not the shell's
    in_root dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true
}

# Processes of this PID namespace other than this shell, that are not zombies.
other_processes() {
    local dir pid stat state
    for dir in "$root"/proc/[0-9]*; do
        pid=${dir##*/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        { stat=$(<"$dir/stat"); } 2>/dev/null || continue
        state=${stat##*) }
        state=${state%% *}
        [[ $state == Z ]] && continue
        echo "$pid $(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null)"
    done
}

no_other_processes() {
    [[ -z $(other_processes) ]]
}

node_ok() {
    local status
    status=$(in_root ctdb status 2>&1) || return 1
    grep -Eq '^pnn:0 +127\.0\.0\.1 +OK \(THIS NODE\)$' <<<"$status" &&
        grep -q '^Recovery mode:NORMAL' <<<"$status"
}

daemon_gone() {
    local state
    [[ -e $root/proc/$daemon_pid/stat ]] || return 0
    state=$(<"$root/proc/$daemon_pid/stat")
    state=${state##*) }
    [[ ${state%% *} == Z ]]
}

inside_exit() {
    local status=$?
    if [[ $status -ne 0 && -n ${root:-} && -s $root/tmp/ctdbd.log ]]; then
        echo "deb-test: the daemon's log:" >&2
        sed 's/^/    /' "$root/tmp/ctdbd.log" >&2
    fi
    # Leaving ends the PID namespace (its processes die) and the mount namespace
    # (the overlay and its tmpfs go).
    exit "$status"
}

inside() {
    local scratch=$1 deb=$2 host_mnt_ns=$3
    root=$scratch/root
    daemon_pid=
    trap inside_exit EXIT

    [[ $(readlink /proc/self/ns/mnt) != "$host_mnt_ns" ]] ||
        die "not in a private mount namespace: refusing to run dpkg"
    mount -t tmpfs -o mode=0700 ctdb-rs-deb-test "$scratch"
    mkdir "$scratch/upper" "$scratch/work" "$root"
    mount -t overlay -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" \
        ctdb-rs-deb-test "$root"
    [[ $(findmnt -n -o FSTYPE --mountpoint "$root") == overlay ]] ||
        die "$root is not the overlay: refusing to run dpkg"
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=0755 run "$root/run"
    mount -t tmpfs -o mode=1777 tmp "$root/tmp"
    ip link set lo up
    cp "$deb" "$root/tmp/"
    local pkg=/tmp/${deb##*/}

    step "1. dpkg -i with Debian's ctdb installed removes it in favour of ctdb-rs"
    [[ $(package_status ctdb) == "install ok installed" ]] ||
        die "Debian's ctdb is not installed on this machine (tests/install-deps.sh test installs it)"
    local out
    out=$(in_root dpkg -i "$pkg" 2>&1) || die "dpkg -i failed: $out"
    grep -q 'will remove ctdb in favour of ctdb-rs' <<<"$out" ||
        die "dpkg -i did not remove ctdb for ctdb-rs: $out"
    [[ $(package_status ctdb) == *" ok config-files" ]] ||
        die "ctdb is '$(package_status ctdb)' beside ctdb-rs"
    [[ $(package_status ctdb-rs) == "install ok installed" ]] || die "ctdb-rs is '$(package_status ctdb-rs)'"
    [[ $(in_root dpkg-query -S /usr/sbin/ctdbd) == "ctdb-rs: /usr/sbin/ctdbd" ]] ||
        die "/usr/sbin/ctdbd is not ctdb-rs's"

    step "2. a fresh install: dpkg --purge ctdb-rs ctdb; dpkg -i $pkg"
    in_root dpkg --purge ctdb-rs ctdb >/dev/null || die "dpkg --purge ctdb-rs ctdb failed"
    [[ ! -e $root/usr/sbin/ctdbd && ! -e $root/etc/ctdb/ctdb.conf ]] || die "files left after the purge"
    in_root dpkg -i "$pkg" >/dev/null || die "dpkg -i failed"
    [[ $(package_status ctdb-rs) == "install ok installed" ]] || die "ctdb-rs is '$(package_status ctdb-rs)'"
    local file
    for file in /usr/sbin/ctdbd /usr/sbin/ctdb-rs-guardian /usr/sbin/ctdb-rs-lock-helper \
        /usr/sbin/ctdb-rs-reclock-helper /usr/bin/ctdb \
        /usr/share/ctdb/events/legacy/{00.ctdb,01.reclock,10.interface,41.httpd,49.winbind,50.samba,60.nfs}.script; do
        [[ -x $root$file ]] || die "$file is not installed as an executable"
    done
    for file in /etc/ctdb/ctdb.conf /etc/ctdb/script.options /etc/ctdb/functions; do
        grep -qx "$file" "$root/var/lib/dpkg/info/ctdb-rs.conffiles" || die "$file is not a conffile"
    done
    [[ -f $root/lib/systemd/system/ctdb.service ]] || die "no /lib/systemd/system/ctdb.service"
    [[ -f $root/usr/share/doc/ctdb-rs/examples/nodes ]] || die "no example nodes file"
    for file in 00.ctdb 01.reclock 10.interface; do
        [[ $(readlink "$root/etc/ctdb/events/legacy/$file.script") == /usr/share/ctdb/events/legacy/$file.script ]] ||
            die "postinst did not enable $file"
    done
    [[ ! -e $root/etc/ctdb/events/legacy/50.samba.script ]] || die "50.samba is enabled on a fresh install"
    [[ ! -e $root/etc/ctdb/nodes ]] || die "a fresh install has /etc/ctdb/nodes"
    local unit=$root/lib/systemd/system/ctdb.service
    grep -qx 'ConditionFileNotEmpty=/etc/ctdb/nodes' "$unit" || die "the unit does not wait for a nodes file"

    step "3. systemd-analyze verify /lib/systemd/system/ctdb.service"
    in_root systemd-analyze verify /lib/systemd/system/ctdb.service || die "systemd-analyze verify failed"

    step "4. the unit's ExecStart starts the daemon; ctdb status shows the node OK"
    local exec_start exec_stop
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    exec_stop=$(sed -n 's/^ExecStop=//p' "$unit")
    [[ $exec_start == /* && $exec_stop == /* ]] || die "unexpected ExecStart/ExecStop: '$exec_start' '$exec_stop'"
    echo 127.0.0.1 >"$root/etc/ctdb/nodes"
    local -a start_command stop_command
    read -r -a start_command <<<"$exec_start"
    read -r -a stop_command <<<"$exec_stop"
    # Not through in_root: $! must be the daemon itself (chroot and env exec it).
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C "${start_command[@]}" \
        </dev/null >"$root/tmp/ctdbd.log" 2>&1 &
    daemon_pid=$!
    wait_until 60 node_ok || die "the node is not OK after 60 s: $(in_root ctdb status 2>&1)"
    in_root ctdb status
    local scripts
    scripts=$(in_root ctdb scriptstatus 2>&1) || die "ctdb scriptstatus failed: $scripts"
    for file in 00.ctdb 01.reclock 10.interface; do
        grep -Eq "^$file +OK " <<<"$scripts" || die "scriptstatus does not show $file OK: $scripts"
    done
    [[ -S $root/run/ctdb/ctdbd.socket && -s $root/run/ctdb/ctdbd.pid ]] ||
        die "no socket or pid file in /run/ctdb"

    step "5. the unit's ExecStop stops it; nothing is left"
    in_root "${stop_command[@]}" || die "'$exec_stop' failed"
    wait_until 30 daemon_gone || die "ctdbd still runs 30 s after '$exec_stop'"
    local daemon_status=0
    wait "$daemon_pid" || daemon_status=$?
    [[ $daemon_status -eq 0 ]] || die "ctdbd exited with status $daemon_status"
    wait_until 30 no_other_processes || die "processes left after the shutdown: $(other_processes)"
    [[ ! -e $root/run/ctdb/ctdbd.socket && ! -e $root/run/ctdb/ctdbd.pid ]] ||
        die "socket or pid file left in /run/ctdb: $(ls -l "$root/run/ctdb")"
    [[ -z $(in_root ss -Htln 'sport = :4379') ]] || die "something still listens on 4379"

    step "6. dpkg --purge ctdb-rs"
    in_root dpkg --purge ctdb-rs >/dev/null || die "dpkg --purge ctdb-rs failed"
    for file in /usr/sbin/ctdbd /usr/bin/ctdb /lib/systemd/system/ctdb.service /etc/ctdb/ctdb.conf \
        /etc/ctdb/nodes /etc/ctdb/events/legacy/00.ctdb.script; do
        [[ ! -e $root$file && ! -L $root$file ]] || die "$file is left after the purge"
    done
    # The daemon's database files and the scripts' state go too, and with them
    # the package's /var/lib/ctdb.
    [[ ! -e $root/var/lib/ctdb ]] || die "/var/lib/ctdb is left after the purge: $(find "$root/var/lib/ctdb")"
    step "inside: all passed"
}

# ---- on the host -----------------------------------------------------------

# What must not change on the host: the two packages' state and ctdb's files.
host_state() {
    dpkg-query -W -f='${Package} ${Version} ${Status}\n' ctdb ctdb-rs 2>&1 || true
    dpkg --verify ctdb 2>&1 || true
}

main() {
    local profile=debug
    while [[ $# -gt 0 ]]; do
        case $1 in
        --profile)
            profile=${2:-}
            shift 2 || die "--profile needs a value"
            ;;
        *) die "usage: $0 [--profile debug|release]" ;;
        esac
    done
    [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, mounts, chroot): sudo $0"
    cd "$(dirname "$0")/../.."
    command -v cargo >/dev/null || die "cargo is not on PATH (under sudo: sudo env PATH=\"\$PATH\" $0)"
    local dir
    for dir in /etc /usr /var; do
        [[ $(findmnt -n -o TARGET --target "$dir") == / ]] ||
            die "$dir is a separate mount: the overlay over / would not cover it"
    done

    local deb
    if [[ $profile == debug ]]; then
        cargo build --workspace --all-targets
        deb=$(packaging/build-deb.sh --profile debug --no-build | tail -n 1)
    else
        deb=$(packaging/build-deb.sh --profile "$profile" | tail -n 1)
    fi
    [[ -f $deb ]] || die "packaging/build-deb.sh made no package"
    step "built $deb ($(du -h "$deb" | cut -f1))"
    dpkg-deb --info "$deb" | sed -n 's/^ \(Depends\|Conflicts\|Replaces\|Provides\):/    &/p'
    # ctdbd links libtdb (the clustered databases): the package must pull it in.
    dpkg-deb --field "$deb" Depends | grep -Eq '(^|, )libtdb1( |,|$)' ||
        die "the package does not depend on libtdb1: $(dpkg-deb --field "$deb" Depends)"

    local before after scratch status=0
    before=$(host_state)
    scratch=$(mktemp -d /tmp/ctdb-rs-deb-test.XXXXXX)
    unshare --mount --propagation private --net --pid --fork --kill-child -- \
        "$0" --inside "$scratch" "$(realpath "$deb")" "$(readlink /proc/self/ns/mnt)" || status=$?
    rmdir "$scratch" || die "$scratch is not empty on the host"
    after=$(host_state)
    if [[ $before != "$after" ]]; then
        printf 'before:\n%s\nafter:\n%s\n' "$before" "$after" >&2
        die "the host's package state changed"
    fi
    step "the host's ctdb package is unchanged: $(dpkg-query -W -f='${Package} ${Version} ${Status}' ctdb)"
    [[ $status -eq 0 ]] || die "the test in the throw-away root failed (exit $status)"
    step "all passed"
}

if [[ ${1:-} == --inside ]]; then
    shift
    inside "$@"
else
    main "$@"
fi
