#!/usr/bin/env bash
# make drills: the fault drills of docs/RELIABILITY.md on the e2e stack (real control plane, containerd and
# agent), then their table. Not part of make test: about 20 minutes, 10 of them with the API server or the log
# receiver down. NODEAGENT_DRILL_OUTAGE=30s shortens those outages for a quick try; DRILLS=Pattern runs some.
# All traffic goes to this machine's loopback and to the pods and bridge the e2e node makes.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
cd "$NODEAGENT_REPO"
hack/setup-node.sh
log "building and importing test images"
go run ./hack/imagebuild --out "$NODEAGENT_CACHE/images"
hack/build-k8s.sh

mkdir -p bin
report=${NODEAGENT_DRILL_REPORT:-$PWD/bin/drills.md}
: >"$report"
rc=0
NODEAGENT_E2E=1 NODEAGENT_DRILLS=1 NODEAGENT_DRILL_REPORT=$report \
  go test -count=1 -timeout 60m -v -run "TestDrill${DRILLS:-}" ./test/e2e/ || rc=$?
echo
echo "| Drill | Fault | Pods restarted | Connections to a ClusterIP failed | DNS questions failed | Log lines | Recovery |"
echo "|---|---|---|---|---|---|---|"
cat "$report"
exit "$rc"
