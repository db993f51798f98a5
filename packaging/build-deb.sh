#!/usr/bin/env bash
# Builds the ctdb-rs Debian package (Debian 12) from this checkout:
#
#     packaging/build-deb.sh [--profile release|debug] [--no-build] [--out DIR]
#
# --profile  cargo profile of the binaries: release (the default, for machines) or
#            debug (for tests: unoptimised, quick to build)
# --no-build package the binaries already in target/release or target/debug (the
#            package test takes those of tests/run-all.sh's workspace build: building
#            the four alone would compile the crates again with other features)
# --out      where the .deb goes (default: target/debian); the last line printed
#            is its path
#
# A staging tree and dpkg-deb, no debhelper: cargo builds ctdbd, ctdb and the
# helpers; their debug info is stripped (as dh_strip does); dpkg-shlibdeps computes
# the libraries they need (libtdb1 among them: ctdbd and its lock helper link libtdb
# for the clustered databases); the rest of Depends is what the event scripts run.
# Needs cargo, dpkg-dev (dpkg-shlibdeps) and binutils (objcopy). Any user can run
# it: dpkg-deb --root-owner-group makes every file root's.
#
# Layout (Debian 12's ctdb package uses the same paths, so the two conflict):
#   /usr/sbin/ctdbd, ctdb-rs-guardian, ctdb-rs-lock-helper, ctdb-rs-reclock-helper
#                       the helpers sit beside ctdbd, where the daemon looks first
#   /usr/bin/ctdb       the administration tool
#   /usr/share/ctdb/events/legacy/NN.name.script    every event script
#   /etc/ctdb/functions, ctdb.conf, script.options  conffiles
#   /etc/ctdb/events/legacy/     enabled scripts: links made by postinst
#   /lib/systemd/system/ctdb.service                 the unit (etc/ctdb.service)
#   /usr/share/doc/ctdb-rs/      README.md, README.events.md, copyright, and
#                                examples/ (etc/'s cluster examples: nodes,
#                                public_addresses, ctdb.conf, script.options, ...)
# No /etc/ctdb/nodes: the unit starts nothing until the administrator writes it.
set -euo pipefail

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0"
}

die() {
    echo "build-deb: $*" >&2
    exit 1
}

profile=release
build=yes
out=
while [[ $# -gt 0 ]]; do
    case $1 in
    --profile)
        profile=${2:-}
        shift 2 || die "--profile needs a value (release or debug)"
        ;;
    --out)
        out=${2:-}
        shift 2 || die "--out needs a directory"
        ;;
    --no-build)
        build=no
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument '$1'"
        ;;
    esac
done
case $profile in
release) cargo_profile=release target_subdir=release ;;
debug | dev) cargo_profile=dev target_subdir=debug ;;
*) die "--profile must be release or debug, not '$profile'" ;;
esac

cd "$(dirname "$0")/.."
top=$(pwd)
out=${out:-$top/target/debian}
for tool in cargo dpkg-deb dpkg-shlibdeps objcopy; do
    command -v "$tool" >/dev/null || die "needs $tool (cargo: rustup; dpkg-shlibdeps: dpkg-dev; objcopy: binutils)"
done

sbin_programs=(ctdbd ctdb-rs-guardian ctdb-rs-lock-helper ctdb-rs-reclock-helper)
bin_programs=(ctdb)
bin_args=()
for program in "${sbin_programs[@]}" "${bin_programs[@]}"; do
    bin_args+=(--bin "$program")
done
if [[ $build == yes ]]; then
    cargo build --locked --profile "$cargo_profile" -p ctdbd -p ctl -p lockvol "${bin_args[@]}"
fi

version=$(cargo pkgid -p ctdbd | sed 's/.*[#@]//')
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "cannot read the version from 'cargo pkgid -p ctdbd' (got '$version')"
arch=$(dpkg --print-architecture)
deb=$out/ctdb-rs_${version}_${arch}.deb

