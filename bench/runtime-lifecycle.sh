#!/bin/bash
# Container lifecycle latency: keel side by side with runc and crun, on one busybox bundle made by
# the project's fixture (test/fixtures/busybox-bundle.ts), timed with hyperfine.
#   run    one `RT run --bundle B ID` of /bin/true (create, start, wait, delete in one call)
#   split  `RT create`, `RT start`, `RT delete --force` as three calls (from a small sh script,
#          so each split time includes one `sh` start, the same for every runtime)
# usage: bench/runtime-lifecycle.sh [-n RUNS] [--also-shared]    (builds dist/ first if it is missing)
# Prints a markdown table: median and mean per runtime and workload, and keel's time over each peer's.
# Each runtime gets its own --root under a temporary directory, removed at the end. crun refuses a
# hybrid cgroup host (v1 controllers plus a cgroup2 mount), so there it runs with the cgroup2 mount
# hidden in a private mount namespace (the unshare wrapper costs crun ~1-2 ms per call).
# NODE_EXTRA_CA_CERTS and NODE_OPTIONS are unset: the first adds ~150 ms to every Node start on
# machines that set it, and neither says anything about keel. With --also-shared, the project's
# shared yardstick (bench/runtime-lifecycle.sh of a `shared` folder beside the repository, when there
# is one) runs after, on the same runtimes; nothing else needs it.
# Needs: root, hyperfine, a static busybox (busybox-static); runc and crun are left out when missing.
set -euo pipefail
runs=30 shared=0
while [ $# -gt 0 ]; do
  case $1 in
    -n) runs=$2; shift 2 ;;
    --also-shared) shared=1; shift ;;
    *) sed -n 2,16p "$0" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
command -v hyperfine >/dev/null || { echo "hyperfine not installed (apt-get install -y hyperfine)" >&2; exit 2; }
[ -x "$root/dist/keel" ] || (cd "$root" && npm run -s build)
unset NODE_EXTRA_CA_CERTS NODE_OPTIONS
work=$(mktemp -d /tmp/keel-bench-lifecycle.XXXXXX)
trap 'rm -rf "$work"' EXIT
node --import tsx "$root/test/fixtures/busybox-bundle.ts" "$work/bundle" /bin/true >/dev/null

# One executable per runtime, each with its own state directory.
printf '#!/bin/sh\nexec "%s" --root "%s" "$@"\n' "$root/dist/keel" "$work/state-keel" > "$work/keel"
names=(keel)
if command -v runc >/dev/null; then
  printf '#!/bin/sh\nexec runc --root "%s" "$@"\n' "$work/state-runc" > "$work/runc"
  names+=(runc)
fi
if command -v crun >/dev/null; then
  if grep -q ' - cgroup ' /proc/self/mountinfo && grep -q ' - cgroup2 ' /proc/self/mountinfo; then
    unified=$(awk '$0 ~ / - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
    cat > "$work/crun" <<EOF
#!/bin/sh
exec unshare -m --propagation private sh -c 'umount "$unified" && exec crun --root "$work/state-crun" "\$@"' crun "\$@"
EOF
  else
    printf '#!/bin/sh\nexec crun --root "%s" "$@"\n' "$work/state-crun" > "$work/crun"
  fi
  names+=(crun)
fi
chmod +x "$work"/keel "$work"/runc "$work"/crun 2>/dev/null || true

echo "# $(date -u +%F) $(nproc) CPUs, Linux $(uname -r), node $(node --version), $runs runs each (hyperfine, 3 warm-ups)"
for n in "${names[@]}"; do
  id="lifecycle-$n-$$"
  cat > "$work/split-$n.sh" <<EOF
"$work/$n" create --bundle "$work/bundle" $id && "$work/$n" start $id && "$work/$n" delete --force $id
EOF
  for w in run split; do
    if [ $w = run ]; then cmd="$work/$n run --bundle $work/bundle $id"; else cmd="sh $work/split-$n.sh"; fi
    if ! hyperfine -N -w 3 -r "$runs" --export-json "$work/$n-$w.json" "$cmd" >/dev/null 2>"$work/err"; then
      echo "$n $w: FAILED: $(tail -3 "$work/err" | tr '\n' ' ')" >&2
      rm -f "$work/$n-$w.json"
      "$work/$n" delete --force "$id" >/dev/null 2>&1 || true
    fi
  done
done

node - "$work" "${names[@]}" <<'EOF'
const fs = require('fs');
const [work, ...names] = process.argv.slice(2);
const get = (n, w) => { try { return JSON.parse(fs.readFileSync(`${work}/${n}-${w}.json`, 'utf8')).results[0]; } catch { return undefined; } };
const ms = (r) => (r ? `${(r.median * 1e3).toFixed(1)} ms (mean ${(r.mean * 1e3).toFixed(1)})` : 'failed');
console.log('| runtime | run | split (3 calls) | keel / this runtime (run, split) |');
console.log('|---|---:|---:|---:|');
for (const n of names) {
  const ratio = (w) => { const k = get('keel', w), r = get(n, w); return k && r ? (k.median / r.median).toFixed(2) : '-'; };
  console.log(`| ${n} | ${ms(get(n, 'run'))} | ${ms(get(n, 'split'))} | ${n === 'keel' ? '1' : `${ratio('run')}, ${ratio('split')}`} |`);
}
EOF

yardstick=$root/../shared/bench/runtime-lifecycle.sh   # only with --also-shared
if [ $shared = 1 ]; then
  if [ -f "$yardstick" ]; then
    echo; echo "# $yardstick on the same runtimes"
    specs=(); for n in "${names[@]}"; do specs+=("$n=$work/$n"); done
    bash "$yardstick" -n "$runs" "${specs[@]}"
  else
    echo "--also-shared: no $yardstick beside this repository" >&2
  fi
fi
