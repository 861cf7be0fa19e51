#!/usr/bin/env bash
# Prepares this machine to be a node: installs the runtime and tools from apt, writes containerd's config
# (local pause image, restrict_oom_score_adj, CNI bin dir) and starts containerd if it is not answering.
# Idempotent: a second run installs nothing and leaves a healthy containerd alone.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

[[ $(id -u) == 0 ]] || die "run as root: the node needs containerd, network namespaces and nftables"

PACKAGES=(containerd runc containernetworking-plugins nftables iptables etcd-server iproute2 curl busybox-static
  dnsutils ca-certificates netcat-openbsd prometheus shellcheck socat
  systemd)
# netcat-openbsd: make conformance's agnhost image has it, as upstream's. prometheus: the e2e tests scrape the
# node with it and lint its metrics with promtool. shellcheck: make lint checks the scripts. socat:
# make run NODES=2 relays the API server to the second node with it. systemd: make lint verifies the unit
# with systemd-analyze (no systemd needs to run).
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  apt-get update -qq
  # Packages with a daemon (prometheus) must not start it: the tests run their own. policy-rc.d is how
  # Debian's maintainer scripts are told so; one that is already there (as in containers) is kept.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -z $own_policy ]] || rm -f "$policy"
fi

install_go_tool crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" # not packaged in Debian

CONTAINERD_CONFIG=/etc/containerd/config.toml
CONTAINERD_SOCK=/run/containerd/containerd.sock
PAUSE_IMAGE=localhost/pause:local
mkdir -p /etc/containerd /etc/cni/net.d "$NODEAGENT_RUN"
# The VM refuses negative oom_score_adj (ENVIRONMENT.md); the pause image is built locally because nothing
# can be pulled; the agent writes its own conflist into /etc/cni/net.d once the node has a podCIDR.
want=$(containerd config default \
  | sed -e "s|sandbox_image = .*|sandbox_image = \"$PAUSE_IMAGE\"|" \
        -e 's|restrict_oom_score_adj = .*|restrict_oom_score_adj = true|' \
        -e 's|bin_dir = "/opt/cni/bin"|bin_dir = "/usr/lib/cni"|')
changed=false
if [[ ! -f $CONTAINERD_CONFIG ]] || [[ $(cat "$CONTAINERD_CONFIG") != "# Written by nodeagent hack/setup-node.sh"$'\n'"$want" ]]; then
  printf '# Written by nodeagent hack/setup-node.sh\n%s\n' "$want" > "$CONTAINERD_CONFIG"
  changed=true
  log "wrote $CONTAINERD_CONFIG"
fi

pidfile=$NODEAGENT_RUN/containerd.pid
if $changed && running_pidfile "$pidfile"; then
  log "restarting containerd for the new config"
  stop_pidfile "$pidfile"
elif $changed && ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
  # A containerd this script did not start (a systemd unit, say) must load the new config too.
  if command -v systemctl >/dev/null && systemctl is-active -q containerd; then
    log "restarting the containerd service for the new config"
    systemctl restart containerd
  else
    die "a containerd that hack/ did not start is running with an old config: restart it, then run this again"
  fi
fi
if ! ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
  log "starting containerd (log: $NODEAGENT_RUN/containerd.log)"
  # setsid: containerd outlives this script and the make process that ran it.
  setsid containerd --config "$CONTAINERD_CONFIG" >>"$NODEAGENT_RUN/containerd.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  wait_for "containerd socket $CONTAINERD_SOCK" 30 ctr --address "$CONTAINERD_SOCK" version
fi
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$CONTAINERD_SOCK" "$CONTAINERD_SOCK" > /etc/crictl.yaml
log "containerd ready on $CONTAINERD_SOCK"
