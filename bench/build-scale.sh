#!/bin/bash
# How keel-build's cost grows with the build context, side by side with buildah in one run.
# usage: bench/build-scale.sh [-n RUNS] [SIZES...]      (default: 3 runs; 1000 10000 100000 files)
# Each context: SIZES small files (~100 bytes each, under src/) plus one 256 MiB file, Debian's
# static busybox, and a Dockerfile FROM scratch that copies both and runs a step over the files.
# Workloads per size and builder (median of RUNS, hyperfine):
#   cold    the builder's store emptied first
#   cached  nothing changed since the last build
#   edit    one small file changed before each build
# Then keel-build's peak memory (max RSS, /usr/bin/time) for a cold and a cached build of the largest
# size. Prints a markdown table; results kept in bench/build-scale.md. Needs root, hyperfine,
# buildah, busybox-static, GNU time. keel-build is dist/keel-build (npm run build first).
set -euo pipefail
runs=3
if [ "${1:-}" = "-n" ]; then runs=$2; shift 2; fi
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 100000)
repo=$(cd "$(dirname "$0")/.." && pwd)
keel=$repo/dist/keel-build
for t in hyperfine buildah /usr/bin/time; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }; done
[ -x "$keel" ] || { echo "needs $keel: npm run build" >&2; exit 2; }
unset NODE_EXTRA_CA_CERTS
work=$(mktemp -d /var/tmp/keel-build-scale.XXXXXX)
trap 'buildah --root "$work/buildah" --runroot "$work/buildah-run" rmi -a -f >/dev/null 2>&1 || true; umount -R "$work/buildah" 2>/dev/null || true; rm -rf "$work"' EXIT
head -c $((256 << 20)) /dev/urandom > "$work/big.bin"

median() { python3 -c "import json,sys;print('%.3f'%(json.load(open(sys.argv[1]))['results'][0]['median']))" "$1"; }

printf '| files | builder | cold s | cached s | edit s |\n|---:|---|---:|---:|---:|\n'
declare -A res
for n in "${sizes[@]}"; do
  ctx=$work/ctx-$n
  mkdir -p "$ctx/src"
  cp /bin/busybox "$ctx/busybox"
  python3 - "$ctx/src" "$n" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = os.path.join(d, 'd%03d' % (i // 1000))
    if i % 1000 == 0: os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, 'f%d.txt' % i), 'w') as f: f.write('file %d %s\n' % (i, os.urandom(40).hex()))
PY
  ln "$work/big.bin" "$ctx/big.bin"
  cat > "$ctx/Dockerfile" <<'DF'
FROM scratch
COPY busybox /bin/busybox
COPY big.bin /data/big.bin
COPY src/ /src/
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox find /src -type f | /bin/busybox wc -l > /count"]
DF
  edit="date +%s%N > $ctx/src/d000/f0.txt"
  declare -A cmd clean
  cmd[keel]="$keel build -q --store $work/keel -t scale $ctx"
  clean[keel]="rm -rf $work/keel"
  cmd[buildah]="buildah --root $work/buildah --runroot $work/buildah-run bud --runtime runc --layers -q -t scale $ctx"
  clean[buildah]="buildah --root $work/buildah --runroot $work/buildah-run rmi -a -f; buildah --root $work/buildah --runroot $work/buildah-run prune -a -f"
  for b in keel buildah; do
    for w in cold cached edit; do
      case $w in cold) prep="(${clean[$b]}) >/dev/null 2>&1 || true" ;; cached) prep=true ;; edit) prep=$edit ;; esac
      eval "${cmd[$b]}" >/dev/null 2>&1 || true
      if hyperfine -w 0 -r "$runs" -p "$prep" --export-json "$work/$b-$n-$w.json" "${cmd[$b]}" >/dev/null 2>"$work/err"; then
        res[$b-$n-$w]=$(median "$work/$b-$n-$w.json")
      else
        res[$b-$n-$w]=failed; echo "$b $n $w failed: $(tail -2 "$work/err" | tr '\n' ' ')" >&2
      fi
    done
    printf '| %d | %s | %s | %s | %s |\n' "$n" "$b" "${res[$b-$n-cold]}" "${res[$b-$n-cached]}" "${res[$b-$n-edit]}"
  done
  [ "$n" = "${sizes[-1]}" ] || { eval "${clean[buildah]}" >/dev/null 2>&1 || true; rm -rf "$ctx"; }
done

echo
printf '| files | keel/buildah cold | keel/buildah cached | keel/buildah edit |\n|---:|---:|---:|---:|\n'
for n in "${sizes[@]}"; do
  r() { python3 -c "import sys;a,b=sys.argv[1:];print('%.3f'%(float(a)/float(b)) if a!='failed' and b!='failed' else 'n/a')" "${res[keel-$n-$1]}" "${res[buildah-$n-$1]}"; }
  printf '| %d | %s | %s | %s |\n' "$n" "$(r cold)" "$(r cached)" "$(r edit)"
done

big=${sizes[-1]}
ctx=$work/ctx-$big
rm -rf "$work/keel"
cold_kb=$(/usr/bin/time -f %M $keel build -q --store "$work/keel" -t scale "$ctx" 2>&1 >/dev/null | tail -1)
cached_kb=$(/usr/bin/time -f %M $keel build -q --store "$work/keel" -t scale "$ctx" 2>&1 >/dev/null | tail -1)
echo
echo "keel-build peak RSS at $big files: cold $((cold_kb / 1024)) MiB, cached $((cached_kb / 1024)) MiB"
