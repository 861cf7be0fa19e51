#!/usr/bin/env bash
# Joins nodeagent to a kind cluster as an extra node, the way kind's own nodes join (kubeadm's token and CA
# hash), and shows a Deployment spread over kind's node and nodeagent's with pod-to-pod, Service and DNS
# traffic between them. For a machine with docker and kind; see README.md beside it.
#
# The nodeagent node is a container made from the cluster's own node image (kindest/node: containerd, runc
# and the CNI plugins inside) on the `kind` network, with its kubelet disabled and nodeagent in its place.
#
# Usage: test/kind/join.sh [up|down]     CLUSTER=kind (created when missing), NODE=<cluster>-nodeagent
set -euo pipefail

CLUSTER=${CLUSTER:-kind}
NODE=${NODE:-$CLUSTER-nodeagent}
CONTEXT=kind-$CLUSTER
REPO=$(cd "$(dirname "$0")/../.." && pwd)
# The workload: agnhost's netexec answers /hostname on 8080; busybox is the client.
AGNHOST=registry.k8s.io/e2e-test-images/agnhost:2.53
BUSYBOX=busybox:1.36

# log, die and wait_for; nothing in it changes the machine.
# shellcheck source=../../hack/lib/common.sh
source "$REPO/hack/lib/common.sh"
k() { kubectl --context "$CONTEXT" "$@"; }

up() {
  for tool in docker kind kubectl go; do command -v "$tool" >/dev/null || die "$tool is missing"; done
  if ! kind get clusters | grep -qx "$CLUSTER"; then
    log "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER"
  fi
  local control_plane=$CLUSTER-control-plane image join
  image=$(docker inspect -f '{{.Config.Image}}' "$control_plane")

  log "building nodeagent"
  (cd "$REPO" && CGO_ENABLED=0 go build -o bin/nodeagent ./cmd/nodeagent)

  if ! docker inspect "$NODE" >/dev/null 2>&1; then
    log "starting $NODE from $image on the kind network"
    # As kind runs its nodes: privileged, systemd as init, the host's modules.
    docker run -d --name "$NODE" --hostname "$NODE" --network kind --privileged \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      --cgroupns private --tmpfs /run --tmpfs /tmp -v /lib/modules:/lib/modules:ro -v /var \
      --label io.x-k8s.kind.cluster="$CLUSTER" "$image" >/dev/null
    wait_for "systemd in $NODE" 60 docker exec "$NODE" systemctl is-system-running --wait
    # nodeagent is the node's kubelet; containerd stays. nodeagent gives runc cgroupfs paths.
    docker exec "$NODE" systemctl disable --now kubelet >/dev/null 2>&1 || true
    docker exec "$NODE" sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' /etc/containerd/config.toml
    docker exec "$NODE" systemctl restart containerd
  fi
  docker cp "$REPO/bin/nodeagent" "$NODE:/usr/local/bin/nodeagent"

  # The agent is also the node's kube-proxy: nodes may read Services and EndpointSlices.
  k create clusterrolebinding nodeagent:node-proxier --clusterrole=system:node-proxier --group=system:nodes \
    --dry-run=client -o yaml | k apply -f - >/dev/null
  # Keep kube-proxy and kindnet off nodeagent's node: it does their work (the patches `nodeagent join` prints).
  for ds in kube-proxy:nodeagent.io/proxy kindnet:nodeagent.io/node; do
    k -n kube-system patch daemonset "${ds%%:*}" --type merge -p "{\"spec\":{\"template\":{\"spec\":{\"affinity\":{\"nodeAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"${ds#*:}\",\"operator\":\"NotIn\",\"values\":[\"true\"]}]}]}}}}}}}" >/dev/null
  done

  join=$(docker exec "$control_plane" kubeadm token create --print-join-command)
  log "on $NODE: nodeagent ${join#kubeadm }"
  # shellcheck disable=SC2086 # the join command's words are the arguments
  docker exec -d "$NODE" sh -c "exec /usr/local/bin/nodeagent ${join#kubeadm } --hostname-override $NODE >/var/log/nodeagent.log 2>&1"
  wait_for "node $NODE Ready (docker exec $NODE cat /var/log/nodeagent.log)" 180 \
    k wait --for=condition=Ready "node/$NODE" --timeout=5s
  k get nodes -o wide

  demo
}

# demo spreads two web pods over the two nodes and, from a client pod on each node, fetches each web pod
# by IP, the Service's ClusterIP and its DNS name.
demo() {
  k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: web, image: $AGNHOST, args: [netexec, --http-port=8080], ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
  k rollout status deployment/web --timeout=180s
  local nodes node ip target
  nodes=$(k get nodes -o jsonpath='{.items[*].metadata.name}')
  for node in $nodes; do
    k run "client-$node" --image "$BUSYBOX" --restart Never \
      --overrides "{\"spec\":{\"nodeName\":\"$node\"}}" --command -- sleep 3600 >/dev/null 2>&1 || true
  done
  for node in $nodes; do
    k wait --for=condition=Ready "pod/client-$node" --timeout=120s >/dev/null
  done
  k get pods -o wide
  local targets=()
  for ip in $(k get pods -l app=web -o jsonpath='{.items[*].status.podIP}'); do targets+=("$ip:8080"); done
  targets+=("$(k get service web -o jsonpath='{.spec.clusterIP}')" web.default.svc.cluster.local)
  printf '\n%-28s %-36s %s\n' "client on node" "target" "answer (the web pod's name)"
  for node in $nodes; do
    for target in "${targets[@]}"; do
      printf '%-28s %-36s %s\n' "$node" "$target" \
        "$(k exec "client-$node" -- wget -q -T 5 -O- "http://$target/hostname" 2>&1 || echo FAILED)"
    done
  done
}

down() {
  k delete deployment web --ignore-not-found >/dev/null 2>&1 || true
  k delete service web --ignore-not-found >/dev/null 2>&1 || true
  k delete pods -l run --ignore-not-found >/dev/null 2>&1 || true # the client pods (kubectl run labels them)
  k delete node "$NODE" --ignore-not-found >/dev/null 2>&1 || true
  docker rm -f "$NODE" >/dev/null 2>&1 || true
  log "removed $NODE (the kind cluster stays: kind delete cluster --name $CLUSTER)"
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  *) die "usage: $0 [up|down]" ;;
esac
