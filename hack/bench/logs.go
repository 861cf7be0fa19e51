package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/test/forwardspec"
)

const logsRunDir = "/var/tmp/nodeagent-bench-logs"

// logsDataset is the container logs both runs read: files in the kubelet's layout, CRI lines of a given size.
type logsDataset struct {
	dir   string
	files []string
	bytes int64
	lines int
}

// writeLogsDataset writes containers log files of about perContainer bytes each, lines of lineBytes.
func writeLogsDataset(dir string, containers int, perContainer int64, lineBytes int) (*logsDataset, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	d := &logsDataset{dir: dir}
	for c := range containers {
		path := filepath.Join(dir, fmt.Sprintf("bench_app-%d_%08d-0000-4000-8000-000000000000", c, c), "app", "0.log")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var size int64
		for n := 0; size < perContainer; n++ {
			line := criBenchLine(c, n, lineBytes)
			if _, err := w.WriteString(line); err != nil {
				f.Close()
				return nil, err
			}
			size += int64(len(line))
			d.lines++
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		d.files = append(d.files, path)
		d.bytes += size
	}
	return d, nil
}

// criBenchLine is one CRI line of about lineBytes: a timestamp, stdout, F and a message like an
// application's (text with a counter).
func criBenchLine(container, n, lineBytes int) string {
	head := fmt.Sprintf("2026-12-01T20:%02d:%02d.%09dZ stdout F level=info container=%d request=%d msg=", n/60000%60, n/1000%60, n%1000*1000, container, n)
	pad := max(lineBytes-len(head)-1, 1)
	return head + strings.Repeat("x", pad) + "\n"
}

// The limits are what a shipper could do at most with the dataset's files: loops that read the files and
// write to a loopback TCP socket whose reader discards what arrives, in a process of their own (runLimit),
// as a shipper is. (Run in the reader's own process, the raw limit went some 15% faster than in a process
// of its own, in 12 rounds of 12 on a 2-vCPU machine: switching between processes costs what switching
// between one process's threads does not, and no shipper shares its receiver's process.)
type limitKind string

const (
	// rawLimit reads the files and writes the bytes through a buffer (no sendfile, since a shipper must
	// look at the bytes). With inflate above 1 it writes that many bytes per byte read (part of each buffer
	// twice): the most a shipper could do that sends that much more than it reads, which is what records
	// with their metadata are, before any parsing or encoding.
	rawLimit limitKind = "raw"
	// framedLimit is the least a shipper that sends records adds to rawLimit: it finds the end of each line
	// and copies the line into the outgoing message behind as many bytes of framing and metadata as the
	// agent adds to a line, and writes 1 MiB messages. One pass to find the lines, one to copy them, and no
	// parsing or encoding: a shipper whose parser and encoder cost nothing.
	framedLimit limitKind = "framed"
	// framedLimitTwoCores is framedLimit with a goroutine of its own writing the messages while the loop
	// fills the next: the same work spread over two cores, as the agent's followers and sender do.
	framedLimitTwoCores limitKind = "framed2"
)

// runLimit runs a limit for the dataset, its loop in a child process (the benchmark's own binary, as
// `bench limit-writer`) writing to a discarding reader in this one, and returns the time from the child's
// start to the last byte's arrival (as a shipper's run is timed from its start) and the CPU seconds of the
// child's loop. inflate is the agent's bytes sent per byte read.
func runLimit(d *logsDataset, kind limitKind, inflate float64) (elapsed time.Duration, loopCPU float64, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer l.Close()
	received := make(chan int64, 1)
	go func() { received <- discardFirstConnection(l) }()
	// The framing and metadata a framed record adds to its line, on average.
	head := max(int(math.Round((inflate-1)*float64(d.bytes)/float64(d.lines))), 0)
	args := []string{"limit-writer", string(kind), l.Addr().String(), strconv.FormatFloat(inflate, 'f', -1, 64), strconv.Itoa(head)}
	cmd := exec.Command(self, append(args, d.files...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		l.Close() // so that the reader's Accept returns if the child never connected
		<-received
		return 0, 0, fmt.Errorf("%s limit: %w", kind, err)
	}
	arrived := <-received
	elapsed = time.Since(start)
	written, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s limit: bytes written: %w", kind, err)
	}
	if arrived != written || written < d.bytes {
		return 0, 0, fmt.Errorf("%s limit: %d bytes arrived, %d written, the files hold %d", kind, arrived, written, d.bytes)
	}
	usage := cmd.ProcessState
	return elapsed, (usage.UserTime() + usage.SystemTime()).Seconds(), nil
}

// limitWriterMain is `bench limit-writer KIND ADDRESS INFLATE HEAD FILE...`, the child of runLimit: it
// writes the files to the address as the limit KIND does and prints the bytes it wrote.
func limitWriterMain(args []string) error {
	if len(args) < 5 {
		return errors.New("limit-writer: want KIND ADDRESS INFLATE HEAD and files")
	}
	kind, addr, files := limitKind(args[0]), args[1], args[4:]
	inflate, err := strconv.ParseFloat(args[2], 64)
	if err != nil {
		return fmt.Errorf("limit-writer: inflate: %w", err)
	}
	head, err := strconv.Atoi(args[3])
	if err != nil {
		return fmt.Errorf("limit-writer: head: %w", err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	var written int64
	switch kind {
	case rawLimit:
		written, err = rawLoop(conn, files, inflate)
	case framedLimit, framedLimitTwoCores:
		written, err = framedLoop(conn, files, bytes.Repeat([]byte{'m'}, head), kind == framedLimitTwoCores)
	default:
		err = fmt.Errorf("limit-writer: no limit %q", kind)
	}
	if closeErr := conn.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	fmt.Println(written)
	return nil
}

// rawLoop is the raw limit's loop: it reads each file through one buffer and writes what it read to conn,
// then up to (inflate-1) buffers' worth of it again; it returns the bytes written.
func rawLoop(conn net.Conn, files []string, inflate float64) (int64, error) {
	buf := make([]byte, 256<<10)
	w := &inflatingWriter{w: conn, extra: int(float64(len(buf)) * max(inflate-1, 0))}
	var written int64
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return written, err
		}
		n, err := io.CopyBuffer(w, struct{ io.Reader }{f}, buf)
		f.Close()
		written += n
		if err != nil {
			return written, err
		}
	}
	return written + w.extraWritten, nil
}

// framedLoop is the framed limits' loop: each line of the files goes into the outgoing message behind
// head, and each message of framedMessageBytes is written to conn, by a goroutine of its own with
// pipelined; it returns the bytes written.
func framedLoop(conn net.Conn, files []string, head []byte, pipelined bool) (int64, error) {
	w := newMessageWriter(conn, pipelined)
	in, out := make([]byte, 256<<10), w.buffer()
	for _, path := range files {
		if err := framedLines(path, in, func(line []byte) error {
			out = append(append(out, head...), line...)
			if len(out) < framedMessageBytes {
				return nil
			}
			var err error
			out, err = w.write(out)
			return err
		}); err != nil {
			conn.Close() // first, so that a write in the writer goroutine returns
			w.close()
			return 0, err
		}
	}
	if _, err := w.write(out); err != nil {
		conn.Close()
		w.close()
		return 0, err
	}
	return w.close()
}

// framedMessageBytes is the size of the framed limit's messages, the agent's chunk size.
const framedMessageBytes = 1 << 20

// newMessageBuffer is a buffer for one message, with room for the line that takes it past
// framedMessageBytes.
func newMessageBuffer() []byte { return make([]byte, 0, framedMessageBytes+64<<10) }

// messageWriter writes the framed limit's messages to its connection: at once, or from a goroutine of its
// own, which takes full buffers from the loop and gives them back once written (four in turn).
type messageWriter struct {
	conn       net.Conn
	full, free chan []byte // nil unless pipelined
	result     chan error
	written    int64
}

func newMessageWriter(conn net.Conn, pipelined bool) *messageWriter {
	w := &messageWriter{conn: conn}
	if !pipelined {
		return w
	}
	const buffers = 4
	w.full, w.free, w.result = make(chan []byte, buffers), make(chan []byte, buffers), make(chan error, 1)
	for range buffers {
		w.free <- newMessageBuffer()
	}
	go func() {
		var err error
		for msg := range w.full {
			if err == nil {
				var n int
				n, err = conn.Write(msg)
				w.written += int64(n)
			}
			w.free <- msg[:0]
		}
		w.result <- err
	}()
	return w
}

// buffer returns an empty buffer for a message.
func (w *messageWriter) buffer() []byte {
	if w.free == nil {
		return newMessageBuffer()
	}
	return <-w.free
}

// write writes a message, or hands it to the writer goroutine, and returns an empty buffer for the next.
func (w *messageWriter) write(msg []byte) ([]byte, error) {
	if w.full == nil {
		n, err := w.conn.Write(msg)
		w.written += int64(n)
		return msg[:0], err
	}
	w.full <- msg
	return <-w.free, nil
}

// close waits for the messages handed over to be written and returns the bytes written in all.
func (w *messageWriter) close() (int64, error) {
	if w.full == nil {
		return w.written, nil
	}
	close(w.full)
	err := <-w.result
	return w.written, err
}

// framedLines reads the file through buf and calls each with every line, its newline included.
func framedLines(path string, buf []byte, each func(line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	carry := 0 // the start of a line the last read cut, moved to buf's start
	for {
		n, err := f.Read(buf[carry:])
		data := buf[:carry+n]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			if err := each(data[:i+1]); err != nil {
				return err
			}
			data = data[i+1:]
		}
		if carry = copy(buf, data); carry == len(buf) {
			return errors.New("framed limit: a line longer than the read buffer")
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// rawLimitInReceiverProcess is the raw limit as the benchmark ran it until 2026-12-07: its loop in a
// goroutine of the reader's process. It is kept as a figure of its own, beside the limit in a process of
// its own, for comparison with the figures measured before.
func rawLimitInReceiverProcess(d *logsDataset, inflate float64) (time.Duration, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	received := make(chan int64, 1)
	go func() { received <- discardFirstConnection(l) }()
	start := time.Now()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return 0, err
	}
	written, err := rawLoop(conn, d.files, inflate)
	if closeErr := conn.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return 0, err
	}
	if arrived := <-received; arrived != written {
		return 0, fmt.Errorf("raw limit: %d bytes arrived, %d written", arrived, written)
	}
	return time.Since(start), nil
}

// discardFirstConnection accepts one connection on l and reads it to its end, discarding what arrives; it
// returns how many bytes arrived.
func discardFirstConnection(l net.Listener) int64 {
	conn, err := l.Accept()
	if err != nil {
		return 0
	}
	defer conn.Close()
	// Read as the shippers' receiver does: io.Discard's own ReadFrom reads 8 KiB at a time, which cost the
	// limits' receiver several times the CPU of the shippers' and held the limits at some 1.3 GB/s where
	// this reader allows 2 and more.
	buf := make([]byte, forwardspec.ReadBufferBytes)
	n, _ := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{conn}, buf)
	return n
}

// inflatingWriter writes each buffer, then up to extra bytes of it again.
type inflatingWriter struct {
	w            io.Writer
	extra        int
	extraWritten int64
}

func (iw *inflatingWriter) Write(p []byte) (int, error) {
	n, err := iw.w.Write(p)
	if err != nil || iw.extra == 0 {
		return n, err
	}
	again, err := iw.w.Write(p[:min(len(p), iw.extra)])
	iw.extraWritten += int64(again)
	return n, err
}

// logsRun is one shipper run's figures.
type logsRun struct {
	elapsed time.Duration
	// afterStartup is the delivery rate in bytes of log per second from the first acknowledgement to the
	// last: without the agent's process start and its first chunk, which no long-running shipper pays.
	afterStartup float64
	cpuSeconds   float64
	peakRSS      int64
	// sentBytes are the records' bytes the receiver got (msgpack, with each record's metadata).
	sentBytes int64
}

// recordCounter is a receiver of the benchmark's: the records it acknowledged and the bytes that carried them.
type recordCounter interface {
	Counts() (records int, bytes int64)
}

// logShipper is a shipper the benchmark runs on the dataset, each with a receiver of the benchmark's that
// acknowledges what it counts: nodeagent with a forward protocol receiver, the OpenTelemetry Collector with
// an OTLP/HTTP one.
type logShipper struct {
	name    string
	logPath string
	// start runs the shipper on the dataset's files; stop ends it and its receiver.
	start func(d *logsDataset) (proc *process, sink recordCounter, stop func(), err error)
}

// agentShipper is nodeagent --logs-only; with profile, a CPU profile of each run's first second (after
// start-up) is saved as nodeagent-cpu.pprof in logsRunDir, the last run's kept.
func agentShipper(agentBin string, profile bool) logShipper {
	return logShipper{name: "nodeagent", logPath: filepath.Join(logsRunDir, "nodeagent.log"),
		start: func(d *logsDataset) (*process, recordCounter, func(), error) {
			sink, err := forwardspec.Listen("127.0.0.1:0", forwardspec.Config{})
			if err != nil {
				return nil, nil, nil, err
			}
			root := filepath.Join(logsRunDir, "root")
			if err := os.RemoveAll(root); err != nil {
				sink.Close()
				return nil, nil, nil, err
			}
			proc, err := startLogsAgent(agentBin, d.dir, root, sink.Addr(), profile)
			if err != nil {
				sink.Close()
				return nil, nil, nil, err
			}
			profiled := make(chan struct{})
			go func() {
				defer close(profiled)
				if profile {
					profileLogsAgent(proc)
				}
			}()
			return proc, sink, func() { <-profiled; proc.stop(); sink.Close() }, nil
		}}
}

// profileLogsAgent saves a CPU profile of one second of the agent's run, once its metrics address answers.
func profileLogsAgent(proc *process) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-proc.done:
			return
		default:
		}
		if err := saveProfile("profile?seconds=1", filepath.Join(logsRunDir, "nodeagent-cpu.pprof")); err == nil {
			return
		}
	}
	fmt.Fprintln(os.Stderr, "bench: no profile of the agent: its metrics address did not answer")
}

