package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The scenario tests run the shipper as a process of its own (this test binary, started again with
// shipperEnv set), so they can kill it with -9 as a crash would, and send to the OpenTelemetry Collector's
// fluentforward receiver (test/fluentreceiver), also a process. A simulated runtime writes the containers'
// CRI log files and rotates them as the kubelet does (rename to <name>.<time>, then a new file).

const shipperEnv = "NODEAGENT_TEST_LOG_SHIPPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(shipperEnv); spec != "" {
		os.Exit(runShipperProcess(spec))
	}
	os.Exit(m.Run())
}

// shipperSpec is what a shipper process is told, as JSON in shipperEnv.
type shipperSpec struct {
	LogsDir, StateDir string
	Receivers         []string
	BufferLimit       int64
}

func runShipperProcess(spec string) int {
	var sp shipperSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "shipper spec:", err)
		return 2
	}
	cfg := testShipperConfig(sp.LogsDir, sp.StateDir, sp.Receivers...)
	cfg.ChunkRecords, cfg.FlushInterval, cfg.BufferLimit, cfg.MemoryBufferLimit = 5000, 200*time.Millisecond, sp.BufferLimit, 8<<20
	cfg.InFlight, cfg.Poll = 8, 50*time.Millisecond
	s, err := NewShipper(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s.Run(ctx)
	return 0
}

// shipperProcess is a running shipper process.
type shipperProcess struct{ cmd *exec.Cmd }

func startShipperProcess(t *testing.T, spec shipperSpec) *shipperProcess {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), shipperEnv+"="+string(data))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &shipperProcess{cmd: cmd}
	t.Cleanup(func() { p.signal(syscall.SIGKILL) })
	return p
}

// signal sends sig to the process, by its PID, and waits for it to end.
func (p *shipperProcess) signal(sig syscall.Signal) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Wait()
}

// runtimeLog writes one container's CRI log file as the runtime does, rotating it as the kubelet does once
// it holds rotateAt bytes (never when 0).
type runtimeLog struct {
	path     string
	rotateAt int64

	file      *os.File
	size      int64
	rotations int
}

func newRuntimeLog(t *testing.T, logsDir, pod, container string, rotateAt int64) *runtimeLog {
	t.Helper()
	uid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", len(pod)*1000+len(container)) // any UID will do
	path := filepath.Join(logsDir, "shop_"+pod+"_"+uid, container, "0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	l := &runtimeLog{path: path, rotateAt: rotateAt}
	if err := l.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.file.Close() })
	return l
}

func (l *runtimeLog) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	l.file, l.size = f, 0
	return err
}

// write appends data (whole CRI lines) in one write, rotating first when the file is full.
func (l *runtimeLog) write(data []byte) error {
	if l.rotateAt > 0 && l.size >= l.rotateAt {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.file.Write(data)
	l.size += int64(n)
	return err
}

// rotate renames the file to <name>.<time>, the kubelet's sortable suffix, and opens a new one.
func (l *runtimeLog) rotate() error {
	if err := l.file.Close(); err != nil {
		return err
	}
	l.rotations++
	stamp := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC).Add(time.Duration(l.rotations) * time.Second)
	if err := os.Rename(l.path, l.path+"."+stamp.Format("20060102-150405")); err != nil {
		return err
	}
	return l.open()
}

// criLines are lines from..to-1 of a container as the runtime writes them; each record's message is
// "<container> <n>".
func criLines(container string, from, to int) []byte {
	var b bytes.Buffer
	for n := from; n < to; n++ {
		fmt.Fprintf(&b, "2026-12-01T20:00:00.%09dZ stdout F %s %d\n", n%1_000_000_000, container, n)
	}
	return b.Bytes()
}

// writeSteadily writes lines 0..n-1 of container in batches of batch lines, pausing between batches, until
// done or stopped; it returns how many it wrote.
func writeSteadily(l *runtimeLog, container string, n, batch int, pause time.Duration, stop <-chan struct{}) (int, error) {
	for from := 0; from < n; from += batch {
		select {
		case <-stop:
			return from, nil
		default:
		}
		if err := l.write(criLines(container, from, min(from+batch, n))); err != nil {
			return from, err
		}
		time.Sleep(pause)
	}
	return n, nil
}

