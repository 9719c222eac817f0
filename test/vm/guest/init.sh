#!/bin/busybox sh
# /init of the lane's initramfs (static busybox): loads the modules the kernel needs for virtio, 9p
# and overlayfs, puts the host's / (shared read-only over 9p) under an overlay with a tmpfs upper,
# writes the lane's systemd units into it and switch_roots into systemd.
# Kernel command line: keel.repo=DIR (the repository, seen at the same path as on the host) and
# keel.modules=DIR (the unpacked kernel package's lib/modules/VERSION).
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot /host /upper
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "keel-vm: init: $*" > /dev/console; echo "KEEL-VM-FAILED init: $*" > /dev/console; poweroff -f; }
for m in $(cat /modules.list); do insmod "/modules/$m.ko" || fail "insmod $m"; done
repo=$(sed -n 's/.*keel\.repo=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$repo" ] || fail "no keel.repo= on the kernel command line"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose host /host || fail "mount the host's / over 9p"
mount -t tmpfs -o mode=755 upper /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/host,upperdir=/upper/u,workdir=/upper/w /newroot || fail "overlay over /"
# The kernel's modules (unpacked on the host, depmod run there), for modprobe in the guest.
kmod=$(sed -n 's/.*keel\.modules=\([^ ]*\).*/\1/p' /proc/cmdline)
kver=$(uname -r)
if [ -n "$kmod" ] && [ -d "/newroot$kmod" ]; then
  mkdir -p /newroot/lib/modules/$kver
  mount --bind "/newroot$kmod" /newroot/lib/modules/$kver
fi
# The lane: a target with only what the tests need (no multi-user services of the host).
u=/newroot/etc/systemd/system
mkdir -p $u
cat > $u/keel-vm.target <<UNIT
[Unit]
Description=keel VM test lane
Requires=basic.target keel-vm.service dbus.socket
After=basic.target
AllowIsolate=yes
UNIT
cat > $u/keel-vm.service <<UNIT
[Unit]
Description=keel VM test lane
After=basic.target dbus.socket
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/bin/sh $repo/test/vm/guest/lane.sh $repo
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
UNIT
echo keel-vm > /newroot/etc/hostname
# A fresh /tmp (the host's would be emptied file by file over 9p by systemd-tmpfiles), and no
# container marker: the guest is a machine, and systemd mounts securityfs only on one.
mount -t tmpfs -o mode=1777 tmp /newroot/tmp
mount -t tmpfs -o mode=1777 vartmp /newroot/var/tmp
rm -f /newroot/.dockerenv
# A repository under /tmp or /var/tmp (a CI clone) is hidden by those: bind it back (read-only).
case "$repo" in /tmp/*|/var/tmp/*) mkdir -p "/newroot$repo" && mount --bind "/host$repo" "/newroot$repo" || fail "bind $repo";; esac
rm -f /newroot/etc/machine-id
: > /newroot/etc/machine-id
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
echo 'keel-vm: init: switching to systemd' > /dev/console
exec switch_root /newroot /lib/systemd/systemd
