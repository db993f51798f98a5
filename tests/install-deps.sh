# shellcheck shell=bash
# The one install step of ctdb-rs: sourced (not run) by tests/vm/demo.sh,
# tests/run-all.sh and, through run-all.sh, .ci/run, as
#
#     source tests/install-deps.sh demo|test [gluster]
#
# It installs only what is missing, so a second call installs nothing:
# - demo: what ctdb-rs itself needs to build and to run the demo cluster (Samba,
#   iproute2, util-linux, a C linker, libtdb, the Rust toolchain). Not Debian's ctdb.
# - test: the demo's needs, plus what the test suites drive or compare against:
#   Debian's stock CTDB 4.17 (the compatibility reference), tdbdump, winbind,
#   Samba's smbtorture (samba-testsuite), NFS-Ganesha and libnfs, dnsmasq, dig,
#   nftables, GlusterFS (server and FUSE client) and Samba's VFS modules
#   (vfs_glusterfs, vfs_fileid), shellcheck, rustfmt and clippy, what the
#   package test needs (dpkg-dev, systemd-analyze), and smbprotocol (PyPI) in a
#   virtual environment for the SMB test client.
# - gluster (after demo): GlusterFS's server and FUSE client and Samba's VFS
#   modules too, for `tests/vm/demo.sh --gluster` (the test profile has them).
# It creates the host directories that the sandboxes mount their private copies
# over, and leaves PATH pointing at cargo. Debian 12 (apt) and root only; anything
# it cannot do is one plain line on standard error and a non-zero return.

ctdbrs_install_fail() {
    echo "install-deps: $*" >&2
    return 1
}

