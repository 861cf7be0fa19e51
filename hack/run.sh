#!/usr/bin/env bash
# make run: a local cluster with nodeagent as its node, and a demo workload. NODES=2 adds a second node in a
# network namespace of its own, joined with `nodeagent join` (hack/second-node.sh).
# Idempotent: a second run reuses built binaries and leaves running components alone.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

NODE_NAME=${NODE_NAME:-$(hostname)}
AGENT_PID=$NODEAGENT_RUN/nodeagent.pid
AGENT_LOG=$NODEAGENT_RUN/nodeagent.log
export NODE_NAMES=$NODE_NAME

"$NODEAGENT_REPO/hack/setup-node.sh"
log "building and importing test images"
(cd "$NODEAGENT_REPO" && go run ./hack/imagebuild --out "$NODEAGENT_CACHE/images")
"$NODEAGENT_REPO/hack/controlplane.sh" up
KUBECONFIG=$NODEAGENT_RUN/cluster/pki/admin.kubeconfig
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

log "building nodeagent"
(cd "$NODEAGENT_REPO" && make --no-print-directory build)
if running_pidfile "$AGENT_PID"; then
  log "restarting nodeagent (pid $(cat "$AGENT_PID")) with the fresh build; running pods are adopted"
  stop_pidfile "$AGENT_PID"
fi
node_ip_args=()
if ((${NODES:-1} >= 2)); then
  "$NODEAGENT_REPO/hack/second-node.sh" link
  node_ip_args=(--node-ip 10.97.0.1) # on the link to the second node: the gateway of its route to these pods
fi
log "starting nodeagent as node $NODE_NAME (log: $AGENT_LOG)"
# NODEAGENT_ARGS adds flags (make conformance keeps the pods' DNS on this machine with one).
# shellcheck disable=SC2086
setsid "$NODEAGENT_REPO/bin/nodeagent" --kubeconfig "$NODEAGENT_RUN/cluster/pki/$NODE_NAME.kubeconfig" \
  --hostname-override "$NODE_NAME" "${node_ip_args[@]}" ${NODEAGENT_ARGS:-} >>"$AGENT_LOG" 2>&1 < /dev/null &
echo $! > "$AGENT_PID"

log "waiting for node $NODE_NAME to be Ready"
wait_for "node $NODE_NAME Ready" 120 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
if ((${NODES:-1} >= 2)); then "$NODEAGENT_REPO/hack/second-node.sh" up; fi
kubectl apply -f "$NODEAGENT_REPO/examples/demo.yaml" >/dev/null
log "waiting for the demo Deployment"
kubectl rollout status deployment/demo --timeout=120s >/dev/null
kubectl get nodes -o wide
kubectl get pods -o wide
cat <<MSG

nodeagent is running as node $NODE_NAME.
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$K8S_BIN/kubectl     # v1.37, matching the control plane
  kubectl get nodes,pods -o wide
  curl http://\$(kubectl get pod -l app=demo -o jsonpath='{.items[0].status.podIP}'):8080/hostname
  kubectl scale deployment demo --replicas=5
Logs: $AGENT_LOG and $NODEAGENT_RUN/cluster/logs/. Stop everything with: make stop
MSG
