#!/usr/bin/env bash
# Builds the real Kubernetes binaries (control plane, kubectl, the kubelet/kube-proxy peers for benchmarks, and
# e2e.test, agnhost and ginkgo for make conformance) from the k8s.io/kubernetes module pinned in hack/k8s/go.mod,
# once, into $K8S_BIN.
# Usage: hack/build-k8s.sh [COMMAND...]   (default: the control plane and kubectl)
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

cmds=("$@")
((${#cmds[@]})) || cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubeadm)

missing=()
for c in "${cmds[@]}"; do [[ -x $K8S_BIN/$c ]] || missing+=("$c"); done
if ((${#missing[@]} == 0)); then
  log "kubernetes $K8S_VERSION binaries already built in $K8S_BIN"
  exit 0
fi

mkdir -p "$K8S_BIN"
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
log "building kubernetes $K8S_VERSION: ${missing[*]} (about 10 minutes on 2 cores from a cold cache)"
cd "$NODEAGENT_REPO/hack/k8s"
for c in "${missing[@]}"; do
  build=(go build)
  case $c in
    e2e.test) build=(go test -c -vet=off); pkg=k8s.io/kubernetes/test/e2e ;; # the upstream e2e suite (make conformance)
    agnhost) pkg=k8s.io/kubernetes/test/images/agnhost ;;            # the suite's test server, for its images
    ginkgo) pkg=github.com/onsi/ginkgo/v2/ginkgo ;;                   # runs the suite in parallel
    nnp) pkg=k8s.io/kubernetes/test/images/nonewprivs ;;             # the nonewprivs image's program
    *) pkg=k8s.io/kubernetes/cmd/$c ;;
  esac
  log "  ${build[*]} $pkg"
  CGO_ENABLED=0 "${build[@]}" -trimpath -ldflags "$ldflags" -o "$K8S_BIN/$c.tmp" "$pkg"
  mv "$K8S_BIN/$c.tmp" "$K8S_BIN/$c"
done
log "built into $K8S_BIN"
