#!/usr/bin/env bash
# Runs every ctdb-rs test and check: the one command for developers and CI.
#
# Must run as root: tests/vm creates network and mount namespaces and starts real
# daemons in them. Steps: install what is missing (tests/install-deps.sh test,
# nothing if all is there), build everything, run every test (unit, simulation,
# namespace suites), the Debian package test (tests/package/deb-test.sh: the
# package built from the debug binaries, installed in a throw-away root), then the
# gates of STYLE.md §14 (rustfmt, clippy, rustdoc) and the shell linter over the
# event scripts (events.d), the package's scripts and these set-up scripts.
# Every step runs even if an earlier check fails (except that nothing runs without
# a build); the exit status is non-zero if any step failed.
#
# Environment: CTDB_RS_DAEMON=stock runs the namespace suites against Debian's
# stock ctdbd 4.17 instead of ours (to prove their expectations).
set -uo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "tests/run-all.sh must run as root (the namespace tests need it): sudo $0" >&2
    exit 1
fi

cd "$(dirname "$0")/.." || exit 1

# shellcheck source=tests/install-deps.sh
source tests/install-deps.sh test || exit 1

failed=()
step() {
    local name=$1
    shift
    echo
    echo "==== $name: $*"
    if "$@"; then
        echo "==== $name: ok"
    else
        echo "==== $name: FAILED (exit $?)"
        failed+=("$name")
    fi
}

step build cargo build --workspace --all-targets
if [[ ${#failed[@]} -ne 0 ]]; then
    echo "build failed; not running the tests" >&2
    exit 1
fi
# Two lanes of test binaries at once (the namespace suites mostly wait), then the
# doc tests, which are not binaries.
step test tests/run-test-binaries.sh 2
step doctest cargo test --workspace --doc
step package tests/package/deb-test.sh
step shellcheck shellcheck -s sh events.d/functions events.d/*.script \
    packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm
step shellcheck-tests shellcheck -x tests/install-deps.sh tests/run-all.sh tests/fresh-machine.sh \
    tests/vm/demo.sh .ci/run packaging/build-deb.sh tests/package/deb-test.sh \
    tests/run-test-binaries.sh
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step doc env RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps

echo
if [[ ${#failed[@]} -ne 0 ]]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all steps passed"
