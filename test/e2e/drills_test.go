package e2e

// The fault drills of docs/RELIABILITY.md. Each puts the node under the load a workload makes (connections
// to a ClusterIP, DNS questions for a Service's name, a pod writing numbered log lines), causes one fault,
// and measures what the load saw. They run with `make drills` (NODEAGENT_DRILLS=1), not in make test: two of
// them keep a component down for five minutes. Each appends its row to the report hack/drills.sh prints.

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// drillLoad is the workload a drill watches while it causes its fault.
type drillLoad struct {
	ns      string
	vipURL  string
	dnsName string
	writer  *corev1.Pod
	// containers is each pod's container ID before the fault: a pod restarted since has another.
	containers map[string]string
	vip, dns   attempts
	stop       context.CancelFunc
	loops      sync.WaitGroup
}

// attempts counts a load loop's tries, its failures with the first one's reason, and its successes that
// took longer than slowAttempt: a connection whose first SYN was lost, a question answered by a retry.
type attempts struct {
	total, failed, slow atomic.Int64
	first               atomic.Pointer[string]
}

const slowAttempt = time.Second

func (a *attempts) record(err error, took time.Duration) {
	a.total.Add(1)
	if err == nil && took > slowAttempt {
		a.slow.Add(1)
	}
	if err != nil {
		a.failed.Add(1)
		msg := err.Error()
		a.first.CompareAndSwap(nil, &msg)
	}
}

func (a *attempts) String() string {
	s := fmt.Sprintf("%d of %d", a.failed.Load(), a.total.Load())
	if slow := a.slow.Load(); slow > 0 {
		s += fmt.Sprintf(", %d slower than %s", slow, slowAttempt)
	}
	if first := a.first.Load(); first != nil {
		s += " (first: " + *first + ")"
	}
	return s
}

// drillResult is a drill's row in the report.
type drillResult struct {
	drill, fault          string
	restarts, pods        int
	vip, dns              string
	written, lost, copies int
	recovery              string
}

// The load's rates: a connection and a DNS question every 100 ms, a log line every 20 ms. Every loop also
// stops after drillMaxAttempts, whatever the drill's length.
const (
	drillInterval    = 100 * time.Millisecond
	drillMaxAttempts = 20000
	writerScript     = `i=0; while true; do echo "seq $i"; i=$((i+1)); usleep 20000; done`
)

// startDrill skips the test unless drills were asked for, and starts the load in a new namespace.
func startDrill(ctx context.Context, t *testing.T) *drillLoad {
	t.Helper()
	if os.Getenv("NODEAGENT_DRILLS") != "1" {
		t.Skip("a fault drill: run `make drills`")
	}
	l := &drillLoad{ns: newNamespace(t), containers: map[string]string{}}
	// The drill's pods go with it, so that the next drill's counts are its own (the full-disk drill
	// compares the lines lost on the node with the dropped-records counter).
	t.Cleanup(func() { removeNamespace(t, l.ns) })
	svc, _ := deployService(ctx, t, l.ns, "web", 2)
	l.vipURL = "http://" + svc.Spec.ClusterIP + "/hostname"
	l.dnsName = "web." + l.ns + ".svc.cluster.local."
	l.writer = startBusybox(ctx, t, l.ns, "writer", writerScript)
	pods, err := stack.client.CoreV1().Pods(l.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		l.containers[p.Name] = p.Status.ContainerStatuses[0].ContainerID
	}

	loopCtx, stop := context.WithCancel(ctx)
	l.stop = stop
	// A connection per request, as the proxy picks an endpoint per connection.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	l.every(loopCtx, &l.vip, func() error {
		resp, err := client.Get(l.vipURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", l.vipURL, resp.Status)
		}
		return nil
	})
	l.every(loopCtx, &l.dns, func() error { return resolveAsGlibc(l.dnsName) })
	// The drill's fault starts once every part of the load has been seen working.
	err = pollUntil(ctx, func() (bool, error) {
		return l.vip.total.Load() >= 10 && l.dns.total.Load() >= 10 && len(receivedSeqs(t, l.ns, "writer")) >= 10, nil
	})
	if err != nil {
		t.Fatalf("the load never ran: connections %s, DNS questions %s, %d log lines received", &l.vip, &l.dns, len(receivedSeqs(t, l.ns, "writer")))
	}
	return l
}

