package agent

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// notifySocket is a stand-in for systemd's notification socket: it collects what the agent sends.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

func TestNotifySendsTheStateToSystemd(t *testing.T) {
	got := notifySocket(t)
	notify("READY=1\nSTATUS=node x: 4 components running")
	select {
	case msg := <-got:
		if !strings.HasPrefix(msg, "READY=1\n") {
			t.Errorf("systemd got %q, want READY=1 first", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("systemd got nothing")
	}
}

// The watchdog is pinged while the node is healthy and not while its relist is stuck.
func TestWatchdogStopsWhenTheNodeIsUnhealthy(t *testing.T) {
	got := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100 ms: a ping every 50 ms
	var stuck atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchdog(ctx, func() error {
			if stuck.Load() {
				return errors.New("pleg was last seen active 4m0s ago; threshold is 3m0s")
			}
			return nil
		})
	}()
	defer func() { cancel(); <-done }()
	for range 3 {
		select {
		case msg := <-got:
			if msg != "WATCHDOG=1" {
				t.Fatalf("systemd got %q, want WATCHDOG=1", msg)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no watchdog ping while healthy")
		}
	}
	stuck.Store(true)
	// A ping already on its way may still arrive; after it, none.
	drain := time.After(200 * time.Millisecond)
	for draining := true; draining; {
		select {
		case <-got:
		case <-drain:
			draining = false
		}
	}
	select {
	case msg := <-got:
		t.Errorf("systemd got %q while the node was unhealthy", msg)
	case <-time.After(500 * time.Millisecond):
	}
}
