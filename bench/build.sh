#!/bin/bash
# Image build times: keel-build side by side with buildah (bud --layers, RUN steps with runc), on
# one context made here: a multi-stage Dockerfile FROM scratch on a static busybox, 3000 small
# source files and one 64 MiB file of random bytes.
#   cold    every cache of the builder emptied before each build
#   cached  nothing changed since the last build
#   edit    one small source file changed before each build (its COPY and what follows re-run)
# usage: bench/build.sh [-n RUNS] [--also-shared]      (runs `npm run build` first)
# Prints a markdown table: median and mean seconds per builder and workload, and keel's time over
# buildah's. Each builder has a store of its own in a temporary directory, removed at the end.
# With --also-shared, the project's shared yardstick (bench/build.sh of a `shared` folder beside the
# repository, when there is one) runs after, with the same two builders; nothing else needs it.
# Needs: root, hyperfine, a static busybox (busybox-static); buildah and runc for buildah's rows.
set -euo pipefail
runs=5 shared=0
while [ $# -gt 0 ]; do
  case $1 in
    -n) runs=$2; shift 2 ;;
    --also-shared) shared=1; shift ;;
    *) sed -n 2,13p "$0" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
command -v hyperfine >/dev/null || { echo "hyperfine not installed (apt-get install -y hyperfine)" >&2; exit 2; }
unset NODE_EXTRA_CA_CERTS NODE_OPTIONS   # every Node start pays ~150 ms for the first; keel-build makes no TLS connection here
(cd "$root" && npm run -s build >/dev/null)
work=$(mktemp -d /tmp/keel-bench-build.XXXXXX)
bah=(buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver overlay)
cleanup() {
  if command -v buildah >/dev/null; then "${bah[@]}" rm -a >/dev/null 2>&1 || true; "${bah[@]}" rmi -a -f >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The context: busybox from the fixture's lookup, the files from Node (3000 forks of a shell loop
# would take longer than the builds).
ctx=$work/ctx
(cd "$root" && node --import tsx --input-type=module - "$root" "$ctx") <<'EOF'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
const [root, ctx] = process.argv.slice(2);
const { busyboxPath, busyboxMissing } = await import(`${root}/test/fixtures/busybox-bundle.ts`);
if (!busyboxPath) { console.error(busyboxMissing); process.exit(2); }
mkdirSync(`${ctx}/src`, { recursive: true });
copyFileSync(busyboxPath, `${ctx}/busybox`);
for (let i = 1; i <= 3000; i++) writeFileSync(`${ctx}/src/f${i}.txt`, `source ${i}\n${randomBytes(150).toString('base64')}\n`);
writeFileSync(`${ctx}/blob.bin`, randomBytes(64 << 20));
writeFileSync(`${ctx}/Dockerfile`, `# bench/build.sh
FROM scratch AS base
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]

FROM base AS build
WORKDIR /build
COPY src/ ./src/
RUN cat src/*.txt | sha256sum > digest && ls src | wc -l > count
COPY blob.bin ./
RUN gzip -1 -c blob.bin > blob.gz && rm blob.bin

FROM base
ARG VERSION=1
ENV APP_VERSION=$VERSION
COPY --from=build /build/digest /build/count /app/
COPY --from=build /build/blob.gz /app/
WORKDIR /app
USER 1000:1000
CMD ["/bin/sh", "-c", "cat /app/digest"]
`);
EOF
chmod 755 "$ctx/busybox"

kb=$root/dist/keel-build
builders=(keel)
declare -A build clean
build[keel]="$kb build -q --store $work/keel -t bench $ctx"
clean[keel]="$kb prune --all -q --store $work/keel"
if command -v buildah >/dev/null && command -v runc >/dev/null; then
  builders+=(buildah)
  build[buildah]="${bah[*]} bud -q --layers --runtime $(command -v runc) -t bench $ctx"
  clean[buildah]="${bah[*]} rmi -a -f"
else
  echo "buildah or runc not installed: keel-build only" >&2
fi

echo "# $(date -u +%F) $(nproc) CPUs, Linux $(uname -r), node $(node --version), $runs runs each (hyperfine)"
for b in "${builders[@]}"; do
  for w in cold cached edit; do
    case $w in
      cold) prep="sh -c '${clean[$b]} >/dev/null 2>&1 || true'" ;;
      cached) prep="true" ;;
      edit) prep="sh -c 'date +%s%N > $ctx/src/f1.txt'" ;;
    esac
    sh -c "${build[$b]}" >/dev/null 2>&1 || true   # warms the page cache; for cached and edit, the build cache
    if ! hyperfine -w 0 -r "$runs" -p "$prep" --export-json "$work/$b-$w.json" "${build[$b]}" >/dev/null 2>"$work/err"; then
      echo "$b $w: FAILED: $(tail -3 "$work/err" | tr '\n' ' ')" >&2
      rm -f "$work/$b-$w.json"
    fi
  done
done

node - "$work" "${builders[@]}" <<'EOF'
const fs = require('fs');
const [work, ...names] = process.argv.slice(2);
const get = (n, w) => { try { return JSON.parse(fs.readFileSync(`${work}/${n}-${w}.json`, 'utf8')).results[0]; } catch { return undefined; } };
const s = (r) => (r ? `${r.median.toFixed(2)} s (mean ${r.mean.toFixed(2)})` : 'failed');
console.log('| builder | cold | cached | one-file edit | keel / this builder (cold, cached, edit) |');
console.log('|---|---:|---:|---:|---:|');
for (const n of names) {
  const ratio = (w) => { const k = get('keel', w), r = get(n, w); return k && r ? (k.median / r.median).toFixed(2) : '-'; };
  console.log(`| ${n} | ${s(get(n, 'cold'))} | ${s(get(n, 'cached'))} | ${s(get(n, 'edit'))} | ${n === 'keel' ? '1' : ['cold', 'cached', 'edit'].map(ratio).join(', ')} |`);
}
EOF

yardstick=$root/../shared/bench/build.sh   # only with --also-shared
if [ $shared = 1 ]; then
  if [ -f "$yardstick" ]; then
    echo; echo "# $yardstick with the same builders"
    specs=("keel=$kb build --store $work/keel-shared -t bench {ctx}")
    [ ${#builders[@]} -gt 1 ] && specs=("buildah=${bah[*]} bud --runtime $(command -v runc) --layers -t bench {ctx}" "${specs[@]}")
    KEEL_CLEAN="$kb prune --all -q --store $work/keel-shared" BUILDAH_CLEAN="${clean[buildah]:-true}" bash "$yardstick" -n "$runs" "${specs[@]}"
  else
    echo "--also-shared: no $yardstick beside this repository" >&2
  fi
fi
