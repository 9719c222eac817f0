#!/bin/sh
# Guest set-up before the tests (root in the guest; writes only to the guest's tmpfs overlay).
set -x
# podman: its storage on a tmpfs (overlayfs cannot stack on the guest's overlay root), cgroups
# through systemd as on a distribution, no network.
mkdir -p /var/lib/containers /etc/containers
mount -t tmpfs containers /var/lib/containers
cat > /etc/containers/containers.conf <<CONF
[containers]
netns = "none"
[engine]
cgroup_manager = "systemd"
events_logger = "file"
CONF
# A user for rootless keel, with its systemd user manager: user@UID.service gets a delegated subtree.
id keeltest || useradd -M -d /tmp -u 1500 -s /bin/sh keeltest
systemctl start user@1500.service
systemctl show user@1500.service -p Delegate,DelegateControllers,ControlGroup
cat /sys/fs/cgroup/user.slice/user-1500.slice/user@1500.service/cgroup.subtree_control