work=$(mktemp -d "${TMPDIR:-/tmp}/ctdb-rs-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/root
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/sbin" "$stage/usr/bin" \
    "$stage/usr/share/ctdb/events/legacy" "$stage/etc/ctdb/events/legacy" \
    "$stage/lib/systemd/system" "$stage/var/lib/ctdb" \
    "$stage/usr/share/doc/ctdb-rs/examples"

target=$top/target/$target_subdir
for program in "${sbin_programs[@]}" "${bin_programs[@]}"; do
    [[ -x $target/$program ]] || die "no $target/$program (build it, or drop --no-build)"
done
for program in "${sbin_programs[@]}"; do
    objcopy --strip-debug "$target/$program" "$stage/usr/sbin/$program"
done
for program in "${bin_programs[@]}"; do
    objcopy --strip-debug "$target/$program" "$stage/usr/bin/$program"
done
chmod 0755 "$stage"/usr/sbin/* "$stage"/usr/bin/*

for script in "$top"/events.d/*.script; do
    install -m 0755 "$script" "$stage/usr/share/ctdb/events/legacy/"
done
install -m 0644 "$top/events.d/functions" "$stage/etc/ctdb/functions"
install -m 0644 "$top/packaging/deb/ctdb.conf" "$stage/etc/ctdb/ctdb.conf"
install -m 0644 "$top/packaging/deb/script.options" "$stage/etc/ctdb/script.options"
install -m 0644 "$top/etc/ctdb.service" "$stage/lib/systemd/system/ctdb.service"

doc=$stage/usr/share/doc/ctdb-rs
install -m 0644 "$top/README.md" "$doc/README.md"
install -m 0644 "$top/events.d/README.md" "$doc/README.events.md"
install -m 0644 "$top/packaging/deb/copyright" "$doc/copyright"
for example in ctdb.conf nodes public_addresses script.options smb.conf ganesha.conf; do
    install -m 0644 "$top/etc/$example" "$doc/examples/$example"
done

for script in postinst prerm postrm; do
    install -m 0755 "$top/packaging/deb/$script" "$stage/DEBIAN/$script"
done
(cd "$stage" && find etc -type f | sort | sed 's|^|/|') >"$stage/DEBIAN/conffiles"

# dpkg-shlibdeps wants a source package's debian/control around it.
mkdir -p "$work/src/debian"
printf 'Source: ctdb-rs\n\nPackage: ctdb-rs\nArchitecture: any\n' >"$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O \
    "${sbin_programs[@]/#/$stage/usr/sbin/}" "${bin_programs[@]/#/$stage/usr/bin/}") ||
    die "dpkg-shlibdeps failed"
shlibs=${shlibs#shlibs:Depends=}
[[ -n $shlibs ]] || die "dpkg-shlibdeps found no libraries"
[[ $shlibs == *libtdb1* ]] || die "dpkg-shlibdeps did not find libtdb1 in the binaries (Depends: $shlibs)"

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: ctdb-rs
Version: $version
Architecture: $arch
Maintainer: ctdb-rs developers <ctdb-rs@example.invalid>
Installed-Size: $installed_size
Depends: $shlibs, iproute2, mawk | awk
Suggests: samba, winbind, nfs-ganesha, nfs-ganesha-vfs
Conflicts: ctdb
Replaces: ctdb
Provides: ctdb
Section: net
Priority: optional
Description: clustered NAS head daemon, compatible with Samba's CTDB
 ctdb-rs is a cluster daemon for NAS heads in Rust, wire-compatible with
 CTDB 4.17: it elects a leader through a cluster lock, moves public
 addresses between healthy nodes and runs event scripts that start, stop
 and watch Samba, winbind, NFS-Ganesha and a web server.
 .
 This package replaces Debian's ctdb: it installs ctdbd, the ctdb tool and
 the event scripts at CTDB's paths, and the ctdb systemd unit.
EOF
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
    xargs -d '\n' md5sum) >"$stage/DEBIAN/md5sums"

mkdir -p "$out"
# The debug profile's package is for tests: fast compression over a small file.
compress=(-Zxz)
if [[ $profile != release ]]; then
    compress=(-Zgzip -z1)
fi
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >/dev/null
echo "$deb"
