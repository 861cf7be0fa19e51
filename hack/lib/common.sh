# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source it
# Shared settings for the hack/ scripts. Source it; it defines no functions that change the machine.
# Every path can be moved with an environment variable so tests and CI can keep their own copies.

NODEAGENT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Built binaries survive between runs here; a fresh machine fills it once.
NODEAGENT_CACHE=${NODEAGENT_CACHE:-/var/cache/nodeagent}
# Everything a running local cluster owns: certs, kubeconfigs, data, logs, pid files.
NODEAGENT_RUN=${NODEAGENT_RUN:-/var/run/nodeagent-dev}
K8S_VERSION=v1.37.2
K8S_BIN=${K8S_BIN:-$NODEAGENT_CACHE/k8s-$K8S_VERSION/bin}
# Go tools the project installs (crictl, staticcheck) live here, so a fresh machine needs no other PATH setup.
TOOLS_BIN=$NODEAGENT_CACHE/bin
CRICTL_VERSION=v1.37.0
METRICS_SERVER_VERSION=v0.8.0
STATICCHECK_VERSION=v0.8.2
export PATH=$TOOLS_BIN:/usr/local/go/bin:$PATH

# install_go_tool NAME MODULE/CMD VERSION: go install into TOOLS_BIN unless that version is there; tools built
# by go install report "version unknown", so a stamp file records which version is.
install_go_tool() {
  local name=$1 pkg=$2 version=$3
  [[ -x $TOOLS_BIN/$name && -f $TOOLS_BIN/.$name-$version ]] && return 0
  log "installing $name $version into $TOOLS_BIN (built from its Go module)"
  GOBIN=$TOOLS_BIN CGO_ENABLED=0 go install "$pkg@$version"
  touch "$TOOLS_BIN/.$name-$version"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds or the deadline passes.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

# stop_pidfile FILE: stops the process recorded in FILE (TERM, then KILL after 10 s) and removes the file.
stop_pidfile() {
  local f=$1 pid
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# running_pidfile FILE: true when FILE names a live process.
running_pidfile() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