// removeNamespace deletes a namespace and waits (at most 2 minutes) until its pods are gone from the node.
func removeNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := stack.client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Errorf("deleting namespace %s: %v", ns, err)
		return
	}
	err := pollUntil(ctx, func() (bool, error) {
		pods, err := stack.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("the pods of namespace %s were not gone within 2 minutes", ns)
	}
}

// every runs try every drillInterval until ctx ends, recording each outcome in a.
func (l *drillLoad) every(ctx context.Context, a *attempts, try func() error) {
	l.loops.Add(1)
	go func() {
		defer l.loops.Done()
		ticker := time.NewTicker(drillInterval)
		defer ticker.Stop()
		for range drillMaxAttempts {
			start := time.Now()
			err := try()
			if ctx.Err() != nil {
				return // the drill ended during this try: it does not count
			}
			a.record(err, time.Since(start))
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
}

// keepGoing returns once the load has made n more connections, so that a drill measures the node after its
// recovery too.
func (l *drillLoad) keepGoing(ctx context.Context, t *testing.T, n int64) {
	t.Helper()
	want := l.vip.total.Load() + n
	if err := pollUntil(ctx, func() (bool, error) { return l.vip.total.Load() >= want, nil }); err != nil {
		t.Fatalf("the load stopped: %d connections, want %d", l.vip.total.Load(), want)
	}
}

// finish stops the load and measures it: pods restarted, failed connections and questions, and the writer's
// lines missing or repeated at the receiver once it has caught up with the line the pod wrote last.
func (l *drillLoad) finish(ctx context.Context, t *testing.T, drill, fault string) drillResult {
	t.Helper()
	l.stop()
	l.loops.Wait()
	r := drillResult{drill: drill, fault: fault, vip: l.vip.String(), dns: l.dns.String(), pods: len(l.containers)}
	pods, err := stack.client.CoreV1().Pods(l.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if before, ok := l.containers[p.Name]; ok && (p.Status.ContainerStatuses[0].ContainerID != before || p.Status.ContainerStatuses[0].RestartCount > 0) {
			r.restarts++
		}
	}
	last := -1
	err = pollUntil(ctx, func() (bool, error) {
		if last < 0 {
			last = lastSeq(t, logFile(l.writer, "c"))
		}
		return last >= 0 && receivedSeqs(t, l.ns, "writer")[last] > 0, nil
	})
	if err != nil {
		t.Errorf("the receiver never got line %d of the writer", last)
	}
	r.written = last + 1
	r.lost, r.copies = missingAndRepeated(receivedSeqs(t, l.ns, "writer"), r.written)
	return r
}

// missingAndRepeated counts the numbers below n that never arrived and the arrivals beyond the first.
func missingAndRepeated(seen map[int]int, n int) (missing, repeated int) {
	for i := range n {
		switch c := seen[i]; {
		case c == 0:
			missing++
		case c > 1:
			repeated += c - 1
		}
	}
	return missing, repeated
}

// report writes the drill's row to the log and appends it to the report file.
func report(t *testing.T, r drillResult) {
	t.Helper()
	row := fmt.Sprintf("| %s | %s | %d of %d | %s | %s | %d lost, %d repeated of %d | %s |\n",
		r.drill, r.fault, r.restarts, r.pods, r.vip, r.dns, r.lost, r.copies, r.written, r.recovery)
	t.Log(row)
	path := cmp.Or(os.Getenv("NODEAGENT_DRILL_REPORT"), filepath.Join(runDir, "drills.md"))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(row); err != nil {
		t.Fatal(err)
	}
}

// receivedSeqs counts, by number, the "seq N" lines of a pod that the receiver holds.
func receivedSeqs(t *testing.T, ns, pod string) map[int]int {
	t.Helper()
	seen := map[int]int{}
	for _, rec := range recordsOf(t, stack.receiver, ns, pod) {
		if n, ok := seqOf(rec.Body); ok {
			seen[n]++
		}
	}
	return seen
}

// seqOf reads N from a line "seq N ...".
func seqOf(line string) (int, bool) {
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "seq" {
		return 0, false
	}
	n, err := strconv.Atoi(fields[1])
	return n, err == nil
}

// lastSeq is the number of the last whole "seq N" line in a CRI log file, or -1 when it has none yet (a
// file just rotated).
func lastSeq(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := -1
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		// A CRI log line is "time stream tag message".
		if fields := strings.SplitN(scanner.Text(), " ", 4); len(fields) == 4 {
			if n, ok := seqOf(fields[3]); ok {
				last = n
			}
		}
	}
	return last
}

// drillOutage is how long the drills keep the API server and the log receiver down: 5 minutes, or
// NODEAGENT_DRILL_OUTAGE for a quick try.
func drillOutage(t *testing.T) time.Duration {
	t.Helper()
	if s := os.Getenv("NODEAGENT_DRILL_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("NODEAGENT_DRILL_OUTAGE: %v", err)
		}
		return d
	}
	return 5 * time.Minute
}

