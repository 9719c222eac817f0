#!/bin/bash
# Container lifecycle latency of keel against runc and crun, on the shared busybox bundle, with the
# project's yardstick (../shared/bench/runtime-lifecycle.sh: `run` of /bin/true, and create +
# start + delete --force as three calls).
# usage: bench/runtime-lifecycle.sh [-n RUNS]        (builds dist/ first if it is missing)
# Each runtime gets its own --root. crun refuses this machine's hybrid cgroups, so it runs with
# /sys/fs/cgroup/unified unmounted in a private mount namespace (a wrapper script); the unshare
# costs crun ~1-2 ms per call. NODE_EXTRA_CA_CERTS and NODE_OPTIONS are unset for keel: the first
# adds ~150 ms to every Node start on machines that set it, and neither says anything about keel.
# A `npm run build` during the run makes keel's rows fail (exit 127: dist/keel is replaced): rerun.
# Needs: root, hyperfine, busybox-static; runc and crun are skipped when not installed.
set -euo pipefail
runs=30
if [ "${1:-}" = "-n" ]; then runs=$2; shift 2; fi
root=$(cd "$(dirname "$0")/.." && pwd)
yardstick=$root/../shared/bench/runtime-lifecycle.sh
[ -x "$root/dist/keel" ] || (cd "$root" && npm run -s build)
work=$(mktemp -d /tmp/keel-bench-rt.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat > "$work/keel" <<EOF
#!/bin/sh
exec env -u NODE_EXTRA_CA_CERTS -u NODE_OPTIONS "$root/dist/keel" --root "$work/keel-state" "\$@"
EOF
specs=("keel=$work/keel")
if command -v runc >/dev/null; then
  printf '#!/bin/sh\nexec runc --root "%s" "$@"\n' "$work/runc-state" > "$work/runc"
  specs+=("runc=$work/runc")
fi
if command -v crun >/dev/null; then
  cat > "$work/crun" <<EOF
#!/bin/sh
if [ -d /sys/fs/cgroup/unified ] && grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then
  exec unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun --root "$work/crun-state" "\$@"' crun "\$@"
fi
exec crun --root "$work/crun-state" "\$@"
EOF
  specs+=("crun=$work/crun")
fi
chmod +x "$work"/keel "$work"/runc "$work"/crun 2>/dev/null || true
echo "# $(date -u +%F) $(nproc) CPUs, $(uname -r), node $(node --version), runs=$runs"
bash "$yardstick" -n "$runs" "${specs[@]}"
