#!/bin/bash
# Start-up time of keel's CLIs against a bare `node -e 0` on this machine.
# usage: bench/startup.sh [-n RUNS]      (builds dist/ first if it is missing)
# Prints hyperfine's mean and median of each command and its ratio to `node -e 0`; the issue's
# bar is `keel --version` <= 1.3x. NODE_EXTRA_CA_CERTS and NODE_OPTIONS are unset: the first adds
# ~150 ms to every Node start on machines that set it, and neither says anything about keel.
# Needs: hyperfine (apt-get install -y hyperfine).
set -euo pipefail
runs=50
if [ "${1:-}" = "-n" ]; then runs=$2; shift 2; fi
root=$(cd "$(dirname "$0")/.." && pwd)
command -v hyperfine >/dev/null || { echo "hyperfine not installed (apt-get install -y hyperfine)" >&2; exit 2; }
[ -x "$root/dist/keel" ] || (cd "$root" && npm run -s build)
work=$(mktemp -d /tmp/keel-startup.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
env -u NODE_EXTRA_CA_CERTS -u NODE_OPTIONS hyperfine -N -w 5 -r "$runs" --export-json "$work/r.json" \
  -n 'node -e 0' "node -e 0" \
  -n 'keel --version' "$root/dist/keel --version" \
  -n 'keel --help' "$root/dist/keel --help" \
  -n 'keel-build --help' "$root/dist/keel-build --help" >/dev/null
node -e '
  const r = require(process.argv[1]).results;
  const base = r[0].median;
  for (const x of r) console.log(`${x.command.padEnd(18)} mean ${(x.mean * 1e3).toFixed(1).padStart(5)} ms  median ${(x.median * 1e3).toFixed(1).padStart(5)} ms  ±${(x.stddev * 1e3).toFixed(1)}  ratio ${(x.median / base).toFixed(2)}`);
  const v = r.find((x) => x.command === "keel --version").median / base;
  console.log(`keel --version / node -e 0 = ${v.toFixed(2)} (bar: 1.30) ${v <= 1.3 ? "ok" : "TOO SLOW"}`);
' "$work/r.json"
