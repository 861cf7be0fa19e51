package agent

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"k8s.io/klog/v2"
)

// notify sends state to systemd over $NOTIFY_SOCKET (Type=notify units); without it, nothing happens.
func notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		klog.ErrorS(err, "Telling systemd", "state", state)
	}
}

// watchdog sends WATCHDOG=1 at half the unit's WatchdogSec while healthy passes, until ctx ends; without a
// watchdog it returns at once. A wedged relist loop (healthy fails) stops the pings, so systemd restarts
// the agent, as it would a kubelet whose PLEG is stuck.
func watchdog(ctx context.Context, healthy func() error) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		klog.ErrorS(err, "Reading the systemd watchdog settings")
		return
	}
	if interval == 0 {
		return
	}
	klog.InfoS("Pinging the systemd watchdog while the node is healthy", "every", interval/2)
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := healthy(); err != nil {
			klog.ErrorS(err, "Not pinging the systemd watchdog: the node is unhealthy")
			continue
		}
		notify("WATCHDOG=1")
	}
}
