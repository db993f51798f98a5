#!/usr/bin/env bash
# Proves that the README's two commands work as typed on a fresh Debian 12:
# builds a fresh Debian 12 root with debootstrap (minbase plus sudo: no Rust, no
# Samba, no CTDB, no compiler), puts a clean clone of this repository's HEAD in it,
# and runs, inside a private mount namespace whose root it is (pivot_root),
#
#     sudo tests/vm/demo.sh
#     sudo tests/run-all.sh
#
# each of which must install what it lacks (tests/install-deps.sh) and pass. The
# chroot shares the host's kernel and network stack (namespaces work as on a real
# machine); its packages, Rust toolchain, cargo registry and build are its own.
# Everything is removed at the end, also on failure; with --keep the root stays
# for inspection (its path is printed).
#
# Usage: sudo tests/fresh-machine.sh [--keep] [--only demo|tests]
# Needs: root, network access to Debian's mirror, static.rust-lang.org, crates.io.
# Takes 20-40 minutes on 2 cores (a full build and test run from nothing); not part
# of tests/run-all.sh.
set -euo pipefail

keep=no
only=
while [[ $# -gt 0 ]]; do
    case $1 in
    --keep) keep=yes ;;
    --only)
        only=${2:?--only needs demo or tests}
        shift
        ;;
    --inside)
        # Second stage, in the private mount namespace: mount the kernel's file
        # systems into the root and run the commands there.
        root=$2
        cmd=$3
        # The new root must be a mount point, as / is on a machine: `ip netns add`
        # makes / a slave mount, which fails on a plain directory.
        mount --bind "$root" "$root"
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs -o mode=0755 tmpfs "$root/run"
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        # pivot_root, not chroot: the tests enter namespaces with nsenter, which
        # lands at the mount namespace's root, and that must be the new root.
        cd "$root"
        mkdir -p .old-root
        pivot_root . .old-root
        umount -l /.old-root
        exec /usr/bin/env -i HOME=/root TERM=dumb \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            /bin/bash -c "cd /root/ctdb-rs && $cmd"
        ;;
    *)
        echo "usage: $0 [--keep] [--only demo|tests]" >&2
        exit 2
        ;;
    esac
    shift
done

if [[ $(id -u) -ne 0 ]]; then
    echo "tests/fresh-machine.sh must run as root: sudo $0" >&2
    exit 1
fi
repo=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v debootstrap >/dev/null; then
    echo "== installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

root=$(mktemp -d /var/tmp/ctdbrs-fresh-XXXXXX)
# It becomes /: readable by everyone, as / is (mktemp makes it 0700, and smbd,
# working as the test user, could not reach the share).
chmod 0755 "$root"
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    # The mounts lived in the namespace of the second stage and went with it;
    # refuse to delete anything that is still mounted.
    if findmnt -rno TARGET | grep -q "^$root"; then
        echo "fresh-machine: $root still has mounts; not removing it" >&2
        return
    fi
    if [[ $keep == yes ]]; then
        echo "fresh-machine: kept $root"
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT

echo "== debootstrap bookworm (minbase + sudo) into $root"
debootstrap --variant=minbase --include=sudo bookworm "$root" http://deb.debian.org/debian \
    >"$root.debootstrap.log" 2>&1 || {
    tail -20 "$root.debootstrap.log" >&2
    exit 1
}
rm -f "$root.debootstrap.log"
cp /etc/apt/sources.list "$root/etc/apt/sources.list" 2>/dev/null || true
if [[ -d /etc/apt/sources.list.d ]]; then
    cp -r /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/"
fi

# This workplace reaches the package registries through a proxy whose certificate
# authority is in the host's bundle, as it would be on any fresh machine here:
# hand it to the new root's ca-certificates (which install-deps installs).
mkdir -p "$root/usr/local/share/ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/host-authorities.crt"

echo "== a clean clone of $(git -C "$repo" rev-parse --short HEAD) into /root/ctdb-rs"
git clone -q --no-hardlinks "$repo" "$root/root/ctdb-rs"

status=0
run_stage() {
    local name=$1 cmd=$2
    echo
    echo "== [$name] $cmd (in the fresh root)"
    if unshare --mount --propagation private -- "$0" --inside "$root" "$cmd"; then
        echo "== [$name] passed"
    else
        echo "== [$name] FAILED"
        status=1
    fi
}
if [[ -z $only || $only == demo ]]; then
    run_stage demo "sudo tests/vm/demo.sh"
fi
if [[ -z $only || $only == tests ]]; then
    run_stage tests "sudo tests/run-all.sh"
fi
exit $status
