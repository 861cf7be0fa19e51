package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// FluentReceiver is test/fluentreceiver (the OpenTelemetry Collector's fluentforward receiver as a program)
// running on a loopback address, writing one JSON object per record it acknowledged to Out.
type FluentReceiver struct {
	Addr, Out string
	cmd       *exec.Cmd
}

// BuildFluentReceiver builds test/fluentreceiver (its own module, under the repository root repo) into bin.
func BuildFluentReceiver(repo, bin string) error {
	out, err := exec.Command("go", "build", "-C", filepath.Join(repo, "test/fluentreceiver"), "-o", bin, ".").CombinedOutput()
	if err != nil {
		return fmt.Errorf("building test/fluentreceiver: %w\n%s", err, out)
	}
	return nil
}

// StartFluentReceiver runs the receiver built at bin on addr, writing to out, and returns once it accepts
// connections (within 20 s). The caller stops it with Stop.
func StartFluentReceiver(bin, addr, out string) (*FluentReceiver, error) {
	cmd := exec.Command(bin, "--listen", addr, "--out", out)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the fluent receiver: %w", err)
	}
	r := &FluentReceiver{Addr: addr, Out: out, cmd: cmd}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("the fluent receiver never listened on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the receiver by its PID (SIGTERM, then SIGKILL after 10 s) and waits for it; a second call
// does nothing.
func (r *FluentReceiver) Stop() {
	if r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}