// wait returns after d, or fails the test when ctx ends first. It is a fault's length, not a poll.
func wait(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatalf("the drill ran out of time")
	case <-time.After(d):
	}
}

// agentAlive reports whether the agent process runs (a zombie does not).
func agentAlive() bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", stack.agent.Process.Pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(after, "Z")
}

// stopPIDFile ends the process a pid file names (SIGTERM, SIGKILL after 30 s) and returns once it is gone.
func stopPIDFile(ctx context.Context, t *testing.T, pidFile string) {
	t.Helper()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Skipf("%s: %v (the drill stops a process hack/ started)", pidFile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		t.Skipf("%s names no running process", pidFile)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	termCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if pollUntil(termCtx, func() (bool, error) { return syscall.Kill(pid, 0) != nil, nil }) != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := pollUntil(ctx, func() (bool, error) { return syscall.Kill(pid, 0) != nil, nil }); err != nil {
			t.Fatalf("pid %d of %s did not end", pid, pidFile)
		}
	}
}

func since(start time.Time) string { return time.Since(start).Round(100 * time.Millisecond).String() }

// kill -9 of the agent, restarted 5 s later: the pods, connections and DNS answers go on; the log lines
// shipped but not yet acknowledged at the kill are sent again, none is lost.
func TestDrillAgentKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := startDrill(ctx, t)
	if err := stack.killAgent(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	wait(ctx, t, 5*time.Second)
	if err := stack.startAgent(); err != nil {
		t.Fatal(err)
	}
	waitForNodeAPI(t)
	serving := since(killed)
	l.keepGoing(ctx, t, 50)
	r := l.finish(ctx, t, "agent killed", "kill -9, started again 5 s later")
	r.recovery = "node API answering " + serving + " after the kill"
	report(t, r)
	if r.restarts > 0 || l.vip.failed.Load() > 0 || l.dns.failed.Load() > 0 || r.lost > 0 {
		t.Errorf("through kill -9: %d pods restarted, connections failed %s, questions failed %s, %d lines lost; want none",
			r.restarts, &l.vip, &l.dns, r.lost)
	}
}

// The API server stopped for 5 minutes: pods, VIPs and DNS answers keep serving from what the agent holds;
// once it is back, the agent renews its Lease and the Node is Ready without waiting for a periodic status.
func TestDrillAPIServerDown(t *testing.T) {
	outage := drillOutage(t)
	ctx, cancel := context.WithTimeout(context.Background(), outage+5*time.Minute)
	defer cancel()
	l := startDrill(ctx, t)
	stopPIDFile(ctx, t, filepath.Join(runDir, "cluster/pids/kube-apiserver.pid"))
	t.Cleanup(func() { _ = stack.script("hack/controlplane.sh", "up") }) // starts only what is not running
	wait(ctx, t, outage)
	if !agentAlive() {
		t.Fatalf("the agent exited while the API server was down (see %s/nodeagent.log)", runDir)
	}
	if err := stack.script("hack/controlplane.sh", "up"); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitForLeaseRenewal(ctx, t, back)
	renewed := since(back)
	// The node lifecycle controller, back too, may first find the Lease older than its grace period and
	// mark the Node unknown and unreachable: what counts is how soon that is undone.
	var marked []string
	err := pollUntil(ctx, func() (bool, error) {
		n, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, taint := range n.Spec.Taints {
			if !slices.Contains(marked, taint.Key) {
				marked = append(marked, taint.Key)
			}
		}
		return nodeReady(n) && len(n.Spec.Taints) == 0, nil
	})
	if err != nil {
		t.Errorf("the node was not Ready without taints after the API server came back")
	}
	ready := since(back)
	if len(marked) > 0 {
		ready += " (tainted meanwhile: " + strings.Join(marked, ", ") + ")"
	}
	l.keepGoing(ctx, t, 50)
	r := l.finish(ctx, t, "API server down", fmt.Sprintf("kube-apiserver stopped %s", outage))
	r.recovery = fmt.Sprintf("Lease renewed %s, Node Ready and untainted %s after the API server answered", renewed, ready)
	report(t, r)
	if r.restarts > 0 || l.vip.failed.Load() > 0 || l.dns.failed.Load() > 0 || r.lost > 0 {
		t.Errorf("with the API server down: %d pods restarted, connections failed %s, questions failed %s, %d lines lost; want none",
			r.restarts, &l.vip, &l.dns, r.lost)
	}
}

