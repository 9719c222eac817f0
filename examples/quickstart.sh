#!/bin/bash
# keel's quick start, from a fresh clone on Debian, as root:  bash examples/quickstart.sh
# Installs what is missing (Node.js and npm, Debian's static busybox, the npm dependencies), builds
# keel, builds the image of examples/hello/Dockerfile with `keel-build build` (FROM scratch, busybox,
# RUN steps in keel containers), unpacks it into an OCI bundle with `keel-build unpack` and runs it
# with `keel run`: the container prints its greeting and who and where it is.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
{ [ -x /bin/busybox ] && grep -q 'not a dynamic executable' <<<"$(ldd /bin/busybox 2>&1 || true)"; } || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..."
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  { echo "keel needs Node.js 20 or later, and this is Node.js $(node --version)" >&2; exit 1; }
# Native addons (zstd-napi) compile against the installed Node.js headers when there are some.
[ -f /usr/include/node/node_api.h ] && export npm_config_nodedir=/usr
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm dependencies ..."
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
npm run -s build || { test -x dist/keel && test -x dist/keel-build; }   # the quick start needs these two
keel=$PWD/dist/keel
keel_build=$PWD/dist/keel-build
# Every Node.js start pays for NODE_EXTRA_CA_CERTS; keel makes no TLS connection here.
unset NODE_EXTRA_CA_CERTS

work=$(mktemp -d /tmp/keel-quickstart.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The image: built into keel's store (/var/lib/keel) and tagged hello:latest. A second run of this
# script finds every step in the build cache.
echo "+ keel-build build --build-context bin=/bin -t hello examples/hello"
"$keel_build" build --progress plain --build-context bin=/bin -t hello examples/hello

# The image as an OCI runtime bundle: rootfs/ from its layers, config.json from its config.
echo "+ keel-build unpack /var/lib/keel/oci:hello:latest $work/bundle"
"$keel_build" unpack /var/lib/keel/oci:hello:latest "$work/bundle"

echo "+ keel run --bundle $work/bundle quickstart-$$"
"$keel" run --bundle "$work/bundle" "quickstart-$$"
