// Package netnsutil is the one way tests and benchmarks make network namespaces (New, without a name) and run
// code inside them (Do). The caller owns each namespace it made and closes it; nothing here touches the host's.
package netnsutil

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a thread that is inside ns; sockets created by fn stay in ns after it returns.
func Do(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("returning to the original network namespace: %v", err)) // the thread is unusable
		}
	}()
	return fn()
}

// New creates a network namespace without a name: it lives as long as the handle (or a process in it).
// Unlike `ip netns add`, it leaves /run/netns alone.
func New() (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	ns, err := netns.New() // this thread moves into it
	if serr := netns.Set(orig); serr != nil {
		panic(fmt.Sprintf("returning to the original network namespace: %v", serr)) // the thread is unusable
	}
	if err != nil {
		return 0, fmt.Errorf("creating a network namespace: %w", err)
	}
	return ns, nil
}
