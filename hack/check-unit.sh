#!/usr/bin/env bash
# Checks the systemd unit as installed: hack/install.sh into a scratch root, twice (the second run must change
# nothing), then `systemd-analyze verify` against that root, with the machine's own units beside it for the
# unit's dependencies (containerd.service, network-online.target). lint.sh runs it; no systemd needs to run.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
command -v systemd-analyze >/dev/null || die "systemd-analyze is missing: run hack/setup-node.sh"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bin=$root/build/nodeagent
(cd "$NODEAGENT_REPO" && go build -o "$bin" ./cmd/nodeagent)
DESTDIR=$root/dest BIN=$bin "$NODEAGENT_REPO/hack/install.sh" 2>/dev/null
first=$(cd "$root/dest" && find . -printf '%p %m %s\n' | sort)
echo "# edited by the admin" >> "$root/dest/etc/nodeagent/config.yaml"
edited=$(cd "$root/dest" && find . -printf '%p %m %s\n' | sort)
DESTDIR=$root/dest BIN=$bin "$NODEAGENT_REPO/hack/install.sh" 2>/dev/null
second=$(cd "$root/dest" && find . -printf '%p %m %s\n' | sort)
[[ $edited == "$second" ]] || die "hack/install.sh is not idempotent: a second run changed $(diff <(echo "$edited") <(echo "$second"))"
[[ $first != "$edited" ]] || die "check-unit: editing the config changed nothing?"

mkdir -p "$root/dest/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$root/dest/usr/lib/systemd/"
# verify only warns about a line it cannot parse (and ignores it): any output is a failure here.
out=$(systemd-analyze verify --root="$root/dest" nodeagent.service 2>&1) || die "systemd-analyze verify: $out"
[[ -z $out ]] || die "systemd-analyze verify: $out"
log "unit: hack/install.sh is idempotent and keeps the config; systemd-analyze verify passes"
