#!/usr/bin/env bash
# make test: prepares the node (apt, containerd, images, containerd v2, Kubernetes binaries), then lint, unit and
# e2e tests.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
cd "$NODEAGENT_REPO"
hack/setup-node.sh
install_go_tool metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server "$METRICS_SERVER_VERSION" # kubectl top's e2e
log "building and importing test images"
go run ./hack/imagebuild --out "$NODEAGENT_CACHE/images" --metrics-server "$TOOLS_BIN/metrics-server"
hack/setup-containerd2.sh up # a second runtime, with CRI container events, for the e2e node that uses them
hack/build-k8s.sh
hack/lint.sh
log "unit tests"
go test -count=1 ./pkg/... ./cmd/... ./internal/...
log "end-to-end tests (real kube-apiserver, containerd, nodeagent)"
NODEAGENT_E2E=1 go test -count=1 -timeout 30m -v ./test/e2e/...