// receivedBody is the part of the receiver's output these tests read.
type receivedBody struct {
	Body string `json:"body"`
}

// recordCounter counts the receiver's output lines as they are appended, without parsing them.
type recordCounter struct {
	path   string
	offset int64
	n      int
}

func (c *recordCounter) count() int {
	f, err := os.Open(c.path)
	if err != nil {
		return c.n
	}
	defer f.Close()
	if _, err := f.Seek(c.offset, 0); err != nil {
		return c.n
	}
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			c.offset += int64(len(line))
			continue
		}
		if err != nil {
			return c.n // a line still being written is counted next time
		}
		c.offset += int64(len(line))
		c.n++
	}
}

// waitForCount polls the receiver's output until it holds at least n records; if it does not in time, the
// test fails and goes on, so checkComplete can say what is missing.
func waitForCount(t *testing.T, out string, n int, timeout time.Duration) {
	t.Helper()
	c := &recordCounter{path: out}
	deadline := time.Now().Add(timeout)
	for c.count() < n {
		if time.Now().After(deadline) {
			t.Errorf("the receiver has %d records after %v, want %d", c.n, timeout, n)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkComplete reads what the receiver wrote and checks that each container's lines 0..written[c]-1
// arrived, in order. After a crash, the records of chunks that were not acknowledged come again (at least
// once): a line seen before may repeat, but a new line never comes before an older one. It returns the
// repeats.
func checkComplete(t *testing.T, out string, written map[string]int) (repeats int) {
	t.Helper()
	next, repeats, err := readProgress(out, written)
	if err != nil {
		t.Fatal(err)
	}
	for c, n := range written {
		if next[c] != n {
			t.Errorf("%s: lines 0..%d arrived, want 0..%d", c, next[c]-1, n-1)
		}
	}
	return repeats
}

// waitForComplete polls the receiver's output until each container's lines 0..written[c]-1 are there (a
// count of records would be reached early by repeats); if they are not in time, it returns, so that
// checkComplete can say what is missing.
func waitForComplete(t *testing.T, out string, written map[string]int, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		next, _, err := readProgress(out, written)
		if err != nil {
			return
		}
		if maps.Equal(next, written) {
			return
		}
	}
}

// readProgress reads what the receiver wrote and returns, for each container, the next new line it
// expects (lines 0..next-1 arrived in order) and how many records repeated a line seen before; a new line
// before an older one is an error.
func readProgress(out string, written map[string]int) (next map[string]int, repeats int, err error) {
	f, err := os.Open(out)
	if errors.Is(err, os.ErrNotExist) {
		err = nil // nothing received yet
	}
	next = map[string]int{}
	for c := range written {
		next[c] = 0
	}
	if f == nil {
		return next, 0, err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 4<<20)
	for scanner.Scan() {
		var rec receivedBody
		if err := json.Unmarshal(scanner.Bytes(), &rec); err != nil {
			return nil, 0, fmt.Errorf("receiver output %q: %w", scanner.Text(), err)
		}
		container, seqText, _ := strings.Cut(rec.Body, " ")
		seq, err := strconv.Atoi(seqText)
		want, known := next[container]
		switch {
		case err != nil || !known:
			return nil, 0, fmt.Errorf("unexpected record %q", rec.Body)
		case seq == want:
			next[container]++
		case seq < want:
			repeats++
		default:
			return nil, 0, fmt.Errorf("%s: line %d arrived before line %d", container, seq, want)
		}
	}
	return next, repeats, scanner.Err()
}

// each is the same count for every container.
func each(containers []string, n int) map[string]int {
	m := map[string]int{}
	for _, c := range containers {
		m[c] = n
	}
	return m
}

func containerNames(n int) []string {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("c%02d", i))
	}
	return names
}

