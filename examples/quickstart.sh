#!/bin/bash
# keel's quick start, from a fresh clone on Debian, as root:  bash examples/quickstart.sh
# Installs what is missing (Node.js and npm, Debian's static busybox, the npm dependencies), builds
# keel, makes an OCI bundle whose rootfs is busybox, writes its config.json with `keel spec` and
# runs it with `keel run`: the container prints who and where it is.
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
npm run -s build || test -x dist/keel   # the quick start needs keel alone
keel=$PWD/dist/keel

# An OCI bundle: a rootfs holding busybox and its applets, and keel's default config.json.
work=$(mktemp -d /tmp/keel-quickstart.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"; done
"$keel" spec --bundle "$work"
# The default process is an interactive `sh` on a terminal; run a script without one instead.
# (Ambient capabilities are dropped until the runtime, like runc, goes on when it cannot raise them.)
node -e '
  const fs = require("fs"), file = process.argv[1], config = JSON.parse(fs.readFileSync(file, "utf8"));
  config.process.terminal = false;
  config.process.args = ["sh", "-c", "echo \"hello from a keel container: I am PID $$ on host $(hostname), as uid $(id -u)\"; echo \"my root holds:\" $(ls /)"];
  delete config.process.capabilities.ambient;
  fs.writeFileSync(file, JSON.stringify(config, null, "\t"));
' "$work/config.json"

echo "+ keel run --bundle $work quickstart-$$"
"$keel" run --bundle "$work" "quickstart-$$"
