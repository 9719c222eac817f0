#!/bin/bash
# Checkpoint and restore time of a container holding 256 MiB of touched memory: keel against runc,
# the same bundle, the same criu, images on a tmpfs (so the disk is not what is measured).
# usage: bench/checkpoint.sh [-n RUNS] [-m MIB]     (default 5 runs, 256 MiB)
# Each run: `run -d` the container (a static C program that touches the memory and sleeps, stdio
# on pipes as engines give it), wait until it is ready, time `checkpoint --image-path`, then time
# `restore -d` from the images, check the restored process holds the memory, delete it.
# Prints the median and min of each runtime's checkpoint and restore wall times and keel/runc.
# Environment: CRIU (the criu binary, default PATH's; both runtimes get it with --criu).
# Needs: root, criu that passes `criu check` on this kernel, runc, gcc with a static libc, busybox-static.
set -euo pipefail
runs=5 mib=256
while [ $# -gt 0 ]; do
  case $1 in -n) runs=$2; shift 2;; -m) mib=$2; shift 2;; *) echo "usage: $0 [-n RUNS] [-m MIB]" >&2; exit 2;; esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
criu=${CRIU:-$(command -v criu || true)}
[ -n "$criu" ] || { echo "criu is not installed (apt-get install -y criu)" >&2; exit 2; }
if ! out=$("$criu" check 2>&1); then echo "criu check fails on this kernel ($(uname -r)): $(grep -m1 Error <<<"$out")" >&2; exit 2; fi
command -v runc >/dev/null || { echo "runc not installed" >&2; exit 2; }
[ -x "$root/dist/keel" ] || (cd "$root" && npm run -s build)
unset NODE_EXTRA_CA_CERTS NODE_OPTIONS
work=$(mktemp -d /dev/shm/keel-bench-ckpt.XXXXXX)
helpers=()
cleanup() {
  [ ${#helpers[@]} -eq 0 ] || kill "${helpers[@]}" 2>/dev/null || true
  for id in $(runc --root "$work/runc" list -q 2>/dev/null); do runc --root "$work/runc" delete -f "$id" >/dev/null 2>&1 || true; done
  for id in $("$root/dist/keel" --root "$work/keel" list -q 2>/dev/null); do "$root/dist/keel" --root "$work/keel" delete -f "$id" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The bundle: busybox's root with the hog, read-only root, pid/ipc/uts/mount/network namespaces.
b=$work/bundle
mkdir -p "$b/rootfs"/{bin,dev,proc,sys,tmp}
cp /bin/busybox "$b/rootfs/bin/busybox"; ln -s busybox "$b/rootfs/bin/sh"
gcc -O2 -static -o "$b/rootfs/bin/hog" "$root/bench/checkpoint/hog.c"
cat > "$b/config.json" <<JSON
{ "ociVersion": "1.0.2",
  "process": { "user": { "uid": 0, "gid": 0 }, "args": [ "/bin/hog", "$mib" ], "cwd": "/",
    "env": [ "PATH=/bin" ], "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ], "noNewPrivileges": true },
  "root": { "path": "rootfs", "readonly": true },
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": [ "nosuid", "strictatime", "mode=755", "size=65536k" ] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": [ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620" ] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [ "nosuid", "noexec", "nodev", "ro" ] } ],
  "linux": { "namespaces": [ { "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" } ] } }
JSON

now() { date +%s%N; }
criu_ms() { awk -F'[()]' '/^\(/ { t = $2 } END { printf "%d", t * 1000 }' "$1"; }
# fd 3: a pipe to `cat >> $out`; fd 4: a pipe from a sleeping process (killed at the end).
pipes() {
  exec 3> >(exec cat >> "$out" 2>/dev/null); helpers+=($!)
  exec 4< <(exec sleep 100000 2>/dev/null); helpers+=($!)
}
ms() { echo $(( ($2 - $1) / 1000000 )); }
declare -A times
for i in $(seq 1 "$runs"); do
  for rt in keel runc; do
    if [ $rt = keel ]; then cmd=("$root/dist/keel" --root "$work/keel" --criu "$criu"); else cmd=(runc --root "$work/runc" --criu "$criu"); fi
    id=$rt$i img=$work/img-$id out=$work/out-$id
    : > "$out"
    # stdio: pipes, as engines give them (stdin from a sleeping writer's pipe, stdout to a file through cat).
    pipes
    "${cmd[@]}" run -d --bundle "$b" "$id" <&4 >&3 2>&3
    exec 3>&- 4<&-
    for _ in $(seq 1 600); do grep -q ready "$out" && break; sleep 0.05; done
    grep -q ready "$out" || { echo "$id did not get ready" >&2; cat "$out" >&2; exit 1; }
    t0=$(now)
    "${cmd[@]}" checkpoint --image-path "$img" "$id"
    t1=$(now)
    pipes
    "${cmd[@]}" restore -d --image-path "$img" --bundle "$b" "$id" <&4 >&3 2>&3
    t2=$(now)
    exec 3>&- 4<&-
    pid=$("${cmd[@]}" state "$id" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
    rss=$(awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
    [ "$rss" -ge "$mib" ] || { echo "$id: the restored process holds $rss MiB, not $mib" >&2; exit 1; }
    "${cmd[@]}" delete -f "$id"
    # criu's own time: the last timestamp of its log (seconds since it started).
    cd_ms=$(criu_ms "$img/dump.log") cr_ms=$(criu_ms "$img/restore.log")
    rm -rf "$img"
    times[$rt-ckpt]+="$(ms "$t0" "$t1") " times[$rt-rst]+="$(ms "$t1" "$t2") "
    times[$rt-ckpt-criu]+="$cd_ms " times[$rt-rst-criu]+="$cr_ms "
    echo "run $i $rt: checkpoint $(ms "$t0" "$t1") ms (criu $cd_ms), restore $(ms "$t1" "$t2") ms (criu $cr_ms) (restored RSS $rss MiB)" >&2
  done
done
stat() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { printf "median %5d ms  min %5d ms", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1] }'; }
med() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
echo "$mib MiB touched, $runs runs, criu $("$criu" --version | sed -n 's/^Version: //p'), Linux $(uname -r)"
for what in ckpt rst; do
  name=$([ $what = ckpt ] && echo checkpoint || echo restore)
  echo "$name  keel $(stat "${times[keel-$what]}")   runc $(stat "${times[runc-$what]}")   keel/runc $(awk -v k="$(med "${times[keel-$what]}")" -v r="$(med "${times[runc-$what]}")" 'BEGIN { printf "%.2f", k / r }')"
  echo "  of which criu itself: keel's median $(med "${times[keel-$what-criu]}") ms, runc's $(med "${times[runc-$what-criu]}") ms"
done