// writeAll writes n lines to each container (one runtimeLog each, in logsDir) in parallel, in batches of
// batch lines with pause between them, and reports the first error.
func writeAll(t *testing.T, logsDir string, containers []string, n, batch int, pause time.Duration, rotateAt int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(containers))
	for _, c := range containers {
		l := newRuntimeLog(t, logsDir, "pod-"+c, c, rotateAt)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := writeSteadily(l, c, n, batch, pause, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// One million lines from 20 containers, written as fast as the disk takes them while the files rotate every
// 512 KiB (4 rotations each), arrive complete and in order per container.
func TestScenarioAMillionLinesFromTwentyContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("a million lines")
	}
	logsDir, state := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startReceiver(t, freeLoopbackAddr(t), out)
	containers := containerNames(20)
	const perContainer = 50_000
	shipper := startShipperProcess(t, shipperSpec{LogsDir: logsDir, StateDir: state, Receivers: []string{r.Addr}, BufferLimit: 1 << 30})
	start := time.Now()
	writeAll(t, logsDir, containers, perContainer, 1000, 0, 512<<10)
	waitForCount(t, out, len(containers)*perContainer, 2*time.Minute)
	t.Logf("%d lines from %d containers received in %v", len(containers)*perContainer, len(containers), time.Since(start).Round(time.Millisecond))
	shipper.signal(syscall.SIGTERM)
	if repeats := checkComplete(t, out, each(containers, perContainer)); repeats != 0 {
		t.Errorf("%d records arrived twice without a crash", repeats)
	}
}

// The receiver is stopped for 60 s while 5 containers keep writing: their records wait on disk in the
// buffer, and once the receiver is back every line arrives, in order.
func TestScenarioReceiverDownForSixtySeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long")
	}
	logsDir, state := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	addr := freeLoopbackAddr(t)
	r := startReceiver(t, addr, out)
	containers := containerNames(5)
	startShipperProcess(t, shipperSpec{LogsDir: logsDir, StateDir: state, Receivers: []string{addr}, BufferLimit: 1 << 30})

	// Each container writes 100 lines every 100 ms until stopped: about 70 s of output.
	stop := make(chan struct{})
	written := make([]int, len(containers))
	var wg sync.WaitGroup
	for i, c := range containers {
		l := newRuntimeLog(t, logsDir, "pod-"+c, c, 1<<20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := writeSteadily(l, c, 1_000_000, 100, 100*time.Millisecond, stop)
			if err != nil {
				t.Error(err)
			}
			written[i] = n
		}()
	}
	waitForCount(t, out, 5000, 30*time.Second) // mid-stream
	r.Stop()
	down := time.Now()
	buffered := 0
	for time.Since(down) < 60*time.Second {
		entries, _ := os.ReadDir(filepath.Join(state, "buffer"))
		buffered = max(buffered, len(entries))
		time.Sleep(time.Second)
	}
	before := (&recordCounter{path: out}).count()
	startReceiver(t, addr, out)
	t.Logf("receiver down for %v with %d records received before; up to %d chunks waited on disk", time.Since(down).Round(time.Second), before, buffered)
	if buffered < 10 {
		t.Errorf("at most %d chunks waited in the buffer while the receiver was down", buffered)
	}
	time.Sleep(2 * time.Second) // the writers go on after the receiver is back, too
	close(stop)
	wg.Wait()
	want, total := map[string]int{}, 0
	for i, c := range containers {
		want[c] = written[i]
		total += written[i]
	}
	waitForComplete(t, out, want, 2*time.Minute)
	repeats := checkComplete(t, out, want)
	t.Logf("all %d lines arrived in order; %d repeated", total, repeats)
}

// The shipper is killed with -9 three times while 5 containers write: each time a new one resumes from the
// buffer and the checkpoints, and every line arrives, in order; only records of chunks that were not
// acknowledged may come twice.
func TestScenarioShipperKilledMinus9MidStream(t *testing.T) {
	logsDir, state := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startReceiver(t, freeLoopbackAddr(t), out)
	containers := containerNames(5)
	spec := shipperSpec{LogsDir: logsDir, StateDir: state, Receivers: []string{r.Addr}, BufferLimit: 1 << 30}
	shipper := startShipperProcess(t, spec)
	const perContainer = 30_000
	done := make(chan struct{})
	go func() {
		defer close(done)
		writeAll(t, logsDir, containers, perContainer, 250, 50*time.Millisecond, 256<<10) // about 6 s
	}()
	for kill := range 3 {
		waitForCount(t, out, (kill+1)*20_000, time.Minute)
		shipper.signal(syscall.SIGKILL)
		shipper = startShipperProcess(t, spec)
	}
	<-done
	waitForComplete(t, out, each(containers, perContainer), 2*time.Minute)
	repeats := checkComplete(t, out, each(containers, perContainer))
	t.Logf("killed -9 three times: all %d lines arrived in order; %d came twice", len(containers)*perContainer, repeats)
}

