#!/usr/bin/env bash
# Start a real single-node Kubernetes cluster on this machine, for Latchkey's node tests
# and for a developer by hand: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler on the host; containerd, runc, kubelet and kube-proxy in a network
# namespace of their own (see lib.sh for the addresses); CoreDNS as a Deployment; the
# images of docker/build-images.sh imported into containerd. Nothing is pulled, nothing
# leaves the machine. Needs root.
#
#   tests/cluster/up.sh                # progress on stderr; `export` lines on stdout
#   eval "$(tests/cluster/up.sh)"      # ... then kubectl get nodes
#   tests/cluster/down.sh              # stop it and remove everything it made
#
# The last stdout lines (also written to $STATE/env) are:
#   export KUBECONFIG=...                     cluster-admin kubeconfig
#   export LATCHKEY_CLUSTER_STATE_DIR=...     the state dir
#   export LATCHKEY_CLUSTER_HOST_IP=...       the host side of the veth (databases listen here)
#   export LATCHKEY_CLUSTER_KUBECTL=...       the kubectl built with the control plane
#   export LATCHKEY_CLUSTER_IMAGES=...        the imported images (NAME DIGEST ARCHIVE per line)
#   export LATCHKEY_CLUSTER_DATABASE_URL=...  PostgreSQL (superuser) on the host IP, open to the pods
#   export LATCHKEY_CLUSTER_REDIS_URL=...     Redis on the host IP
#   export LATCHKEY_CLUSTER_SMTP=HOST:PORT    an SMTP sink; messages land in LATCHKEY_CLUSTER_MAIL_DIR
#   export LATCHKEY_CLUSTER_MAIL_DIR=...
#
# Environment:
#   LATCHKEY_CLUSTER_STATE_DIR   state dir (default /var/lib/latchkey-cluster)
#   LATCHKEY_CACHE_DIR           cache root of the Go builds and images (default ~/.cache/latchkey)
#   LATCHKEY_CLUSTER_OWNER_PID   tear the cluster down (down.sh) when this process exits;
#                                the testkit handle passes its own pid
#   LATCHKEY_CLUSTER_IMAGES      a manifest of docker/build-images.sh (its images.txt) to
#                                import instead of running it
# A cluster already running (or a stale one) is torn down first.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cluster/lib.sh
source "$HERE/lib.sh"

[[ $(id -u) == 0 ]] || lk_die "needs root (network namespaces, mounts, cgroups)"
START=$SECONDS
trap 'rc=$?; lk_log "FAILED (exit $rc) at line $LINENO: $BASH_COMMAND; logs in $LK_STATE/log"; exit $rc' ERR

