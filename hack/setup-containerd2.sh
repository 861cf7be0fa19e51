#!/usr/bin/env bash
# A second container runtime beside the machine's containerd 1.6: containerd v2 built from its Go module,
# which offers CRI container events (GetContainerEvents). It has its own root, state, socket, CNI conf dir
# and images, so an agent on it is a node of its own (the e2e test of container events runs one).
# Usage: hack/setup-containerd2.sh [up|down]
# C2_NAME (default nodeagent-containerd2) names an instance: its root, state, socket and CNI conf dir, so
# several can run (the two-node e2e test starts one inside the second node's network namespace, where this
# script's containerd inherits the namespace of whoever runs the script).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

CONTAINERD2_VERSION=v2.4.2
C2_BIN=$NODEAGENT_CACHE/containerd-$CONTAINERD2_VERSION/bin
C2_NAME=${C2_NAME:-nodeagent-containerd2}
C2_ROOT=/var/lib/$C2_NAME
C2_STATE=/run/$C2_NAME
C2_SOCK=$C2_STATE/containerd.sock
C2_CNI_DIR=/etc/cni/$C2_NAME
C2_PID=$C2_STATE/containerd.pid

install() {
  [[ -x $C2_BIN/containerd && -x $C2_BIN/containerd-shim-runc-v2 && -x $C2_BIN/ctr ]] && return
  log "building containerd $CONTAINERD2_VERSION from its Go module into $C2_BIN"
  mkdir -p "$C2_BIN"
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    GOBIN=$C2_BIN CGO_ENABLED=0 go install "github.com/containerd/containerd/v2/cmd/$cmd@$CONTAINERD2_VERSION"
  done
}

configure() {
  mkdir -p "$C2_STATE" "$C2_CNI_DIR"
  # containerd's own defaults, changed as for the machine's containerd (ENVIRONMENT.md): the local pause
  # image, no negative oom_score_adj, the distribution's CNI plugins, and a CNI conf dir, ttrpc socket and NRI
  # socket of its own (the defaults are the machine's containerd's and another instance's).
  "$C2_BIN/containerd" config default |
    sed -e "s|sandbox = '.*'|sandbox = 'localhost/pause:local'|" \
        -e "s|restrict_oom_score_adj = false|restrict_oom_score_adj = true|" \
        -e "s|bin_dirs = \[.*\]|bin_dirs = ['/usr/lib/cni']|" \
        -e "s|bin_dir = '.*'|bin_dir = '/usr/lib/cni'|" \
        -e "s|^\( *\)conf_dir = '.*'|\1conf_dir = '$C2_CNI_DIR'|" \
        -e "s|address = '/run/containerd/containerd.sock.ttrpc'|address = '$C2_SOCK.ttrpc'|" \
        -e "s|socket_path = '/var/run/nri/nri.sock'|socket_path = '$C2_STATE/nri.sock'|" > "$C2_STATE/config.toml"
  grep -q "sandbox = 'localhost/pause:local'" "$C2_STATE/config.toml" || die "containerd config: sandbox image not set"
  grep -q "conf_dir = '$C2_CNI_DIR'" "$C2_STATE/config.toml" || die "containerd config: CNI conf dir not set"
  grep -q "address = '$C2_SOCK.ttrpc'" "$C2_STATE/config.toml" || die "containerd config: ttrpc socket not set"
  grep -q "socket_path = '$C2_STATE/nri.sock'" "$C2_STATE/config.toml" || die "containerd config: NRI socket not set"
}

up() {
  install
  if running_pidfile "$C2_PID"; then
    log "containerd $CONTAINERD2_VERSION already running (pid $(cat "$C2_PID"))"
  else
    configure
    log "starting containerd $CONTAINERD2_VERSION on $C2_SOCK (log: $C2_STATE/containerd.log)"
    PATH=$C2_BIN:$PATH setsid "$C2_BIN/containerd" --config "$C2_STATE/config.toml" --root "$C2_ROOT" \
      --state "$C2_STATE/state" --address "$C2_SOCK" >>"$C2_STATE/containerd.log" 2>&1 < /dev/null &
    echo $! > "$C2_PID"
    wait_for "containerd $CONTAINERD2_VERSION on $C2_SOCK" 60 "$C2_BIN/ctr" --address "$C2_SOCK" version
  fi
  for tar in "$NODEAGENT_CACHE"/images/*.tar; do
    "$C2_BIN/ctr" --address "$C2_SOCK" -n k8s.io images import "$tar" >/dev/null
  done
  log "containerd $CONTAINERD2_VERSION ready: unix://$C2_SOCK"
}

down() {
  stop_pidfile "$C2_PID"
  log "containerd $CONTAINERD2_VERSION stopped"
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  *) die "usage: $0 [up|down]" ;;
esac
