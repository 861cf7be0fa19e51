#!/usr/bin/env bash
# make stop: removes the demo pods, stops nodeagent and the control plane. containerd keeps running (it is
# the node's runtime, shared with anything else on the machine); CLEAN=1 also deletes the cluster's data.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

KUBECONFIG=$NODEAGENT_RUN/cluster/pki/admin.kubeconfig
if running_pidfile "$NODEAGENT_RUN/nodeagent.pid" && [[ -f $KUBECONFIG ]]; then
  log "deleting the demo workload so the agent removes its containers"
  "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" delete -f "$NODEAGENT_REPO/examples/demo.yaml" \
    --ignore-not-found --wait=true --timeout=60s >/dev/null || true
  (wait_for "demo pods to be gone" 60 bash -c \
    "[[ -z \$('$K8S_BIN/kubectl' --kubeconfig '$KUBECONFIG' get pods -l app=demo -o name) ]]") || true
fi
if [[ -d $NODEAGENT_RUN/node-b || -e /run/netns/nodeagent-dev-b ]]; then "$NODEAGENT_REPO/hack/second-node.sh" down; fi
if [[ -f $NODEAGENT_RUN/nodeagent.pid ]]; then log "stopping nodeagent"; fi
stop_pidfile "$NODEAGENT_RUN/nodeagent.pid"
# A stopped agent leaves its Service rules so a restart loses no traffic; stopping the cluster removes them.
if [[ -x $NODEAGENT_REPO/bin/nodeagent ]]; then "$NODEAGENT_REPO/bin/nodeagent" --cleanup-proxy; fi
# Likewise the link that holds its DNS address (169.254.20.10).
ip link del nodeagent-local 2>/dev/null || true
"$NODEAGENT_REPO/hack/controlplane.sh" down
log "stopped"