// criLine is one line of the runtime's format.
func criLine(stream Stream, partial bool, msg string) string {
	tag := "F"
	if partial {
		tag = "P"
	}
	return fmt.Sprintf("2026-12-01T20:00:00.000000001Z %s %s %s\n", stream, tag, msg)
}

// splitLine is msg as the runtime writes a long line: parts of at most 16 KiB, all but the last tagged P.
func splitLine(stream Stream, msg string) []string {
	var lines []string
	for len(msg) > 16<<10 {
		lines = append(lines, criLine(stream, true, msg[:16<<10]))
		msg = msg[16<<10:]
	}
	return append(lines, criLine(stream, false, msg))
}

// Lines of 1 and 2 MiB split in parts, a line whose P part ends the rotated file and whose F part opens
// the new one, a 2 MiB line whose parts straddle a rotation, stderr lines between the parts of a stdout
// line, and a line that is not in the CRI format arrive exactly as written, in order.
func TestScenarioLongLinesAndPartsAcrossRotations(t *testing.T) {
	logsDir, state := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startReceiver(t, freeLoopbackAddr(t), out)
	startShipperProcess(t, shipperSpec{LogsDir: logsDir, StateDir: state, Receivers: []string{r.Addr}, BufferLimit: 1 << 30})
	l := newRuntimeLog(t, logsDir, "pod-big", "big", 0)
	var want []string
	write := func(lines ...string) {
		t.Helper()
		if err := l.write([]byte(strings.Join(lines, ""))); err != nil {
			t.Fatal(err)
		}
	}
	rotate := func() {
		t.Helper()
		if err := l.rotate(); err != nil {
			t.Fatal(err)
		}
	}
	big := func(n int, label string) string {
		return label + " " + strings.Repeat(label[:1], n-len(label)-1)
	}
	for i := range 100 {
		write(criLine(Stdout, false, fmt.Sprintf("first %d", i)))
		want = append(want, fmt.Sprintf("first %d", i))
	}
	// 1 MiB, with stderr lines after its 10th and 40th parts.
	oneMiB := big(1<<20, "one-mebibyte")
	parts := splitLine(Stdout, oneMiB)
	write(parts[:10]...)
	write(criLine(Stderr, false, "error between parts"))
	write(parts[10:40]...)
	write(criLine(Stderr, false, "another error"))
	write(parts[40:]...)
	want = append(want, "error between parts", "another error", oneMiB)
	// P at the end of the rotated file, F at the start of the new one.
	write(criLine(Stdout, true, "the first half, "))
	rotate()
	write(criLine(Stdout, false, "the second half"))
	want = append(want, "the first half, the second half")
	// 2 MiB whose parts straddle a rotation.
	twoMiB := big(2<<20, "two-mebibytes")
	parts = splitLine(Stdout, twoMiB)
	write(parts[:70]...)
	rotate()
	write(parts[70:]...)
	want = append(want, twoMiB)
	write("not a CRI line at all\n")
	want = append(want, "not a CRI line at all")
	for i := range 100 {
		write(criLine(Stdout, false, fmt.Sprintf("last %d", i)))
		want = append(want, fmt.Sprintf("last %d", i))
	}

	waitForCount(t, out, len(want), time.Minute)
	got := receivedBodies(t, out)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: %d bytes starting %.40q, want %d bytes starting %.40q", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

// receivedBodies reads the bodies of what the receiver wrote, in order.
func receivedBodies(t *testing.T, out string) []string {
	t.Helper()
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bodies []string
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 8<<20)
	for scanner.Scan() {
		var rec receivedBody
		if err := json.Unmarshal(scanner.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, rec.Body)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return bodies
}