// shipDataset runs a shipper on the dataset and times it from its start to the acknowledgement of the last
// record.
func shipDataset(ctx context.Context, shipper logShipper, d *logsDataset) (logsRun, error) {
	start := time.Now()
	proc, sink, stop, err := shipper.start(d)
	if err != nil {
		return logsRun{}, err
	}
	defer stop()
	run := logsRun{}
	last, lastChange := 0, time.Now()
	firstRecords, firstAt := 0, time.Time{}
	for {
		records, _ := sink.Counts()
		if firstRecords == 0 && records > 0 {
			firstRecords, firstAt = records, time.Now()
		}
		if records >= d.lines {
			if records > d.lines {
				return logsRun{}, fmt.Errorf("%d records acknowledged, want %d", records, d.lines)
			}
			break
		}
		if err := ctx.Err(); err != nil {
			return logsRun{}, err
		}
		select {
		case <-proc.done:
			return logsRun{}, fmt.Errorf("%s exited after %d of %d records", shipper.name, records, d.lines)
		default:
		}
		if records != last {
			last, lastChange = records, time.Now()
		} else if time.Since(lastChange) > 30*time.Second {
			return logsRun{}, fmt.Errorf("%d of %d records, none for 30 s", records, d.lines)
		}
		if run.peakRSS, err = proc.peakRSS(); err != nil {
			return logsRun{}, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	run.elapsed = time.Since(start)
	lineBytes := float64(d.bytes) / float64(d.lines)
	run.afterStartup = float64(d.lines-firstRecords) * lineBytes / time.Since(firstAt).Seconds()
	_, run.sentBytes = sink.Counts()
	if run.cpuSeconds, err = proc.cpuSeconds(); err != nil {
		return logsRun{}, err
	}
	if run.peakRSS, err = proc.peakRSS(); err != nil {
		return logsRun{}, err
	}
	return run, nil
}

// collectorVersion is the OpenTelemetry Collector release hack/otelcol builds.
const collectorVersion = "v0.165.0"

// collectorShipper is the OpenTelemetry Collector as its users ship Kubernetes logs with it: the filelog
// receiver from the beginning of each file with the container parser (CRI lines, the pod's metadata from the
// path), the batch processor with its defaults, and the otlphttp exporter (protobuf, gzip, its sending queue
// and retries) to the benchmark's OTLP receiver, which acknowledges each request once its records are counted.
func collectorShipper(bin string) logShipper {
	logPath := filepath.Join(logsRunDir, "otelcol.log")
	return logShipper{name: "OpenTelemetry Collector", logPath: logPath,
		start: func(d *logsDataset) (*process, recordCounter, func(), error) {
			sink, err := listenOTLP()
			if err != nil {
				return nil, nil, nil, err
			}
			config := filepath.Join(logsRunDir, "otelcol.yaml")
			if err := os.WriteFile(config, []byte(`receivers:
  file_log:
    include: [`+d.dir+`/*/*/*.log]
    start_at: beginning
    include_file_path: true
    include_file_name: false
    operators:
      - type: container
processors:
  batch: {}
exporters:
  otlp_http:
    endpoint: `+sink.URL()+`
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    logs: {receivers: [file_log], processors: [batch], exporters: [otlp_http]}
`), 0o644); err != nil {
				sink.Close()
				return nil, nil, nil, err
			}
			proc, err := startProcess("otelcol", logPath, bin, "--config", config)
			if err != nil {
				sink.Close()
				return nil, nil, nil, err
			}
			return proc, sink, func() { proc.stop(); sink.Close() }, nil
		}}
}

// buildCollector builds hack/otelcol (its own module) into the benchmark's directory.
func buildCollector(repo string) (string, error) {
	bin := filepath.Join(logsRunDir, "otelcol")
	fmt.Fprintf(os.Stderr, "bench: building the OpenTelemetry Collector %s (hack/otelcol)\n", collectorVersion)
	if _, err := shell(repo, nil, "go build -C hack/otelcol -o "+bin+" ."); err != nil {
		return "", err
	}
	return bin, nil
}

func startLogsAgent(agentBin, podLogsDir, root, receiver string, profile bool) (*process, error) {
	config := filepath.Join(logsRunDir, "nodeagent.yaml")
	serve := "metricsBindAddress: \"\"\n"
	if profile {
		serve = "metricsBindAddress: " + agentMetricsAddr + "\nenableProfiling: true\n"
	}
	if err := os.WriteFile(config, []byte("apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\n"+
		"podLogsDir: "+podLogsDir+"\nrootDir: "+root+"\n"+serve+
		"logs:\n  enabled: true\n  receivers: [\""+receiver+"\"]\n  flushInterval: 100ms\n  bufferLimit: 4Gi\n"), 0o644); err != nil {
		return nil, err
	}
	return startProcess("nodeagent", filepath.Join(logsRunDir, "nodeagent.log"), agentBin, "--logs-only", "--config", config,
		"--hostname-override", "bench-node")
}

// steadyRate appends lines to the dataset's files at bytesPerSecond for seconds while the agent ships them,
// and returns the agent's CPU seconds per second of writing and the time the last line took to be
// acknowledged after it was written.
func steadyRate(ctx context.Context, agentBin string, containers, lineBytes int, bytesPerSecond int64, seconds int) (cores float64, lag time.Duration, err error) {
	d, err := writeLogsDataset(filepath.Join(logsRunDir, "steady"), containers, 0, lineBytes)
	if err != nil {
		return 0, 0, err
	}
	sink, err := forwardspec.Listen("127.0.0.1:0", forwardspec.Config{})
	if err != nil {
		return 0, 0, err
	}
	defer sink.Close()
	root := filepath.Join(logsRunDir, "root")
	if err := os.RemoveAll(root); err != nil {
		return 0, 0, err
	}
	proc, err := startLogsAgent(agentBin, d.dir, root, sink.Addr(), false)
	if err != nil {
		return 0, 0, err
	}
	defer proc.stop()
	files := make([]*os.File, len(d.files))
	for i, path := range d.files {
		if files[i], err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err != nil {
			return 0, 0, err
		}
		defer files[i].Close()
	}
	time.Sleep(time.Second) // the agent is up and following the files
	cpuBefore, err := proc.cpuSeconds()
	if err != nil {
		return 0, 0, err
	}
	const tick = 10 * time.Millisecond
	perTick := bytesPerSecond * int64(tick) / int64(time.Second)
	start := time.Now()
	written, lines := int64(0), d.lines
	next := make([]int, containers)
	for tickN := 0; time.Since(start) < time.Duration(seconds)*time.Second; tickN++ {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		c := tickN % containers
		var batch strings.Builder
		for int64(batch.Len()) < perTick {
			batch.WriteString(criBenchLine(c, next[c], lineBytes))
			next[c]++
			lines++
		}
		if _, err := files[c].WriteString(batch.String()); err != nil {
			return 0, 0, err
		}
		written += int64(batch.Len())
		time.Sleep(time.Until(start.Add(time.Duration(tickN+1) * tick)))
	}
	wrote := time.Since(start)
	for {
		if records, _ := sink.Counts(); records >= lines {
			break
		}
		if time.Since(start) > wrote+time.Minute {
			records, _ := sink.Counts()
			return 0, 0, fmt.Errorf("steady rate: %d of %d records a minute after writing stopped", records, lines)
		}
		time.Sleep(time.Millisecond)
	}
	lag = time.Since(start) - wrote
	cpuAfter, err := proc.cpuSeconds()
	if err != nil {
		return 0, 0, err
	}
	rate := float64(written) / wrote.Seconds()
	fmt.Fprintf(os.Stderr, "bench: steady: wrote %.1f MB/s for %v\n", rate/1e6, wrote.Round(time.Millisecond))
	return (cpuAfter - cpuBefore) / (wrote + lag).Seconds(), lag, nil
}

// bracket is the ceiling an agent's run is compared with: the geometric mean of the ceiling's runs right
// before and right after it, or the one after it alone when before is 0.
func bracket(before, after float64) float64 {
	if before == 0 {
		return after
	}
	return math.Sqrt(before * after)
}

// medianRatio is the median of a[i]/b[i]: the machine's speed drifts between rounds, so each ratio is taken
// within a round, then the median.
func medianRatio(a, b []float64) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = a[i] / b[i]
	}
	return median(r)
}