// containerd restarted under the agent: the pods keep running (their shims outlive containerd), the agent
// adopts them again and starts new pods once containerd answers.
func TestDrillContainerdRestarted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := startDrill(ctx, t)
	stopPIDFile(ctx, t, "/var/run/nodeagent-dev/containerd.pid") // hack/setup-node.sh's containerd
	stopped := time.Now()
	// hack/setup-node.sh starts containerd when it does not answer, and does nothing else on a set-up node.
	startContainerd := func() error {
		setup := exec.Command(filepath.Join(stack.repo, "hack/setup-node.sh"))
		setup.Dir, setup.Stdout, setup.Stderr = stack.repo, os.Stdout, os.Stderr
		return setup.Run()
	}
	t.Cleanup(func() { _ = startContainerd() })
	if err := startContainerd(); err != nil {
		t.Fatalf("starting containerd again: %v", err)
	}
	down := since(stopped)
	back := time.Now()
	startBusybox(ctx, t, l.ns, "after", "sleep 3600")
	started := since(back)
	l.keepGoing(ctx, t, 50)
	r := l.finish(ctx, t, "containerd restarted", "SIGTERM to containerd, started again ("+down+" down)")
	r.recovery = "a new pod Running " + started + " after containerd answered"
	report(t, r)
	if r.restarts > 0 || l.vip.failed.Load() > 0 || l.dns.failed.Load() > 0 || r.lost > 0 {
		t.Errorf("through a containerd restart: %d pods restarted, connections failed %s, questions failed %s, %d lines lost; want none",
			r.restarts, &l.vip, &l.dns, r.lost)
	}
}

// The log receiver down for 5 minutes: the lines wait in the agent's buffer and all arrive once it is back.
func TestDrillLogReceiverDown(t *testing.T) {
	outage := drillOutage(t)
	ctx, cancel := context.WithTimeout(context.Background(), outage+5*time.Minute)
	defer cancel()
	l := startDrill(ctx, t)
	restart := stopReceiver(t)
	wait(ctx, t, outage)
	buffered := nodeMetric(ctx, t, "nodeagent_logs_buffer_bytes")
	restart()
	back := time.Now()
	r := l.finish(ctx, t, "log receiver down", fmt.Sprintf("forward receiver stopped %s", outage))
	r.recovery = fmt.Sprintf("%.0f KiB buffered; the receiver had every line %s after it was back", buffered/1024, since(back))
	report(t, r)
	if r.restarts > 0 || l.vip.failed.Load() > 0 || l.dns.failed.Load() > 0 || r.lost > 0 {
		t.Errorf("with the receiver down: %d pods restarted, connections failed %s, questions failed %s, %d lines lost; want none",
			r.restarts, &l.vip, &l.dns, r.lost)
	}
}

// stopReceiver stops the harness's log receiver. The function it returns starts it again on its address,
// appending to the same output; it runs at the test's end too if the test did not call it.
func stopReceiver(t *testing.T) (restart func()) {
	t.Helper()
	stack.receiver.Stop()
	var once sync.Once
	restart = func() {
		once.Do(func() {
			r, err := testutil.StartFluentReceiver(filepath.Join(runDir, "fluentreceiver"), stack.receiver.Addr, stack.receiver.Out)
			if err != nil {
				t.Fatal(err)
			}
			stack.receiver = r
		})
	}
	t.Cleanup(restart)
	return restart
}

