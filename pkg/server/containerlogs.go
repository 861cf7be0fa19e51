package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
)

// logOptions are the query parameters of /containerLogs, as the API server passes PodLogOptions on.
type logOptions struct {
	follow, previous, timestamps bool
	tailLines, limitBytes        *int64
	since                        time.Time
	parse                        func(raw []byte) (LogLine, error)
}

func parseLogOptions(q map[string][]string) (logOptions, error) {
	var o logOptions
	get := func(name string) string {
		if v := q[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var err error
	for name, dst := range map[string]*bool{"follow": &o.follow, "previous": &o.previous, "timestamps": &o.timestamps} {
		if v := get(name); v != "" {
			if *dst, err = strconv.ParseBool(v); err != nil {
				return o, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	for name, dst := range map[string]**int64{"tailLines": &o.tailLines, "limitBytes": &o.limitBytes} {
		if v := get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || name == "limitBytes" && n == 0 {
				return o, fmt.Errorf("%s: invalid value %q", name, v)
			}
			*dst = &n
		}
	}
	if v := get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("sinceSeconds: invalid value %q", v)
		}
		o.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := get("sinceTime"); v != "" {
		if !o.since.IsZero() {
			return o, fmt.Errorf("at most one of sinceTime or sinceSeconds may be specified")
		}
		if o.since, err = time.Parse(time.RFC3339, v); err != nil {
			return o, fmt.Errorf("sinceTime: %w", err)
		}
	}
	return o, nil
}

// containerLogs serves /containerLogs/{namespace}/{pod}/{container}: the container's current (or with
// previous, its last) log file in the kubelet's layout, with the kubelet's options. With follow it streams
// until the container stops running, across the rotation of the file.
func (s *NodeAPI) containerLogs(w http.ResponseWriter, r *http.Request) {
	ns, podName, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	opts, err := parseLogOptions(r.URL.Query())
	opts.parse = s.cfg.ParseLogLine
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod, err := s.pods.Pods(ns).Get(podName)
	if apierrors.IsNotFound(err) {
		http.Error(w, fmt.Sprintf("pod %q does not exist", podName), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !hasContainer(pod, container) {
		http.Error(w, fmt.Sprintf("container %q not found in pod %q", container, podName), http.StatusNotFound)
		return
	}
	dir := filepath.Join(s.cfg.PodLogsDir, ns+"_"+podName+"_"+string(pod.UID), container)
	attempts := logAttempts(dir)
	var attempt int
	switch {
	case opts.previous && len(attempts) < 2:
		http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", container, podName), http.StatusBadRequest)
		return
	case opts.previous:
		attempt = attempts[len(attempts)-2]
	case len(attempts) == 0:
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start: %s", container, podName, waitingReason(pod, container)),
			http.StatusBadRequest)
		return
	default:
		attempt = attempts[len(attempts)-1]
	}
	path := filepath.Join(dir, strconv.Itoa(attempt)+".log")
	running := func() bool { return !opts.previous && isRunning(s.currentPod(ns, podName, pod), container, attempt) }
	w.Header().Set("Content-Type", "text/plain")
	out := &limitedWriter{w: w, left: -1}
	if opts.limitBytes != nil {
		out.left = *opts.limitBytes
	}
	if err := streamLog(r.Context(), out, path, opts, opts.follow && running(), running); err != nil && !out.full() {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// currentPod is the pod as the cache has it now, or the one looked up before.
func (s *NodeAPI) currentPod(ns, name string, before *corev1.Pod) *corev1.Pod {
	if pod, err := s.pods.Pods(ns).Get(name); err == nil {
		return pod
	}
	return before
}

var attemptLog = regexp.MustCompile(`^(\d+)\.log$`)

// logAttempts are the attempt numbers of the container's log files, oldest first.
func logAttempts(dir string) []int {
	entries, _ := os.ReadDir(dir)
	var out []int
	for _, e := range entries {
		if m := attemptLog.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func allStatuses(pod *corev1.Pod) []corev1.ContainerStatus {
	all := slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses)
	return slices.Concat(all, pod.Status.EphemeralContainerStatuses)
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func waitingReason(pod *corev1.Pod, container string) string {
	for _, cs := range allStatuses(pod) {
		if cs.Name == container && cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return "ContainerCreating"
}

// isRunning says whether the container's attempt (its restart count) still runs.
func isRunning(pod *corev1.Pod, container string, attempt int) bool {
	for _, cs := range allStatuses(pod) {
		if cs.Name == container {
			return cs.State.Running != nil && int(cs.RestartCount) == attempt
		}
	}
	return false
}

// streamLog writes the CRI log file's messages as the kubelet does: each line's message (a partial line's
// without a newline), with its time first when asked, from the tail or a time on. With follow it waits for
// more until running says the container stopped and the file was read to its end; a file rotated away
// (renamed, a new one in its place) is read to its end before the new one.
func streamLog(ctx context.Context, w *limitedWriter, path string, opts logOptions, follow bool, running func() bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	if opts.tailLines != nil {
		if err := seekTail(f, *opts.tailLines); err != nil {
			return err
		}
	}
	var changed *logWaiter
	if follow {
		changed = newLogWaiter(path)
		defer changed.close()
	}
	reader := bufio.NewReaderSize(f, 64<<10)
	var pending []byte
	draining := false // the file was rotated away: read it to its end once more before the new one
	for !w.full() {
		chunk, err := reader.ReadSlice('\n')
		pending = append(pending, chunk...)
		if err == nil {
			if werr := writeLine(w, bytes.TrimSuffix(pending, []byte("\n")), opts); werr != nil {
				return werr
			}
			pending = pending[:0]
			continue
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != io.EOF {
			return err
		}
		// At the end of what is written so far.
		if !follow {
			return nil
		}
		w.flush()
		if draining {
			// The runtime's reopen creates the new file before its writer lets go of the old one: until
			// it has written to the new file, a line may still land in the old one (e2e, 12-07: ten lines
			// lost so under kubectl logs -f). The kubelet moves on at the new file's creation.
			if empty(path) && running() {
				if !changed.wait(ctx) {
					return nil
				}
				continue
			}
			next, err := os.Open(path)
			if err != nil {
				return err
			}
			f.Close()
			f, pending, draining = next, nil, false
			reader.Reset(f)
			continue
		}
		if rotated(f, path) {
			// The runtime may have written to the old file after the end read above and before the
			// rotation renamed it: those lines come before the new file's.
			draining = true
			continue
		}
		if !running() {
			return nil
		}
		if !changed.wait(ctx) {
			return nil
		}
	}
	return nil
}

// logWaiter wakes a follower when its log file is written or replaced, as the kubelet's follow does with
// fsnotify, so a line reaches the client as soon as the runtime writes it. It watches the file's directory,
// which holds the file before and after a rotation. It also wakes every second, as the kubelet does, so that a
// lost event (the kernel's queue overflowing) or a stopped container is noticed; without inotify (no
// instance left) it wakes every 100 ms.
type logWaiter struct {
	watcher *fsnotify.Watcher // nil: polling
	path    string
}

func newLogWaiter(path string) *logWaiter {
	l := &logWaiter{path: filepath.Clean(path)}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		klog.V(2).InfoS("Following a log by polling", "path", path, "err", err)
		return l
	}
	if err := watcher.Add(filepath.Dir(l.path)); err != nil {
		klog.V(2).InfoS("Following a log by polling", "path", path, "err", err)
		_ = watcher.Close()
		return l
	}
	l.watcher = watcher
	return l
}

// wait returns when the file may have more to read: false when ctx ended.
func (l *logWaiter) wait(ctx context.Context) bool {
	if l.watcher == nil {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
			return true
		}
	}
	force := time.NewTimer(time.Second)
	defer force.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-force.C:
			return true
		case e, ok := <-l.watcher.Events:
			if !ok || e.Name == l.path {
				return true
			}
		case err, ok := <-l.watcher.Errors:
			if ok {
				klog.V(4).InfoS("Log watch", "path", l.path, "err", err) // an overflow: read again, as for an event
			}
			return true
		}
	}
}

func (l *logWaiter) close() {
	if l.watcher != nil {
		_ = l.watcher.Close()
	}
}

// writeLine writes one CRI line's message per the options; lines before the since time are skipped.
func writeLine(w *limitedWriter, raw []byte, opts logOptions) error {
	line, err := opts.parse(raw)
	if err != nil {
		return nil // not a CRI line: the kubelet skips it too
	}
	if !opts.since.IsZero() && line.Time.Before(opts.since) {
		return nil
	}
	if opts.timestamps {
		if _, err := w.Write([]byte(line.Time.Format(time.RFC3339Nano) + " ")); err != nil {
			return err
		}
	}
	if _, err := w.Write(line.Message); err != nil {
		return err
	}
	if !line.Partial {
		_, err = w.Write([]byte("\n"))
	}
	return err
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int64) error {
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	body := bytes.TrimSuffix(data, []byte("\n"))
	start, end := len(data), len(body)
	for i := int64(0); i < n; i++ {
		idx := bytes.LastIndexByte(body[:end], '\n')
		if idx < 0 {
			start = 0
			break
		}
		start, end = idx+1, idx
	}
	_, err = f.Seek(int64(start), io.SeekStart)
	return err
}

// empty says whether the file at path has nothing in it yet.
func empty(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Size() == 0
}

// rotated says whether path now names another file than f (the pod manager's rotation renamed f).
func rotated(f *os.File, path string) bool {
	open, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil {
		return false
	}
	a, ok1 := open.Sys().(*syscall.Stat_t)
	b, ok2 := now.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && a.Ino != b.Ino
}

// limitedWriter stops writing after limitBytes (left < 0: no limit) and flushes for followers.
type limitedWriter struct {
	w    http.ResponseWriter
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.left >= 0 && int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	if l.left >= 0 {
		l.left -= int64(n)
	}
	return n, err
}

func (l *limitedWriter) full() bool { return l.left == 0 }

func (l *limitedWriter) flush() {
	if f, ok := l.w.(http.Flusher); ok {
		f.Flush()
	}
}
