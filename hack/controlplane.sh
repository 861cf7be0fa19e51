#!/usr/bin/env bash
# A local control plane on loopback: etcd + kube-apiserver + kube-controller-manager +
# kube-scheduler, the real v1.37 binaries from hack/build-k8s.sh. State, certs, kubeconfigs, logs and pid
# files live under $NODEAGENT_RUN/cluster; ports and CIDRs come from the environment so tests can run their own.
#
# Usage: hack/controlplane.sh up|down|status
#   up    builds what is missing, writes certs/kubeconfigs, starts what is not running, waits for /readyz
#   down  stops every process it started (by pid file) and keeps the data; CLEAN=1 removes the data too
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

CLUSTER_DIR=$NODEAGENT_RUN/cluster
PKI=$CLUSTER_DIR/pki
LOGS=$CLUSTER_DIR/logs
PIDS=$CLUSTER_DIR/pids
APISERVER_PORT=${APISERVER_PORT:-6443}
ETCD_PORT=${ETCD_PORT:-2379}
KCM_PORT=${KCM_PORT:-10257}
SCHEDULER_PORT=${SCHEDULER_PORT:-10259}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
SERVICE_IP=${SERVICE_IP:-10.96.0.1} # the kubernetes Service: first address of SERVICE_CIDR
CLUSTER_CIDR=${CLUSTER_CIDR:-10.244.0.0/16}
NODE_NAMES=${NODE_NAMES:-$(hostname)}
# SIGNING_DURATION is the lifetime of the certificates the controller-manager signs for CSRs (kubelet-serving,
# kubelet client); the e2e tests shorten it to see a certificate rotated.
SIGNING_DURATION=${SIGNING_DURATION:-8760h}
ADMIN_KUBECONFIG=$PKI/admin.kubeconfig

# start NAME COMMAND...: runs COMMAND detached with its log and pid file, unless NAME is already running.
start() {
  local name=$1; shift
  if running_pidfile "$PIDS/$name.pid"; then
    log "$name already running (pid $(cat "$PIDS/$name.pid"))"
    return
  fi
  log "starting $name (log: $LOGS/$name.log)"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

up() {
  "$(dirname "$0")/build-k8s.sh"
  command -v etcd >/dev/null || die "etcd is missing: run hack/setup-node.sh"
  mkdir -p "$PKI" "$LOGS" "$PIDS" "$CLUSTER_DIR/etcd"
  local node_args=()
  for n in $NODE_NAMES; do node_args+=(--node "$n"); done
  (cd "$NODEAGENT_REPO" && go run ./hack/pki --dir "$PKI" --server "https://127.0.0.1:$APISERVER_PORT" \
    --service-ip "$SERVICE_IP" "${node_args[@]}")

  start etcd etcd --name default --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 1))"
  wait_for "etcd on 127.0.0.1:$ETCD_PORT" 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

  # A loopback advertise address needs the endpoint reconciler off (ENVIRONMENT.md). The aggregation layer
  # (the front proxy's CA and client, as kubeadm sets it up) serves extension APIs such as metrics-server's,
  # reached at their pods' addresses (--enable-aggregator-routing) rather than through a ClusterIP.
  # APISERVER_EXTRA_ARGS: more flags, split on spaces (the footprint benchmark turns the audit log on).
  local apiserver_extra_args=()
  read -ra apiserver_extra_args <<< "${APISERVER_EXTRA_ARGS:-}"
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --enable-bootstrap-token-auth \
    --allow-privileged=true --profiling=false "${apiserver_extra_args[@]}"
  wait_for "kube-apiserver /readyz on 127.0.0.1:$APISERVER_PORT" 120 kubectl_admin get --raw /readyz
  # The agent is also the node's kube-proxy: the Node authorizer does not give nodes EndpointSlices, so
  # nodes get kube-proxy's role, as a cluster admin joining nodeagent nodes would do (README).
  kubectl_admin create clusterrolebinding nodeagent:node-proxier --clusterrole=system:node-proxier \
    --group=system:nodes --dry-run=client -o yaml | kubectl_admin apply -f - >/dev/null

  kubeadm_objects

  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --cluster-signing-duration "$SIGNING_DURATION" \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --use-service-account-credentials --controllers '*,bootstrapsigner,tokencleaner'
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig "$PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
  wait_for "kube-controller-manager /healthz" 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for "kube-scheduler /healthz" 60 curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  log "control plane ready: export KUBECONFIG=$ADMIN_KUBECONFIG"
}

# kubeadm_objects makes the objects a kubeadm (and kind) cluster has for nodes that join it, with kubeadm's own
# phases: a bootstrap token (kept in $PKI/bootstrap-token), the cluster-info ConfigMap that the
# controller-manager's bootstrapsigner signs for it, the kubelet-config ConfigMap, and the RBAC that lets
# bootstrap tokens post CSRs, has them approved and lets nodes renew. `nodeagent join` consumes them;
# `kubeadm token create --print-join-command --kubeconfig $ADMIN_KUBECONFIG` prints a join command.
kubeadm_objects() {
  local token_file=$PKI/bootstrap-token config=$CLUSTER_DIR/kubeadm.yaml
  [[ -s $token_file ]] || "$K8S_BIN/kubeadm" token generate > "$token_file"
  # kubeadm replaces a loopback advertise address by a host interface's, and this machine may have none to
  # offer; these two phases only validate it, so an RFC 5737 documentation address stands in. clusterDNS is
  # the agent's node-local address, as in a cluster running NodeLocal DNSCache.
  cat > "$config" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: $(cat "$token_file")
  ttl: 24h0m0s
  groups: [system:bootstrappers:kubeadm:default-node-token]
  usages: [signing, authentication]
localAPIEndpoint: {advertiseAddress: 192.0.2.1, bindPort: $APISERVER_PORT}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $K8S_VERSION
controlPlaneEndpoint: 127.0.0.1:$APISERVER_PORT
networking: {serviceSubnet: $SERVICE_CIDR, podSubnet: $CLUSTER_CIDR, dnsDomain: cluster.local}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
clusterDNS: [169.254.20.10]
clusterDomain: cluster.local
EOF
  # kubeadm needs nothing beyond the API server; the proxy settings make sure it reaches nothing else.
  local phase
  for phase in bootstrap-token "upload-config kubelet"; do
    # shellcheck disable=SC2086 # the phase is two words on purpose
    HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost \
      "$K8S_BIN/kubeadm" init phase $phase --config "$config" --kubeconfig "$ADMIN_KUBECONFIG" \
      >>"$LOGS/kubeadm.log" 2>&1 || die "kubeadm init phase $phase failed: see $LOGS/kubeadm.log"
  done
}

down() {
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if [[ -f $PIDS/$name.pid ]]; then log "stopping $name"; fi
    stop_pidfile "$PIDS/$name.pid"
  done
  if [[ ${CLEAN:-0} == 1 ]]; then
    log "removing $CLUSTER_DIR"
    rm -rf "$CLUSTER_DIR"
  fi
}

status() {
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    if running_pidfile "$PIDS/$name.pid"; then echo "$name: running (pid $(cat "$PIDS/$name.pid"))"
    else echo "$name: stopped"; fi
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
