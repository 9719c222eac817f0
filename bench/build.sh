#!/bin/bash
# keel-build against buildah on the shared yardstick (../shared/bench/build.sh): cold, cached and
# one-file-edit builds of a multi-stage Dockerfile FROM scratch (busybox, 3000 small files, 64 MiB).
# Each builder gets a store of its own in a temporary directory, emptied for the cold runs.
# usage: bench/build.sh [-n RUNS]     (needs root, buildah, runc, hyperfine, busybox-static)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5
if [ "${1:-}" = "-n" ]; then runs=$2; shift 2; fi
unset NODE_EXTRA_CA_CERTS   # every Node start pays ~150 ms for it; keel-build makes no TLS connection here
npm run -s build >/dev/null
work=$(mktemp -d /tmp/keel-build-bench.XXXXXX)
trap 'buildah --root "$work/buildah" --runroot "$work/buildah-run" rmi -a -f >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bah="buildah --root $work/buildah --runroot $work/buildah-run --storage-driver overlay"
kb="$PWD/dist/keel-build"
export BUILDAH_CLEAN="$bah rmi -a -f; $bah rm -a"
export KEEL_CLEAN="$kb prune -q --store $work/keel"
bash ../shared/bench/build.sh -n "$runs" \
  buildah="$bah bud --runtime $(command -v runc) --layers -t bench {ctx}" \
  keel="$kb build --store $work/keel -t bench {ctx}"
