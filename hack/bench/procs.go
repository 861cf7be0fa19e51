package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a daemon the benchmark started and must stop.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startProcess runs argv in its own session with output to logPath.
func startProcess(name, logPath string, argv ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after 15 s, and waits for the process to end.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cpuSeconds is the user+system CPU time the process has used so far.
func (p *process) cpuSeconds() (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at state, field 3; utime and stime are
	// fields 14 and 15.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	var ticks float64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/%d/stat: %w", p.cmd.Process.Pid, err)
		}
		ticks += v
	}
	const clockTicks = 100 // USER_HZ on Linux
	return ticks / clockTicks, nil
}

// resetPeakRSS makes the kernel's peak-RSS (VmHWM) count from now.
func (p *process) resetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

// peakRSS is VmHWM in bytes: the most resident memory since the last reset.
func (p *process) peakRSS() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

// buildAgent builds nodeagent from the repository into runDir (created if needed) and returns its path.
func buildAgent(repo, runDir string) (string, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return "", err
	}
	agentBin := filepath.Join(runDir, "nodeagent")
	if _, err := shell(repo, nil, "go build -o "+agentBin+" ./cmd/nodeagent"); err != nil {
		return "", err
	}
	return agentBin, nil
}

// cpuTimes are the machine's CPU times from /proc/stat, in clock ticks: all of them, and idle (with iowait).
type cpuTimes struct{ total, idle uint64 }

func readCPUTimes() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 6 || fields[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat starts with %q", line)
	}
	var t cpuTimes
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
		if i < 8 { // guest times are counted in user and nice already
			t.total += v
		}
		if i == 3 || i == 4 {
			t.idle += v
		}
	}
	return t, nil
}

// busyCores is how many of the machine's cores were busy on average between two readings.
func busyCores(before, after cpuTimes) float64 {
	total := after.total - before.total
	if total == 0 {
		return 0
	}
	busy := float64(total-(after.idle-before.idle)) / float64(total)
	return busy * float64(runtime.NumCPU())
}
