# shellcheck shell=bash
# Shared by tests/cluster/up.sh and down.sh: the names, addresses and paths of the test
# cluster, and small helpers. Sourced, never run.
#
# One cluster per machine at a time: its network namespace, veth pair, addresses and
# cgroup root are fixed names, and up.sh holds a lock while it runs.
#
# Layout of the network (nothing has a default route, nothing is NATed to the outside):
#
#   host (root netns)                         node netns "latchkey-node"
#   etcd          127.0.0.1:22379             containerd, kubelet, kube-proxy
#   kube-apiserver 10.250.1.1:6443            pods on bridge lk0: 10.244.0.0/24
#   kcm, scheduler (loopback)                 Services: 10.96.0.0/16 (kube-proxy)
#   PostgreSQL/Redis/SMTP: 10.250.1.1         CoreDNS: kube-dns 10.96.0.10
#          lk-host 10.250.1.1/30 <--- veth ---> lk-node 10.250.1.2/30
#   routes: 10.244.0.0/24 and 10.96.0.0/16 via 10.250.1.2
#
# So the pods see the control plane and the databases as external hosts, the test
# process on the host reaches pods and ClusterIPs through the veth, and every packet
# stays inside this machine.

LK_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LK_STATE=${LATCHKEY_CLUSTER_STATE_DIR:-/var/lib/latchkey-cluster}
LK_CACHE=${LATCHKEY_CACHE_DIR:-${HOME:?HOME is not set}/.cache/latchkey}
LK_NETNS=latchkey-node
LK_VETH_HOST=lk-host
LK_VETH_NODE=lk-node
LK_BRIDGE=lk0
LK_HOST_IP=10.250.1.1
LK_NODE_IP=10.250.1.2
LK_SERVICE_CIDR=10.96.0.0/16
LK_API_SERVICE_IP=10.96.0.1
LK_DNS_IP=10.96.0.10
LK_POD_CIDR=10.244.0.0/24
LK_NODE_NAME=latchkey-node
LK_CLUSTER_DOMAIN=cluster.local
LK_ETCD_PORT=22379
LK_ETCD_PEER_PORT=22380
LK_API_PORT=6443
# kubelet's cgroups (cgroupfs driver, cgroup v1) live under this root in every hierarchy.
LK_CGROUP_ROOT=latchkey
# Sysctls the kubelet changes system-wide; up.sh saves them, down.sh restores them.
LK_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Paths some components hard-code outside the state dir; down.sh cleans what is ours there.
LK_CNI_NETWORK=latchkey

lk_log() { printf '[cluster] %s\n' "$*" >&2; }
lk_die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
lk_in_node() { ip netns exec "$LK_NETNS" "$@"; }

# lk_wait SECONDS WHAT CMD...: run CMD every 0.2 s until it succeeds; die after SECONDS.
lk_wait() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      lk_log "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# lk_pid NAME: the pid recorded for a component, if it is still alive.
lk_pid() {
  local f=$LK_STATE/run/$1.pid pid
  [[ -f "$f" ]] || return 1
  pid=$(cat "$f")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}
