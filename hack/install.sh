#!/usr/bin/env bash
# make install: nodeagent as a systemd service on this machine. Puts the binary in /usr/local/bin, the unit in
# /etc/systemd/system, deploy/nodeagent.yaml as /etc/nodeagent/config.yaml (an existing one is kept) and the
# state directories in place; enables the unit without starting it (it needs a kubeconfig, or `nodeagent
# join` first). Running it again changes nothing but a newer binary or unit.
# DESTDIR installs under another root (packaging, hack/check-unit.sh); then systemctl is left alone.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

DESTDIR=${DESTDIR:-}
BIN=${BIN:-$NODEAGENT_REPO/bin/nodeagent}
[[ -x $BIN ]] || die "$BIN is missing: run make build"

install -D -m 0755 "$BIN" "$DESTDIR/usr/local/bin/nodeagent"
install -D -m 0644 "$NODEAGENT_REPO/deploy/systemd/nodeagent.service" "$DESTDIR/etc/systemd/system/nodeagent.service"
if [[ -e $DESTDIR/etc/nodeagent/config.yaml ]]; then
  log "keeping $DESTDIR/etc/nodeagent/config.yaml"
else
  install -D -m 0600 "$NODEAGENT_REPO/deploy/nodeagent.yaml" "$DESTDIR/etc/nodeagent/config.yaml"
fi
install -d -m 0700 "$DESTDIR/var/lib/nodeagent"
install -d -m 0755 "$DESTDIR/var/log/pods" "$DESTDIR/var/log/containers" "$DESTDIR/etc/cni/net.d"

if [[ -z $DESTDIR && -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable nodeagent.service
  log "installed; edit /etc/nodeagent/config.yaml (or run nodeagent join), then: systemctl start nodeagent"
else
  log "installed under ${DESTDIR:-/} (no systemd running: not enabled)"
fi
