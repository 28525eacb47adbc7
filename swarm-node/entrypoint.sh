#!/bin/sh
# A swarm lab node: a Docker engine of its own inside a container (swarm-node/lab.yml starts three).
set -o errexit -o nounset

# Docker mounts /sys read-only in a container that is not privileged; the engine writes there as
# it builds the bridges of its networks (an overlay network's among them).
mount -o remount,rw /sys

# cgroup v1 (this machine's): Docker mounts each controller read-only inside a container, and
# dockerd must create cgroups, so each is mounted again read-write, as the same hierarchy. The
# engine's own cgroup parent (below) keeps each node's containers apart from the others'.
if [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
    mount -o remount,rw /sys/fs/cgroup
    for dir in /sys/fs/cgroup/*; do
        [ -L "$dir" ] && continue # cpu -> cpu,cpuacct and the like
        name=$(basename "$dir")
        case "$name" in
        unified) continue ;;
        systemd) options=none,name=systemd ;;
        *) options=$name ;;
        esac
        umount "$dir"
        mount -t cgroup -o "$options" cgroup "$dir"
    done
fi

# Images go to and come from 127.0.0.1:$REGISTRY_PORT, the one address that names the registry
# both on the host (where `make push` runs) and here, and that Docker trusts over plain HTTP.
socat "TCP-LISTEN:$REGISTRY_PORT,bind=127.0.0.1,fork,reuseaddr" "TCP:$REGISTRY_ADDR" &

# The API on TCP as well, for the host's docker CLI (lab.yml publishes it on 127.0.0.1 only).
exec dockerd --storage-driver=overlay2 --cgroup-parent="/$NODE_NAME" \
    --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 --tls=false
