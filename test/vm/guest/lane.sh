#!/bin/sh
# The lane in the guest (the keel-vm.service unit that init.sh writes): mounts the results share,
# prepares what the guest tests use and runs them with Node's test runner, TAP into the share.
# Progress lines start with "keel-vm: " (the host prints them). systemd powers off afterwards.
repo=$1
say() { echo "keel-vm: $*" > /dev/console; }
res=/run/keel-vm-results
mkdir -p $res
if ! mount -t 9p -o trans=virtio,version=9p2000.L results $res; then say "cannot mount the results share"; exit 1; fi
say "guest up: $(uname -r), $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null | tr ' ' ,), LSM $(cat /sys/kernel/security/lsm 2>/dev/null)"
unset NODE_EXTRA_CA_CERTS NODE_OPTIONS
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root KEEL_VM_GUEST=1
cd "$repo" || { say "no $repo in the guest"; echo 1 > $res/status; exit 1; }
sh "$repo/test/vm/guest/setup.sh" > $res/setup.log 2>&1 || say "setup reported problems: see setup.log"
say "set up; guest uptime $(cut -d' ' -f1 /proc/uptime) s"
files=$(cat $res/files)
if [ -f $res/sh ]; then
  say "running $(cat $res/sh)"
  sh $res/sh > $res/sh.out 2>&1
  rc=$?
  if [ -z "$files" ]; then echo $rc > $res/status; sync; exit 0; fi
fi
say "running $(echo $files | wc -w) test files"
t0=$(date +%s)
node --import tsx --test --test-concurrency=1 --test-reporter=tap --test-reporter-destination=$res/tap.partial \
  --test-reporter=./test/vm/guest/progress.mjs --test-reporter-destination=/dev/console $files 2> $res/stderr
rc=$?
mv $res/tap.partial $res/tap
say "tests done in $(( $(date +%s) - t0 )) s, exit $rc"
echo $rc > $res/status
sync
exit 0
