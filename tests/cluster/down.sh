#!/usr/bin/env bash
# Stop the test cluster of up.sh and remove everything it made: processes (by recorded
# pid, then any container shim or pod process left in the node's cgroups), mounts under
# the state dir, the network namespace and veth, the host routes, the kubelet's cgroups,
# the few files components keep outside the state dir, and the sysctls the kubelet
# changed (restored to the values saved at start). Safe to run when nothing is up, and
# twice. Needs root.
#
#   tests/cluster/down.sh
#   LATCHKEY_CLUSTER_KEEP_STATE=1 tests/cluster/down.sh   # keep logs for a post-mortem
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cluster/lib.sh
source "$HERE/lib.sh"
[[ $(id -u) == 0 ]] || lk_die "needs root"
START=$SECONDS

# 1. Components, the node first (so nothing restarts a container), then the control plane.
stop() { # NAME: SIGTERM, wait up to 10 s, then SIGKILL
  local pid i
  pid=$(lk_pid "$1") || return 0
  [[ "$pid" == "$$" ]] && return 0 # the reaper runs this script under its own pid
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  lk_log "$1 (pid $pid) ignored SIGTERM: killing it"
  kill -KILL "$pid" 2>/dev/null
  for ((i = 0; i < 25; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
}
for c in kubelet kube-proxy kube-scheduler kube-controller-manager; do stop "$c"; done

# Pods and shims: every process in the kubelet's cgroups, and containerd's shims (they
# are not children of containerd once it restarts, and keep mounts busy).
kill_cgroup_procs() {
  local f pids
  for f in /sys/fs/cgroup/*/"$LK_CGROUP_ROOT"; do
    [[ -d "$f" ]] || continue
    pids=$(find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null
  done
}
kill_cgroup_procs
if [[ -d "$LK_STATE/containerd" ]]; then
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $LK_STATE/containerd/containerd.sock" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null
  done
fi
stop containerd
stop kube-apiserver
stop etcd
kill_cgroup_procs

stop smtp
if [[ -f "$LK_STATE/services.dir" ]]; then
  # shellcheck source=tests/scripts/services.sh
  source "$LK_REPO/tests/scripts/services.sh"
  latchkey_services_stop "$(cat "$LK_STATE/services.dir")" 2>/dev/null
fi

# 2. Mounts under the state dir (overlay rootfs, secret/projected tmpfs, netns bind
# mounts, shm), deepest first.
if [[ -d "$LK_STATE" ]]; then
  state=$(readlink -f "$LK_STATE")
  for i in 1 2 3; do
    mounts=$(awk -v s="$state/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r)
    [[ -z "$mounts" ]] && break
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done <<<"$mounts"
  done
fi

# 3. Network: the namespace (its veth end, bridge and iptables rules go with it), the
# host end of the veth, the routes through it.
if ip netns list 2>/dev/null | grep -qw "$LK_NETNS"; then
  # Processes still in the namespace keep it (and its mount) alive.
  for pid in $(ip netns pids "$LK_NETNS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns delete "$LK_NETNS" 2>/dev/null || lk_log "could not delete netns $LK_NETNS"
fi
ip link show "$LK_VETH_HOST" >/dev/null 2>&1 && ip link delete "$LK_VETH_HOST"
ip route del "$LK_POD_CIDR" 2>/dev/null
ip route del "$LK_SERVICE_CIDR" 2>/dev/null

# 4. cgroups the kubelet made under its root, leaves first (a busy one stays and is reported).
for h in /sys/fs/cgroup/*/; do
  [[ -d "$h$LK_CGROUP_ROOT" ]] || continue
  find "$h$LK_CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null
  [[ -d "$h$LK_CGROUP_ROOT" ]] && lk_log "cgroup $h$LK_CGROUP_ROOT is still busy"
done

# 5. Files outside the state dir: shim sockets, the CNI result cache of our network,
# the kubelet's hard-coded plugin dirs (only when empty of anything but ours).
if [[ -d "$LK_STATE/containerd" ]] && ! pgrep -x containerd >/dev/null; then
  rm -rf /run/containerd/s /run/containerd/runc/k8s.io 2>/dev/null
  rmdir /run/containerd/runc /run/containerd 2>/dev/null
fi
rm -f /var/lib/cni/results/"$LK_CNI_NETWORK"-* 2>/dev/null
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
for d in /var/lib/kubelet/device-plugins /var/lib/kubelet/plugins_registry /var/lib/kubelet/plugins \
         /var/lib/kubelet/pod-resources /var/lib/kubelet; do
  [[ -d "$d" ]] || continue
  find "$d" -type s -delete 2>/dev/null
  find "$d" -name kubelet_internal_checkpoint -delete 2>/dev/null
  rmdir "$d" 2>/dev/null
done

# 6. Sysctls back to what they were.
if [[ -f "$LK_STATE/sysctls.saved" ]]; then
  while IFS='=' read -r key value; do
    [[ -n "$key" ]] && sysctl -qw "$key=$value" 2>/dev/null
  done <"$LK_STATE/sysctls.saved"
fi

# 7. The state dir itself (the reaper's pid file goes with it).
if [[ "${LATCHKEY_CLUSTER_KEEP_STATE:-0}" == 1 ]]; then
  lk_log "kept $LK_STATE (LATCHKEY_CLUSTER_KEEP_STATE=1)"
  rm -f "$LK_STATE/sysctls.saved"
else
  rm -rf "$LK_STATE" 2>/dev/null || lk_log "could not remove all of $LK_STATE"
fi
lk_log "cluster down in $((SECONDS - START))s"
