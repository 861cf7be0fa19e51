#!/usr/bin/env bash
# gofmt, go vet, staticcheck and the layout check (hack/check-layout.sh) over the main module; installs staticcheck if it is missing.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$NODEAGENT_REPO"
if ! staticcheck -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
  log "installing staticcheck $STATICCHECK_VERSION into $TOOLS_BIN"
  GOBIN=$TOOLS_BIN go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
unformatted=$(gofmt -l $(git ls-files '*.go'))
[[ -z $unformatted ]] || die "gofmt would change: $unformatted"
log "go vet"; go vet ./...
log "staticcheck"; staticcheck ./...
log "layout"; bash hack/check-layout.sh
log "lint clean"
