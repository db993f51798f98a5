#!/usr/bin/env bash
# The ctdb-rs demo: builds the workspace, then brings up a local 3-node cluster in
# network namespaces serving SMB with Samba clustered (clustering = yes), adds a
# user on one node, shows a file held open deny-write through one node refusing a
# write open through another, writes a file through a public address, powers off
# the node holding it, reads the file back through the same address, shows
# `ctdb status` before and after, and removes everything.
# The shared volume is a plain directory, or with --gluster a replica-3 GlusterFS
# volume across the three nodes (recommended options).
# Must run as root: sudo tests/vm/demo.sh [--gluster]
set -euo pipefail

volume=dir
case ${1:-} in
'') ;;
--gluster) volume=gluster ;;
*)
    echo "usage: sudo $0 [--gluster]" >&2
    exit 2
    ;;
esac

if [[ $(id -u) -ne 0 ]]; then
    echo "tests/vm/demo.sh must run as root (it creates namespaces): sudo $0" >&2
    exit 1
fi

cd "$(dirname "$0")/../.."

# shellcheck source=tests/install-deps.sh
if [[ $volume == gluster ]]; then
    source tests/install-deps.sh demo gluster
else
    source tests/install-deps.sh demo
fi

echo "== cargo build --workspace"
cargo build --workspace
exec target/debug/ctdbrs-demo "$@"
