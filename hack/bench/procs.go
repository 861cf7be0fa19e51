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

// cpuSeconds is the user+system CPU time the process has used so far, with that of the children it has
// waited for: kube-proxy applies its rules by running nft, and the kernel's work for them is nft's.
func (p *process) cpuSeconds() (float64, error) { return cpuSecondsOf(p.cmd.Process.Pid) }

// cpuSecondsOf is cpuSeconds for any process.
func cpuSecondsOf(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at state, field 3; utime, stime, cutime
	// and cstime are fields 14 to 17.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	var ticks float64
	for _, f := range fields[11:15] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	const clockTicks = 100 // USER_HZ on Linux
	return ticks / clockTicks, nil
}

// treeRSS samples, every 50 ms until stop is called, the resident memory of the process and its
// descendants together (kube-proxy's nft children hold the whole ruleset while they run); stop returns the
// highest sum seen.
func (p *process) treeRSS() (stop func() int64) { return sampleTreeRSS(p.cmd.Process.Pid) }

// sampleTreeRSS is treeRSS for any process.
func sampleTreeRSS(pid int) (stop func() int64) {
	var peak int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			peak = max(peak, treeRSSNow(pid))
			select {
			case <-quit:
				return
			case <-ticker.C:
			}
		}
	}()
	return func() int64 {
		close(quit)
		<-done
		return peak
	}
}

// treeRSSNow is the sum of the RSS of root and its descendants, from /proc/*/stat.
func treeRSSNow(root int) int64 {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	rss := map[int]int64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// After the command name: state (field 3), ppid (4), ... rss in pages (24).
		fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(fields) < 22 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		pages, _ := strconv.ParseInt(fields[21], 10, 64)
		children[ppid] = append(children[ppid], pid)
		rss[pid] = pages * int64(os.Getpagesize())
	}
	var sum int64
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], children[pid]...)
		sum += rss[pid]
	}
	return sum
}

// resetPeakRSS makes the kernel's peak-RSS (VmHWM) count from now.
func (p *process) resetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

// peakRSS is VmHWM in bytes: the most resident memory since the last reset.
func (p *process) peakRSS() (int64, error) { return statusBytes(p.cmd.Process.Pid, "VmHWM:") }

// statusBytes reads a kB field of /proc/<pid>/status, in bytes.
func statusBytes(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rss is the process's resident memory now (VmRSS) in bytes.
func (p *process) rss() (int64, error) { return statusBytes(p.cmd.Process.Pid, "VmRSS:") }

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

// selfCPUSeconds runs f and returns the user and system CPU seconds the benchmark's own process spent
// meanwhile, in all its threads.
func selfCPUSeconds(f func() error) (float64, error) {
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		return 0, err
	}
	if err := f(); err != nil {
		return 0, err
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		return 0, err
	}
	seconds := func(r syscall.Rusage) float64 {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano()).Seconds()
	}
	return seconds(after) - seconds(before), nil
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
