#!/usr/bin/env bash
# gofmt, go vet, staticcheck and the layout check (hack/check-layout.sh) over the main module, shellcheck over
# the scripts, systemd-analyze over the installed unit (hack/check-unit.sh); installs staticcheck if it is
# missing (shellcheck and systemd come from hack/setup-node.sh).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
cd "$NODEAGENT_REPO"
if ! staticcheck -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
  log "installing staticcheck $STATICCHECK_VERSION into $TOOLS_BIN"
  GOBIN=$TOOLS_BIN go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
mapfile -t go_files < <(git ls-files '*.go')
unformatted=$(gofmt -l "${go_files[@]}")
[[ -z $unformatted ]] || die "gofmt would change: $unformatted"
log "go vet"; go vet ./...
log "staticcheck"; staticcheck ./...
log "layout"; bash hack/check-layout.sh
command -v shellcheck >/dev/null || die "shellcheck is missing: run hack/setup-node.sh"
mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
log "shellcheck"; shellcheck -x -P SCRIPTDIR "${scripts[@]}"
log "systemd unit"; bash hack/check-unit.sh
log "lint clean"
