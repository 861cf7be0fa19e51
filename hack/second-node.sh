#!/usr/bin/env bash
# A second node for `make run NODES=2`: a network namespace of its own ($NODE_B_NETNS) linked to the host by a
# veth pair, its own containerd (hack/setup-containerd2.sh, instance $NODE_B_CONTAINERD), and nodeagent joined
# with `nodeagent join` and a token from `kubeadm token create`, as on a kubeadm or kind cluster. The API
# server listens on the host's loopback only; two socat relays carry the namespace's 127.0.0.1:$APISERVER_PORT
# (the address cluster-info names) over the veth. Everything stays on this machine.
#
# Usage: hack/second-node.sh link|up|down    (make run NODES=2 and make stop call it; link makes only the
#        namespace and the veth, which node A's address must exist on before node A starts)
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

NODE_B_NAME=${NODE_B_NAME:-$(hostname)-b}
NODE_B_NETNS=nodeagent-dev-b
NODE_B_CONTAINERD=nodeagent-dev-b
NODE_B_DIR=$NODEAGENT_RUN/node-b
APISERVER_PORT=${APISERVER_PORT:-6443}
# The veth pair: the host's end is node A's InternalIP (make run starts node A with --node-ip NODE_A_IP when
# NODES=2), so each node's route to the other's pods has a gateway on a connected network.
NODE_A_IP=10.97.0.1
NODE_B_IP=10.97.0.2
HOST_VETH=nadev-b
KUBECONFIG=$NODEAGENT_RUN/cluster/pki/admin.kubeconfig

# in_b runs a command in node B's namespace; a background one is started with "${IN_B[@]}" directly, so that
# $! is its PID (nsenter and setsid exec it) and not a subshell's.
IN_B=(nsenter --net="/run/netns/$NODE_B_NETNS")
in_b() { "${IN_B[@]}" "$@"; }

# link: the namespace, the veth pair with node B's default route over it, forwarding in node B. nsenter (not
# ip netns exec, which gives the command a mount namespace of its own) keeps node B's containerd and agent in
# the host's mounts, so the volumes the agent mounts are the ones containerd sees.
link() {
  [[ -e /run/netns/$NODE_B_NETNS ]] || ip netns add "$NODE_B_NETNS"
  if ! ip link show "$HOST_VETH" >/dev/null 2>&1; then
    ip link add "$HOST_VETH" type veth peer name eth0 netns "$NODE_B_NETNS"
    ip addr add "$NODE_A_IP/30" dev "$HOST_VETH"
    ip link set "$HOST_VETH" up
    in_b ip link set lo up
    in_b ip addr add "$NODE_B_IP/30" dev eth0
    in_b ip link set eth0 up
    in_b ip route add default via "$NODE_A_IP"
    in_b sysctl -qw net.ipv4.ip_forward=1
  fi
}

relay() {
  mkdir -p "$NODE_B_DIR"
  running_pidfile "$NODE_B_DIR/relay-host.pid" || {
    setsid socat "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_A_IP,fork,reuseaddr" "TCP:127.0.0.1:$APISERVER_PORT" </dev/null >/dev/null 2>&1 &
    echo $! > "$NODE_B_DIR/relay-host.pid"
  }
  running_pidfile "$NODE_B_DIR/relay-b.pid" || {
    "${IN_B[@]}" setsid socat "TCP-LISTEN:$APISERVER_PORT,bind=127.0.0.1,fork,reuseaddr" "TCP:$NODE_A_IP:$APISERVER_PORT" </dev/null >/dev/null 2>&1 &
    echo $! > "$NODE_B_DIR/relay-b.pid"
  }
}

up() {
  command -v socat >/dev/null || die "socat is missing: run hack/setup-node.sh"
  link
  relay
  C2_NAME=$NODE_B_CONTAINERD in_b "$NODEAGENT_REPO/hack/setup-containerd2.sh" up
  if running_pidfile "$NODE_B_DIR/nodeagent.pid"; then
    log "node $NODE_B_NAME: nodeagent already running (pid $(cat "$NODE_B_DIR/nodeagent.pid"))"
    return
  fi
  cat > "$NODE_B_DIR/nodeagent.yaml" <<EOF
apiVersion: nodeagent.io/v1alpha1
kind: NodeAgentConfiguration
hostnameOverride: $NODE_B_NAME
nodeIP: $NODE_B_IP
containerRuntimeEndpoint: unix:///run/$NODE_B_CONTAINERD/containerd.sock
rootDir: $NODE_B_DIR/root
podLogsDir: $NODE_B_DIR/pods
localAPISocket: $NODE_B_DIR/nodeagent.sock
containerLogLinksDir: ""
cniConfDir: /etc/cni/$NODE_B_CONTAINERD
cniBridge: nodeagentb
cgroupRoot: /nodeagent-dev-b
logs:
  enabled: false
EOF
  local join
  join=$(HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1 "$K8S_BIN/kubeadm" token create --ttl 1h \
    --print-join-command --kubeconfig "$KUBECONFIG")
  log "node $NODE_B_NAME: $join (log: $NODE_B_DIR/nodeagent.log)"
  # shellcheck disable=SC2086 # the join command's words are the arguments
  "${IN_B[@]}" setsid "$NODEAGENT_REPO/bin/nodeagent" ${join#kubeadm } --config "$NODE_B_DIR/nodeagent.yaml" \
    >>"$NODE_B_DIR/nodeagent.log" 2>&1 </dev/null &
  echo $! > "$NODE_B_DIR/nodeagent.pid"
  wait_for "node $NODE_B_NAME Ready" 120 "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" wait --for=condition=Ready \
    "node/$NODE_B_NAME" --timeout=5s
}

down() {
  if running_pidfile "$NODE_B_DIR/nodeagent.pid"; then
    log "node $NODE_B_NAME: draining its pods, then stopping its agent"
    "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" drain "$NODE_B_NAME" --ignore-daemonsets --force \
      --timeout=60s >/dev/null 2>&1 || true
  fi
  stop_pidfile "$NODE_B_DIR/nodeagent.pid"
  # Node B's nftables tables, routes and DNS socket holder.
  [[ ! -e /run/netns/$NODE_B_NETNS ]] || in_b "$NODEAGENT_REPO/bin/nodeagent" --cleanup-proxy >/dev/null 2>&1 || true
  "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" delete node "$NODE_B_NAME" --ignore-not-found >/dev/null 2>&1 || true
  [[ ! -e /run/$NODE_B_CONTAINERD ]] || C2_NAME=$NODE_B_CONTAINERD "$NODEAGENT_REPO/hack/setup-containerd2.sh" down
  rm -f "/etc/cni/$NODE_B_CONTAINERD/10-nodeagent.conflist"
  stop_pidfile "$NODE_B_DIR/relay-b.pid"
  stop_pidfile "$NODE_B_DIR/relay-host.pid"
  ip link del "$HOST_VETH" 2>/dev/null || true
  [[ ! -e /run/netns/$NODE_B_NETNS ]] || ip netns del "$NODE_B_NETNS"
}

case ${1:-} in
  link) link ;;
  up) up ;;
  down) down ;;
  *) die "usage: $0 link|up|down" ;;
esac