# --- tools ------------------------------------------------------------------------
install_packages() {
  local want=() c
  command -v containerd >/dev/null || want+=(containerd)
  command -v runc >/dev/null || want+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || want+=(containernetworking-plugins)
  command -v iptables >/dev/null || want+=(iptables)
  command -v nft >/dev/null || want+=(nftables)
  command -v conntrack >/dev/null || want+=(conntrack)
  command -v openssl >/dev/null || want+=(openssl)
  command -v ip >/dev/null || want+=(iproute2)
  command -v setsid >/dev/null || want+=(util-linux)
  ((${#want[@]} == 0)) && return 0
  lk_log "installing ${want[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${want[@]}" >&2
  for c in containerd runc iptables conntrack openssl; do
    command -v "$c" >/dev/null || lk_die "$c is still missing after apt-get install"
  done
}
install_packages

exec 8>"/run/latchkey-cluster.lock"
flock -n 8 || { lk_log "another up.sh is running; waiting for it"; flock 8; }

if [[ -e "$LK_STATE" ]] || ip netns list | grep -qw "$LK_NETNS"; then
  lk_log "a cluster (or what one left) is here: tearing it down first"
  "$HERE/down.sh"
fi

CP_BIN=$(nice -n 19 "$LK_REPO/tests/controlplane/build.sh" | tail -1)
NODE_BIN=$(nice -n 19 "$HERE/build.sh" | tail -1)

mkdir -p "$LK_STATE"/{run,log,pki,etcd,containerd,kubelet,cni/net.d,cni/ipam,node}
chmod 700 "$LK_STATE"
PKI=$LK_STATE/pki

# The images to import: docker/build-images.sh's (or the manifest given), plus CoreDNS.
IMAGES=$LK_STATE/images.txt
if [[ -n "${LATCHKEY_CLUSTER_IMAGES:-}" ]]; then
  [[ -f "$LATCHKEY_CLUSTER_IMAGES" ]] || lk_die "LATCHKEY_CLUSTER_IMAGES=$LATCHKEY_CLUSTER_IMAGES is no file"
  cat "$LATCHKEY_CLUSTER_IMAGES" >"$IMAGES"
else
  nice -n 19 "$LK_REPO/docker/build-images.sh" >"$IMAGES"
fi
cat "$NODE_BIN/coredns.image" >>"$IMAGES"

# --- saved system state -----------------------------------------------------------
for s in "${LK_SYSCTLS[@]}"; do
  printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
done >"$LK_STATE/sysctls.saved"

# --- certificates -----------------------------------------------------------------
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=latchkey-test-cluster-ca" \
  -keyout "$PKI/ca.key" -out "$PKI/ca.crt"
# cert NAME SUBJECT [SAN]: a key and a CA-signed certificate for clientAuth/serverAuth.
cert() {
  local name=$1 subj=$2 san=${3:-} ext
  ext=$PKI/$name.ext
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
  [[ -n "$san" ]] && printf 'subjectAltName=%s\n' "$san" >>"$ext"
  ossl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$PKI/$name.key" -out "$PKI/$name.csr"
  ossl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -extfile "$ext" -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$ext"
}
cert apiserver "/CN=kube-apiserver" \
  "IP:$LK_HOST_IP,IP:$LK_API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$LK_CLUSTER_DOMAIN,DNS:localhost"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert admin "/O=system:masters/CN=latchkey-test-admin"
cert kubelet "/O=system:nodes/CN=system:node:$LK_NODE_NAME"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kube-proxy "/CN=system:kube-proxy"
ossl genrsa -out "$PKI/sa.key" 2048
ossl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

API_URL=https://$LK_HOST_IP:$LK_API_PORT
kubeconfig() { # NAME: $PKI/NAME.kubeconfig with NAME's client certificate
  cat >"$PKI/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: latchkey
  cluster: {server: "$API_URL", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: latchkey
  context: {cluster: latchkey, user: $1, namespace: default}
current-context: latchkey
EOF
}
for k in admin kubelet controller-manager scheduler kube-proxy; do kubeconfig "$k"; done

# --- network ----------------------------------------------------------------------
ip netns add "$LK_NETNS"
ip link add "$LK_VETH_HOST" type veth peer name "$LK_VETH_NODE"
ip link set "$LK_VETH_NODE" netns "$LK_NETNS"
ip addr add "$LK_HOST_IP/30" dev "$LK_VETH_HOST"
ip link set "$LK_VETH_HOST" up
lk_in_node ip link set lo up
lk_in_node ip addr add "$LK_NODE_IP/30" dev "$LK_VETH_NODE"
lk_in_node ip link set "$LK_VETH_NODE" up
# The node itself reaches ClusterIPs through kube-proxy's rules on this route; it has no
# default route, so a pod or the node trying to reach anything else gets "unreachable".
lk_in_node ip route add "$LK_SERVICE_CIDR" dev "$LK_VETH_NODE"
ip route add "$LK_POD_CIDR" via "$LK_NODE_IP" dev "$LK_VETH_HOST"
ip route add "$LK_SERVICE_CIDR" via "$LK_NODE_IP" dev "$LK_VETH_HOST"
lk_in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
  net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.conf.all.route_localnet=1

# --- external services (host side of the veth) ----------------------------------
# PostgreSQL, Redis and an SMTP sink as a cloud's managed services would be: another
# host to the pods, password-protected, reached by address.
# shellcheck source=tests/scripts/services.sh
source "$LK_REPO/tests/scripts/services.sh"
latchkey_services_install >&2
_lk_install_aiosmtpd >&2
(
  unset LATCHKEY_TEST_RUN_DIR
  LATCHKEY_SERVICES_LISTEN=$LK_HOST_IP LATCHKEY_SERVICES_ALLOW_CIDR="$LK_HOST_IP/32 $LK_POD_CIDR" \
    latchkey_services_start cluster >&2
  rm -f "$LATCHKEY_TEST_RUN_DIR/owner.pid" # down.sh stops them, not the reaping of services.sh
  printf '%s\n' "$LATCHKEY_TEST_RUN_DIR" >"$LK_STATE/services.dir"
) 8>&-
# shellcheck disable=SC1091
source "$(cat "$LK_STATE/services.dir")/env"
SMTP_PORT=$(LATCHKEY_SERVICES_LISTEN=$LK_HOST_IP _lk_free_port)

# start NAME CMD...: run CMD detached (its own session), log and pid in the state dir.
start() {
  local name=$1 pid
  shift
  # 8>&-: the components must not inherit the lock of this script.
  setsid "$@" >"$LK_STATE/log/$name.log" 2>&1 </dev/null 8>&- &
  pid=$!
  printf '%s\n' "$pid" >"$LK_STATE/run/$name.pid"
  lk_log "started $name (pid $pid)"
}
alive_or_die() { lk_pid "$1" >/dev/null || { tail -20 "$LK_STATE/log/$1.log" >&2; lk_die "$1 exited"; }; }
wait_for() { # NAME SECONDS WHAT CMD...: wait, but stop early with the log when NAME died
  local name=$1 limit=$2 what=$3 deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    alive_or_die "$name"
    ((SECONDS < deadline)) || { tail -20 "$LK_STATE/log/$name.log" >&2; lk_die "timed out waiting for $what"; }
    sleep 0.2
  done
}

start smtp python3 "$LK_REPO/tests/scripts/smtp_sink.py" "$LK_STATE/mail" "$SMTP_PORT" "$LK_HOST_IP"
wait_for smtp 30 "the SMTP sink" grep -q ready "$LK_STATE/log/smtp.log"

# --- control plane (host) ---------------------------------------------------------
start etcd "$CP_BIN/etcd" --name=latchkey --data-dir="$LK_STATE/etcd" \
  --listen-client-urls="http://127.0.0.1:$LK_ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$LK_ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$LK_ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$LK_ETCD_PEER_PORT" \
  --initial-cluster="latchkey=http://127.0.0.1:$LK_ETCD_PEER_PORT" --unsafe-no-fsync=true --log-level=warn
wait_for etcd 30 "etcd" curl -fsS "http://127.0.0.1:$LK_ETCD_PORT/health"

start kube-apiserver "$CP_BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$LK_ETCD_PORT" \
  --bind-address="$LK_HOST_IP" --advertise-address="$LK_HOST_IP" --secure-port="$LK_API_PORT" \
  --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --service-account-issuer="https://kubernetes.default.svc.$LK_CLUSTER_DOMAIN" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$LK_SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --kubelet-preferred-address-types=InternalIP \
  --allow-privileged=true --profiling=false
KUBECTL=("$CP_BIN/kubectl" --kubeconfig="$PKI/admin.kubeconfig")
wait_for kube-apiserver 90 "kube-apiserver /readyz" "${KUBECTL[@]}" get --raw=/readyz

start kube-controller-manager "$NODE_BIN/kube-controller-manager" \
  --kubeconfig="$PKI/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=true --service-cluster-ip-range="$LK_SERVICE_CIDR" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --allocate-node-cidrs=false --profiling=false
start kube-scheduler "$NODE_BIN/kube-scheduler" \
  --kubeconfig="$PKI/scheduler.kubeconfig" \
  --authentication-kubeconfig="$PKI/scheduler.kubeconfig" \
  --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false

# --- node (its own netns) ---------------------------------------------------------
# nsenter --net, not `ip netns exec`: that also makes a private mount namespace with a
# fresh /sys, which hides the cgroup mounts from the kubelet and keeps containerd's
# mounts out of sight of the host (and of down.sh).
IN_NODE=(nsenter --net="/run/netns/$LK_NETNS")
PAUSE_IMAGE=$(awk '$1 ~ /latchkey-pause:/ {print $1}' "$IMAGES")
[[ -n "$PAUSE_IMAGE" ]] || lk_die "no pause image in $IMAGES"
CTRD=$LK_STATE/containerd
cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CTRD/containerd.sock"
[ttrpc]
  address = "$CTRD/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM lacks CAP_SYS_RESOURCE: lowering oom_score_adj below the parent's fails.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$LK_STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$LK_STATE/cni/net.d"
EOF
cat >"$LK_STATE/cni/net.d/10-$LK_CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$LK_CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge", "bridge": "$LK_BRIDGE", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$LK_STATE/cni/ipam",
        "ranges": [[{"subnet": "$LK_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
start containerd "${IN_NODE[@]}" containerd --config "$CTRD/config.toml"
CTR=(ctr --address "$CTRD/containerd.sock" -n k8s.io)
wait_for containerd 30 "containerd" "${CTR[@]}" version
while read -r name _digest archive; do
  [[ -n "$name" && "$name" != \#* ]] || continue
  "${CTR[@]}" images import "$archive" >/dev/null
  lk_log "imported $name"
done <"$IMAGES"

# kubelet's cgroup root, in every v1 hierarchy (cpuset needs its cpus/mems filled in).
for h in /sys/fs/cgroup/*/; do
  [[ -f "$h/cgroup.procs" ]] || continue
  mkdir -p "$h$LK_CGROUP_ROOT"
  if [[ -f "$h/cpuset.cpus" ]]; then
    cat "$h/cpuset.cpus" >"$h$LK_CGROUP_ROOT/cpuset.cpus"
    cat "$h/cpuset.mems" >"$h$LK_CGROUP_ROOT/cpuset.mems"
  fi
done
printf 'nameserver %s\nsearch .\n' "$LK_DNS_IP" >"$LK_STATE/node/resolv.conf"
KL=$LK_STATE/kubelet
cat >"$LK_STATE/node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /$LK_CGROUP_ROOT
containerRuntimeEndpoint: unix://$CTRD/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
address: $LK_NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDomain: $LK_CLUSTER_DOMAIN
clusterDNS: [$LK_DNS_IP]
resolvConf: $LK_STATE/node/resolv.conf
podCIDR: $LK_POD_CIDR
podLogsDir: $KL/pod-logs
volumePluginDir: $KL/volume-plugins
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
# The kubelet refreshes a pod's Secret volumes when it syncs the pod: every syncFrequency
# (default 1m, plus jitter, later still on a loaded node). The rotation test rotates every
# 20 s and needs each key delivered within its 20 s as the newest: sync every 5 s here.
# Production nodes keep the default; the README's prePublish guidance assumes it.
syncFrequency: 5s
EOF
start kubelet "${IN_NODE[@]}" "$NODE_BIN/kubelet" \
  --config="$LK_STATE/node/kubelet.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
  --hostname-override="$LK_NODE_NAME" --node-ip="$LK_NODE_IP" \
  --root-dir="$KL" --cert-dir="$KL/pki"

cat >"$LK_STATE/node/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$PKI/kube-proxy.kubeconfig"}
mode: iptables
clusterCIDR: $LK_POD_CIDR
hostnameOverride: $LK_NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# conntrack's table size is global: leave it as it is (0 = do not set).
conntrack: {maxPerCore: 0, min: 0}
EOF
start kube-proxy "${IN_NODE[@]}" "$NODE_BIN/kube-proxy" --config="$LK_STATE/node/kube-proxy.yaml"

node_ready() {
  [[ $("${KUBECTL[@]}" get node "$LK_NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
wait_for kubelet 120 "node $LK_NODE_NAME Ready" node_ready

# --- cluster add-ons: CoreDNS -----------------------------------------------------
COREDNS_IMAGE=$(awk '$1 ~ /latchkey-coredns:/ {print $1}' "$IMAGES")
[[ -n "$COREDNS_IMAGE" ]] || lk_die "no coredns image in $IMAGES"
sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_IP@|$LK_DNS_IP|g" \
  -e "s|@DOMAIN@|$LK_CLUSTER_DOMAIN|g" "$HERE/coredns.yaml" | "${KUBECTL[@]}" apply -f - >/dev/null
wait_for kubelet 120 "CoreDNS Available" "${KUBECTL[@]}" -n kube-system wait deployment/coredns \
  --for=condition=Available --timeout=2s

# --- done -------------------------------------------------------------------------
cat >"$LK_STATE/env" <<EOF
export KUBECONFIG=$PKI/admin.kubeconfig
export LATCHKEY_CLUSTER_STATE_DIR=$LK_STATE
export LATCHKEY_CLUSTER_HOST_IP=$LK_HOST_IP
export LATCHKEY_CLUSTER_KUBECTL=$CP_BIN/kubectl
export LATCHKEY_CLUSTER_IMAGES=$IMAGES
export LATCHKEY_CLUSTER_DATABASE_URL=$LATCHKEY_TEST_DATABASE_URL
export LATCHKEY_CLUSTER_REDIS_URL=$LATCHKEY_TEST_REDIS_URL
export LATCHKEY_CLUSTER_SMTP=$LK_HOST_IP:$SMTP_PORT
export LATCHKEY_CLUSTER_MAIL_DIR=$LK_STATE/mail
EOF
chmod 600 "$LK_STATE/env"
if [[ -n "${LATCHKEY_CLUSTER_OWNER_PID:-}" ]]; then
  owner=$LATCHKEY_CLUSTER_OWNER_PID
  setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; exec '$HERE/down.sh'" \
    >"$LK_STATE/../latchkey-cluster-reaper.log" 2>&1 </dev/null 8>&- &
  printf '%s\n' "$!" >"$LK_STATE/run/reaper.pid"
fi
lk_log "cluster up in $((SECONDS - START))s (node Ready, CoreDNS Available)"
cat "$LK_STATE/env"