ctdbrs_install_deps() {
    local profile=${1:-} extra=${2:-}
    local packages=(
        samba smbclient samba-common-bin    # smbd, smbclient, testparm, smbpasswd
        python3-samba                       # Samba's client bindings: the demo's share-mode client
        iproute2 util-linux mount procps    # ip; nsenter, unshare, setpriv; mount; ps
        gcc libc6-dev pkg-config            # the linker and C headers cargo needs
        libtdb-dev                          # libtdb, which ctdbd links (clustered databases)
        ca-certificates curl                # rustup, if no toolchain is installed
    )
    local components=()
    case $profile in
    demo) ;;
    test)
        packages+=(
            ctdb                            # the reference daemon and tool
            tdb-tools                       # tdbdump, reading the files ctdbd writes
            winbind                         # winbindd (49.winbind)
            samba-testsuite                 # smbtorture, Samba's protocol tests (tests/vm/tests/smbtorture.rs)
            nfs-ganesha nfs-ganesha-vfs     # the NFS server 60.nfs manages
            libnfs-utils dnsmasq-base       # userspace NFS client; round-robin DNS
            bind9-dnsutils                  # dig, asking the daemon's DNS responder
            shellcheck                      # the event scripts are kept shellcheck-clean
            nftables                        # a test drops a node's own TCP resets
            psmisc python3                  # fuser for debugging; fixture tools
            python3-venv                    # the SMB test client's environment (below)
            dpkg-dev binutils systemd       # the package test: dpkg-shlibdeps, objcopy, systemd-analyze
            glusterfs-server glusterfs-client  # the GlusterFS volume of tests/vm (gluster.rs)
            samba-vfs-modules libgfapi0     # vfs_fileid, vfs_glusterfs (libgfapi is only a Recommends)
        )
        components=(rustfmt clippy)
        ;;
    *)
        ctdbrs_install_fail "usage: source tests/install-deps.sh demo|test [gluster]" || return
        ;;
    esac
    case $extra in
    '') ;;
    gluster)
        if [[ $profile == demo ]]; then
            packages+=(glusterfs-server glusterfs-client  # the demo's GlusterFS volume
                samba-vfs-modules)                      # vfs_fileid: one file id on every node
        fi
        ;;
    *)
        ctdbrs_install_fail "usage: source tests/install-deps.sh demo|test [gluster]" || return
        ;;
    esac

    if [[ $(id -u) -ne 0 ]]; then
        ctdbrs_install_fail "must run as root (it installs packages and creates namespaces): use sudo" || return
    fi
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        ctdbrs_install_fail "needs Debian 12's apt and dpkg; install by hand: ${packages[*]}" || return
    fi

    local missing=() p
    for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if [[ ${#missing[@]} -ne 0 ]]; then
        echo "install-deps: installing ${missing[*]}"
        # A package must not start its service here (Debian's ctdb would start a
        # system ctdbd owning the host's /run/ctdb): policy-rc.d refuses every
        # start during the install, whether or not systemd runs.
        local created_policy=no
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\n# ctdb-rs install-deps: no service starts during installation\nexit 101\n' \
                >/usr/sbin/policy-rc.d
            chmod 0755 /usr/sbin/policy-rc.d
            created_policy=yes
        fi
        local status=0
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" || status=$?
        if [[ $created_policy == yes ]]; then
            rm -f /usr/sbin/policy-rc.d
        fi
        if [[ $status -ne 0 ]]; then
            ctdbrs_install_fail "apt-get could not install ${missing[*]} (exit $status)" || return
        fi
    fi

    # A system ctdbd (started by a package or anything else) owns the host's
    # /run/ctdb; nothing here needs it and it only costs CPU: stop it.
    if [[ -s /run/ctdb/ctdbd.pid ]] && kill -0 "$(cat /run/ctdb/ctdbd.pid)" 2>/dev/null; then
        echo "install-deps: stopping the system ctdbd (pid $(cat /run/ctdb/ctdbd.pid))"
        if [[ -d /run/systemd/system ]]; then
            systemctl stop ctdb.service || true
        fi
        if [[ -s /run/ctdb/ctdbd.pid ]] && kill -0 "$(cat /run/ctdb/ctdbd.pid)" 2>/dev/null; then
            kill "$(cat /run/ctdb/ctdbd.pid)"
        fi
    fi

    # Mount points for each sandbox's private copy of CTDB's and Samba's
    # directories. Debian's ctdb and samba packages create them; without the
    # ctdb package, nothing else does.
    install -d /etc/ctdb /var/lib/ctdb /usr/share/ctdb/events/legacy \
        /etc/samba /var/lib/samba /var/cache/samba /var/log/samba /srv
    if [[ $profile == test || $extra == gluster ]]; then
        # glusterd's state and logs, private to each node of the GlusterFS tests.
        install -d /var/lib/glusterd /var/log/glusterfs
    fi

    # The SMB2 client of the clustered-Samba tests (tests/vm/src/smb_client.py)
    # runs on smbprotocol from PyPI, in a virtual environment of its own so that
    # nothing is installed into Debian's Python.
    if [[ $profile == test ]]; then
        local venv=/opt/ctdb-rs-test/venv smbprotocol_version=1.17.0
        if ! "$venv/bin/python3" -c "import smbprotocol, sys; from importlib.metadata import version; sys.exit(version('smbprotocol') != '$smbprotocol_version')" 2>/dev/null; then
            echo "install-deps: installing smbprotocol $smbprotocol_version into $venv"
            if ! /usr/bin/python3 -m venv "$venv" ||
                ! "$venv/bin/pip" install -q --disable-pip-version-check "smbprotocol==$smbprotocol_version"; then
                ctdbrs_install_fail "could not install smbprotocol $smbprotocol_version into $venv" || return
            fi
        fi
    fi

    # The Rust toolchain: Debian's rustc is older than our rust-version, so
    # rustup. Under sudo, the invoking user's toolchain counts too.
    local dir
    for dir in "$HOME/.cargo/bin" "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)/.cargo/bin"; do
        if ! command -v cargo >/dev/null && [[ -x $dir/cargo ]]; then
            export PATH=$dir:$PATH
        fi
    done
    if ! command -v cargo >/dev/null; then
        # rustup-init straight from the Rust project's release server (the same
        # program that https://sh.rustup.rs fetches), so no shell script is piped.
        echo "install-deps: no Rust toolchain; installing one with rustup"
        # It must be called rustup-init: rustup decides what to be by its name.
        local tmp
        tmp=$(mktemp -d)
        if ! curl --proto '=https' --tlsv1.2 -sSf -o "$tmp/rustup-init" \
            "https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"; then
            rm -rf "$tmp"
            ctdbrs_install_fail "could not download rustup-init; install Rust by hand (https://rustup.rs)" || return
        fi
        chmod +x "$tmp/rustup-init"
        if ! "$tmp/rustup-init" -y --no-modify-path --profile minimal; then
            rm -rf "$tmp"
            ctdbrs_install_fail "rustup-init could not install Rust (see https://rustup.rs)" || return
        fi
        rm -rf "$tmp"
        export PATH=$HOME/.cargo/bin:$PATH
    fi
    local c
    for c in "${components[@]}"; do
        if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
            if ! command -v rustup >/dev/null || ! rustup component add "$c"; then
                ctdbrs_install_fail "cargo $c is missing and rustup could not add it" || return
            fi
        fi
    done
}

ctdbrs_install_deps "$@"
