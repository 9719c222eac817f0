#!/bin/bash
# containerd with keel's shim (io.containerd.keel.v2) against runc's (io.containerd.runc.v2), side
# by side in one run: `ctr run --rm`, a pod's second container, `ctr task exec`, and keel's
# in-process lifecycle against `runc run`. Medians and quartiles as a markdown table (bench/containerd.md).
# usage: bench/containerd.sh [-n RUNS]     (root; builds dist/ first if it is missing; default 20 runs)
# Needs: containerd, runc (apt-get install -y containerd runc).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$root/dist/containerd-shim-keel-v2" ] || (cd "$root" && npm run -s build)
cd "$root"
exec env -u NODE_EXTRA_CA_CERTS -u NODE_OPTIONS node --import tsx bench/containerd.ts "$@"
