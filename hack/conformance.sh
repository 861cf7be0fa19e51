#!/usr/bin/env bash
# make conformance: the Kubernetes project's own node conformance specs ([NodeConformance] of e2e.test v1.37.2)
# against the local cluster of make run, with every image built on this machine. Writes a table of results to
# $NODEAGENT_RUN/conformance/results.md (see docs/CONFORMANCE.md).
#
# Nothing it runs reaches past this machine: the suite's registries are mapped to loopback names (images
# missing locally fail to pull from loopback), and the agent runs with a resolver file whose nameserver is a
# loopback address where nothing listens, so names outside the cluster get SERVFAIL instead of going upstream.
#
# Environment: FOCUS and SKIP (ginkgo regular expressions) narrow or widen the selection; SKIP replaces the
# default skips below, SKIP_MORE adds to them; PROCS is the number of parallel ginkgo processes (default 4).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
cd "$NODEAGENT_REPO"

CONF=$NODEAGENT_RUN/conformance
KUBECONFIG=$NODEAGENT_RUN/cluster/pki/admin.kubeconfig
FOCUS=${FOCUS:-'\[NodeConformance\]'}
# Skipped as the issue asks: serial, disruptive, flaky and slow specs, feature-gated ones, and those that pull
# images from registries (nothing can be pulled here).
SKIP=${SKIP:-'\[Serial\]|\[Disruptive\]|\[Flaky\]|\[Slow\]|\[Feature:[^]]+\]|should be able to pull|should not be able to pull|pull image'}
if [[ -n ${SKIP_MORE:-} ]]; then
	SKIP="$SKIP|$SKIP_MORE"
fi
PROCS=${PROCS:-4}

hack/build-k8s.sh e2e.test agnhost ginkgo nnp kubectl
mkdir -p "$CONF"
rm -rf "$CONF/report"

# Every registry the suite knows, mapped to a name on loopback.
cat > "$CONF/repo-list.yaml" <<LIST
promoterE2eRegistry: localhost/e2e-test-images
buildImageRegistry: localhost/build-image
invalidRegistry: localhost:1/invalid
gcEtcdRegistry: localhost/registry.k8s.io
gcRegistry: localhost/registry.k8s.io
sigStorageRegistry: localhost/sig-storage
privateRegistry: localhost:1/k8s-authenticated-test
dockerLibraryRegistry: localhost/library
cloudProviderGcpRegistry: localhost/cloud-provider-gcp
LIST
export KUBE_TEST_REPO_LIST=$CONF/repo-list.yaml
"$K8S_BIN/e2e.test" --list-images > "$CONF/images.txt"
log "building the suite's images ($(wc -l < "$CONF/images.txt") names)"
k8s_src=$(cd hack/k8s && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
go run ./hack/imagebuild --out "$NODEAGENT_CACHE/images/conformance" --conformance-images "$CONF/images.txt" \
  --k8s-bin "$K8S_BIN" --k8s-src "$k8s_src"

# The node of make run, restarted with a resolver file that keeps DNS on this machine.
echo "nameserver 127.0.0.254" > "$CONF/resolv.conf"
NODEAGENT_ARGS="--resolv-conf $CONF/resolv.conf" hack/run.sh

log "running the suite: focus $FOCUS, skip $SKIP, $PROCS processes (log: $CONF/e2e.log)"
rc=0
"$K8S_BIN/ginkgo" --procs="$PROCS" --focus="$FOCUS" --skip="$SKIP" --timeout=2h --no-color \
  --junit-report=junit.xml --output-dir="$CONF/report" "$K8S_BIN/e2e.test" -- \
  --kubeconfig="$KUBECONFIG" --provider=skeleton --kubectl-path="$K8S_BIN/kubectl" \
  --report-dir="$CONF/report" --disable-log-dump > "$CONF/e2e.log" 2>&1 || rc=$?
go run ./hack/conformancereport --out "$CONF/results.md" "$CONF/report/junit.xml"
log "ginkgo exited $rc; table: $CONF/results.md, log: $CONF/e2e.log"
exit "$rc"