// prepareLogsRun builds the repository's agent and writes the dataset the log benchmarks ship; it returns
// the repository's directory, the agent's path and the dataset.
func prepareLogsRun(containers int, megabytes int64, lineBytes int) (repo, agentBin string, d *logsDataset, err error) {
	if repo, err = os.Getwd(); err != nil {
		return "", "", nil, err
	}
	if agentBin, err = buildAgent(repo, logsRunDir); err != nil {
		return "", "", nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: writing %d MB of logs in %d files\n", megabytes, containers)
	d, err = writeLogsDataset(filepath.Join(logsRunDir, "pods"), containers, megabytes<<20/int64(containers), lineBytes)
	return repo, agentBin, d, err
}

func runLogsBench(ctx context.Context, containers int, megabytes int64, lineBytes, rounds, steadyMBps, steadySeconds int, profile bool) error {
	repo, agentBin, d, err := prepareLogsRun(containers, megabytes, lineBytes)
	if err != nil {
		return err
	}
	collectorBin, err := buildCollector(repo)
	if err != nil {
		return err
	}
	shippers := []logShipper{agentShipper(agentBin, profile), collectorShipper(collectorBin)}
	// Per round, each kind of run once; each shipper's runs by its name.
	var raw, ceiling, ceilingAround, ceilingShared, framed, rawBusy []float64
	shipped, afterStartup, cpu, rss, busy := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	// The CPU seconds of each way of moving the bytes with those of its receiver: the limits' loops and
	// readers are the benchmark's own process, a shipper's receiver is (with the loop that polls it).
	var ceilingCPU, framedCPU, framed2, framed2CPU []float64
	pipelineCPU := map[string][]float64{}
	sent := map[string]int64{}
	ship := func(round int, shipper logShipper) error {
		fmt.Fprintf(os.Stderr, "bench: round %d, %s\n", round+1, shipper.name)
		before, err := readCPUTimes()
		if err != nil {
			return err
		}
		var run logsRun
		receiverCPU, err := selfCPUSeconds(func() (err error) { run, err = shipDataset(ctx, shipper, d); return err })
		if err != nil {
			return fmt.Errorf("%s: %w (log: %s)", shipper.name, err, shipper.logPath)
		}
		after, err := readCPUTimes()
		if err != nil {
			return err
		}
		n := shipper.name
		busy[n] = append(busy[n], busyCores(before, after))
		shipped[n] = append(shipped[n], float64(d.bytes)/run.elapsed.Seconds())
		afterStartup[n] = append(afterStartup[n], run.afterStartup)
		cpu[n] = append(cpu[n], run.cpuSeconds)
		pipelineCPU[n] = append(pipelineCPU[n], run.cpuSeconds+receiverCPU)
		rss[n] = append(rss[n], float64(run.peakRSS))
		sent[n] = run.sentBytes
		return nil
	}
	// limit runs one of the limits and returns its rate in bytes of log per second and the CPU seconds of
	// its loop and reader.
	limit := func(round int, name string, kind limitKind, inflate float64) (rate, cpuSeconds float64, err error) {
		fmt.Fprintf(os.Stderr, "bench: round %d, %s\n", round+1, name)
		var elapsed time.Duration
		var loopCPU float64
		readerCPU, err := selfCPUSeconds(func() (err error) { elapsed, loopCPU, err = runLimit(d, kind, inflate); return err })
		return float64(d.bytes) / elapsed.Seconds(), loopCPU + readerCPU, err
	}
	// In each round the limits the agent is compared with run right after it, where the machine's speed
	// is most like what the agent had (the Collector's run, half a minute at 200-byte lines, comes last).
	// From the second round on the ceiling also runs right before the agent (the records' size is known
	// from the first round): the agent is compared with the geometric mean of the runs on either side of
	// it (bracket), so that the machine's drift during a round does not count for or against it.
	for round := range rounds {
		ceilingBefore := 0.0
		if round > 0 {
			var err error
			if ceilingBefore, _, err = limit(round, "raw limit for the records' size, before nodeagent", rawLimit,
				float64(sent["nodeagent"])/float64(d.bytes)); err != nil {
				return err
			}
		}
		if err := ship(round, shippers[0]); err != nil {
			return err
		}
		inflate := float64(sent["nodeagent"]) / float64(d.bytes)
		rate, loopCPU, err := limit(round, "raw limit for the records' size", rawLimit, inflate)
		if err != nil {
			return err
		}
		ceiling, ceilingCPU = append(ceiling, rate), append(ceilingCPU, loopCPU)
		ceilingAround = append(ceilingAround, bracket(ceilingBefore, rate))
		elapsed, err := rawLimitInReceiverProcess(d, inflate)
		if err != nil {
			return err
		}
		ceilingShared = append(ceilingShared, float64(d.bytes)/elapsed.Seconds())
		if rate, loopCPU, err = limit(round, "framed limit", framedLimit, inflate); err != nil {
			return err
		}
		framed, framedCPU = append(framed, rate), append(framedCPU, loopCPU)
		if rate, loopCPU, err = limit(round, "framed limit on two cores", framedLimitTwoCores, inflate); err != nil {
			return err
		}
		framed2, framed2CPU = append(framed2, rate), append(framed2CPU, loopCPU)
		before, err := readCPUTimes()
		if err != nil {
			return err
		}
		if rate, _, err = limit(round, "raw limit", rawLimit, 1); err != nil {
			return err
		}
		after, err := readCPUTimes()
		if err != nil {
			return err
		}
		raw, rawBusy = append(raw, rate), append(rawBusy, busyCores(before, after))
		if err := ship(round, shippers[1]); err != nil {
			return err
		}
	}
	cores, lag, err := steadyRate(ctx, agentBin, containers, lineBytes, int64(steadyMBps)*1e6, steadySeconds)
	if err != nil {
		return err
	}
	agent, otel := "nodeagent", shippers[1].name
	gb := float64(d.bytes) / 1e9
	fmt.Printf("Log shipping: %d MB in %d container logs (%d lines of %d bytes), %d rounds, medians (a ratio: of the rounds' ratios)\n",
		d.bytes>>20, containers, d.lines, lineBytes, rounds)
	fmt.Printf("%-60s %12s\n", "figure", "value")
	row := func(name, format string, v float64) { fmt.Printf("%-60s "+format+"\n", name, v) }
	row("raw limit: read + loopback write, MB/s", "%12.0f", median(raw)/1e6)
	row(fmt.Sprintf("raw limit writing %.2f bytes per byte read, MB/s", float64(sent[agent])/float64(d.bytes)), "%12.0f", median(ceiling)/1e6)
	row("framed limit: each line found and copied into a record that size, MB/s", "%12.0f", median(framed)/1e6)
	row("framed limit on two cores: a goroutine writes while the loop frames, MB/s", "%12.0f", median(framed2)/1e6)
	for _, n := range []string{agent, otel} {
		row(n+": files to acknowledged receipt, MB/s", "%12.0f", median(shipped[n])/1e6)
		row(n+": first ack to last (after start-up), MB/s", "%12.0f", median(afterStartup[n])/1e6)
		row(n+": lines/s", "%12.0f", median(shipped[n])/float64(d.bytes)*float64(d.lines))
		row(n+": CPU seconds per GB", "%12.2f", median(cpu[n])/gb)
		row(n+": peak RSS, MiB", "%12.0f", median(rss[n])/(1<<20))
		row(n+": bytes sent to its receiver per byte of log", "%12.2f", float64(sent[n])/float64(d.bytes))
		row(fmt.Sprintf("%s: machine's busy cores (of %d)", n, runtime.NumCPU()), "%12.2f", median(busy[n]))
	}
	row(fmt.Sprintf("raw limit: machine's busy cores (of %d)", runtime.NumCPU()), "%12.2f", median(rawBusy))
	// What each way of moving the bytes costs the machine, receiver included, against what its cores can
	// give at 90% of the ceiling: work that needs more cannot go that fast, however it is spread over them.
	row("raw limit writing the records' size, loop and reader: CPU s per GB", "%12.2f", median(ceilingCPU)/gb)
	row("framed limit, loop and reader: CPU s per GB", "%12.2f", median(framedCPU)/gb)
	row("framed limit on two cores, loop, writer and reader: CPU s per GB", "%12.2f", median(framed2CPU)/gb)
	for _, n := range []string{agent, otel} {
		row(n+" and its receiver: CPU s per GB", "%12.2f", median(pipelineCPU[n])/gb)
	}
	row(fmt.Sprintf("CPU s per GB that %d cores give at 90%% of the raw limit for the records' size", runtime.NumCPU()), "%12.2f",
		float64(runtime.NumCPU())/(0.9*median(ceiling)/1e9))
	row("nodeagent / raw limit", "%12.2f", medianRatio(shipped[agent], raw))
	row("raw limit writing the records' size / raw limit", "%12.2f", medianRatio(ceiling, raw))
	row("nodeagent / raw limit writing the records' size (runs before and after it)", "%12.2f", medianRatio(shipped[agent], ceilingAround))
	row("nodeagent after start-up / raw limit writing the records' size", "%12.2f", medianRatio(afterStartup[agent], ceilingAround))
	row("nodeagent / raw limit writing the records' size (the run after it)", "%12.2f", medianRatio(shipped[agent], ceiling))
	row("nodeagent / that limit run in the receiver's process (before 2026-12-07)", "%12.2f", medianRatio(shipped[agent], ceilingShared))
	row("framed limit / raw limit writing the records' size", "%12.2f", medianRatio(framed, ceiling))
	row("framed limit on two cores / raw limit writing the records' size", "%12.2f", medianRatio(framed2, ceiling))
	row("nodeagent / framed limit", "%12.2f", medianRatio(shipped[agent], framed))
	row("nodeagent / framed limit on two cores", "%12.2f", medianRatio(shipped[agent], framed2))
	row("nodeagent after start-up / framed limit", "%12.2f", medianRatio(afterStartup[agent], framed))
	row("nodeagent / Collector, throughput", "%12.2f", medianRatio(shipped[agent], shipped[otel]))
	// The same bytes each time: throughput per CPU second is bytes over CPU seconds.
	row("nodeagent / Collector, throughput per CPU second", "%12.2f", medianRatio(cpu[otel], cpu[agent]))
	row(fmt.Sprintf("nodeagent cores at %d MB/s written", steadyMBps), "%12.2f", cores)
	fmt.Printf("%-60s %12v\n", fmt.Sprintf("nodeagent delivery lag after %d s at %d MB/s", steadySeconds, steadyMBps), lag.Round(time.Millisecond))
	fmt.Println("each round: raw limit MB/s; nodeagent / raw limit, / raw limit writing the records' size, / framed limit, / framed limit on two cores; Collector MB/s; CPU s: nodeagent, Collector")
	for i := range raw {
		fmt.Printf("  %d: %5.0f  %.2f  %.2f  %.2f  %.2f  %5.0f  %.2f  %.2f\n", i+1, raw[i]/1e6, shipped[agent][i]/raw[i], shipped[agent][i]/ceilingAround[i],
			shipped[agent][i]/framed[i], shipped[agent][i]/framed2[i], shipped[otel][i]/1e6, cpu[agent][i], cpu[otel][i])
	}
	return nil
}