// The log buffer's disk full while the receiver is down and a pod floods its log: the agent stays up, and
// every line the receiver never got is one the dropped-records counter counts.
func TestDrillLogBufferDiskFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l := startDrill(ctx, t)
	// The agent starts again on a 1 MiB buffer disk (tmpfs); the real one comes back at the end.
	bufferDir := filepath.Join(runDir, "root/logs/buffer")
	stopProcess(stack.agent)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", bufferDir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small buffer disk: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stopProcess(stack.agent)
		if out, err := exec.Command("umount", bufferDir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", bufferDir, err, out)
		}
		if err := stack.startAgent(); err != nil {
			t.Fatal(err)
		}
		waitForNodeAPI(t)
	})
	if err := stack.startAgent(); err != nil {
		t.Fatal(err)
	}
	waitForNodeAPI(t)
	droppedBefore := nodeMetric(ctx, t, "fluentbit_output_dropped_records_total") // counted since the start

	// 60,000 lines of 1 KiB: past the buffer's 32 MiB of memory and its disk.
	const floodLines = 60000
	restart := stopReceiver(t)
	flood := startBusybox(ctx, t, l.ns, "flood",
		fmt.Sprintf(`pad=$(printf '%%1000s' x); i=0; while [ $i -lt %d ]; do echo "seq $i $pad"; i=$((i+1)); done; exec sleep 3600`, floodLines))
	err := pollUntil(ctx, func() (bool, error) {
		return nodeMetric(ctx, t, "fluentbit_output_dropped_records_total") > droppedBefore, nil
	})
	if err != nil {
		t.Fatalf("the disk never filled: nothing dropped")
	}
	if !agentAlive() {
		t.Fatalf("the agent exited when its buffer's disk was full (see %s/nodeagent.log)", runDir)
	}
	if _, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "healthz").DoRaw(ctx); err != nil {
		t.Errorf("the node API does not answer with the buffer's disk full: %v", err)
	}

	restart()
	back := time.Now()
	if err := pollUntil(ctx, func() (bool, error) { return lastSeq(t, logFile(flood, "c")) == floodLines-1, nil }); err != nil {
		t.Fatalf("the flood pod never wrote its last line")
	}
	err = pollUntil(ctx, func() (bool, error) { return nodeMetric(ctx, t, "nodeagent_logs_buffer_chunks") == 0, nil })
	if err != nil {
		t.Fatalf("the agent's buffer never emptied after the receiver came back")
	}
	drained := since(back)
	dropped := int(nodeMetric(ctx, t, "fluentbit_output_dropped_records_total") - droppedBefore)
	floodLost, floodCopies := missingAndRepeated(receivedSeqs(t, l.ns, "flood"), floodLines)
	r := l.finish(ctx, t, "log buffer disk full", "1 MiB buffer disk, receiver down, a pod writes 60,000 lines of 1 KiB")
	r.lost += floodLost
	r.copies += floodCopies
	r.written += floodLines
	r.recovery = fmt.Sprintf("agent up; dropped-records counter %d; buffer empty %s after the receiver was back", dropped, drained)
	report(t, r)
	if r.lost != dropped {
		t.Errorf("%d lines never reached the receiver but the counter says %d were dropped", r.lost, dropped)
	}
	if r.restarts > 0 || l.vip.failed.Load() > 0 || l.dns.failed.Load() > 0 {
		t.Errorf("with the buffer's disk full: %d pods restarted, connections failed %s, questions failed %s; want none",
			r.restarts, &l.vip, &l.dns)
	}
}

// An upgrade: a new binary put in place of the old and the agent restarted as systemd does (SIGTERM, then
// start): no pod restarts, no failed connection or question, no lost line.
func TestDrillAgentUpgrade(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := startDrill(ctx, t)
	const newVersion = "v0.1.0-drill-upgrade"
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+newVersion, "-o", stack.agentBin+".new", "./cmd/nodeagent")
	build.Dir = stack.repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the new version: %v\n%s", err, out)
	}
	if err := os.Rename(stack.agentBin+".new", stack.agentBin); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	stopProcess(stack.agent)
	if err := stack.startAgent(); err != nil {
		t.Fatal(err)
	}
	err := pollUntil(ctx, func() (bool, error) {
		n, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		return err == nil && n.Status.NodeInfo.KubeletVersion == newVersion && nodeReady(n), nil
	})
	if err != nil {
		t.Fatalf("the Node never reported version %s", newVersion)
	}
	upgraded := since(stopped)
	l.keepGoing(ctx, t, 50)
	r := l.finish(ctx, t, "agent upgrade", "binary replaced, SIGTERM, new binary started")
	r.recovery = "Node Ready with the new version " + upgraded + " after the stop"
	report(t, r)
	if r.restarts > 0 || l.vip.failed.Load() > 0 || l.dns.failed.Load() > 0 || r.lost > 0 {
		t.Errorf("through an upgrade: %d pods restarted, connections failed %s, questions failed %s, %d lines lost; want none",
			r.restarts, &l.vip, &l.dns, r.lost)
	}
}
