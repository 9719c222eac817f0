#!/bin/bash
# Container lifecycle latency of keel, runc and crun on a pure cgroup v2 host with systemd: run by
# `npm run bench:vm` inside the VM lane's guest (qemu; software CPU where there is no /dev/kvm).
# keel runs twice: with the init born in its cgroup (clone3 CLONE_INTO_CGROUP, the default on v2)
# and with KEEL_CLONE_INTO_CGROUP=0 (cloned, then moved into the cgroup as on v1).
# Workloads (as bench/runtime-lifecycle.sh): run = `RT run ID` of /bin/true; split = create, start,
# delete --force as three calls. Prints medians and ratios to runc. Under TCG every instruction is
# emulated: absolute times mean little and Node.js (JIT) suffers more than C or Go; read the ratios.
# usage: bench/runtime-lifecycle-vm.sh [RUNS]   (default 10; needs root, hyperfine, busybox-static)
set -euo pipefail
runs=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/keel-bench-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
b=$work/bundle
mkdir -p "$b/rootfs/bin"
cp /bin/busybox "$b/rootfs/bin/busybox"
ln -s busybox "$b/rootfs/bin/true"
(cd "$b" && runc spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' "$b/config.json"
unset NODE_EXTRA_CA_CERTS NODE_OPTIONS
mk() { printf '#!/bin/sh\nexec env %s "$@"\n' "$1" > "$work/$2"; chmod +x "$work/$2"; }
mk "KEEL_CLONE_INTO_CGROUP=1 $root/dist/keel --root $work/state-keel-born" keel-born
mk "KEEL_CLONE_INTO_CGROUP=0 $root/dist/keel --root $work/state-keel-moved" keel-moved
mk "runc --root $work/state-runc" runc
mk "crun --root $work/state-crun" crun
echo "# $(date -u +%F) $(nproc) CPUs, $(uname -r), $(grep -q hypervisor /proc/cpuinfo && echo guest), cgroup $(stat -fc %T /sys/fs/cgroup), node $(node --version), runs=$runs"
declare -A base
failed=0
for name in runc crun keel-born keel-moved; do
  rt=$work/$name
  for w in run split; do
    if [ $w = run ]; then c="cd $b && $rt run bench-$name >/dev/null"
    else c="$rt create --bundle $b bench-$name && $rt start bench-$name && $rt delete --force bench-$name"; fi
    if ! hyperfine -N -w 2 -r "$runs" --export-json "$work/$name-$w.json" "bash -c '$c'" >/dev/null 2>"$work/err"; then
      echo "$name $w: FAILED: $(bash -c "$c" 2>&1 | tail -3)"; failed=1; continue
    fi
    ms=$(node -e 'console.log((JSON.parse(require("fs").readFileSync(process.argv[1])).results[0].median*1000).toFixed(1))' "$work/$name-$w.json")
    [ -n "${base[$w]:-}" ] || base[$w]=$ms
    echo "$name $w: median $ms ms, ratio to runc $(node -e "console.log(($ms/${base[$w]}).toFixed(2))")"
  done
done
exit $failed
