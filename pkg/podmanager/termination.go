package podmanager

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet's limits on what a termination message may hold.
const (
	maxTerminationMessageBytes = 4096
	maxFallbackLogBytes        = 2048
	maxFallbackLogLines        = 80
)

// podDir is the agent's directory for one pod; it goes when the pod is removed.
func (m *Manager) podDir(uid string) string { return filepath.Join(m.cfg.RootDir, "pods", uid) }

// terminationMessageFile is the host file mounted at the container's terminationMessagePath, one per attempt
// so a restart never shows the previous attempt's message.
func (m *Manager) terminationMessageFile(uid, container string, attempt uint32) string {
	return filepath.Join(m.podDir(uid), "containers", container, strconv.Itoa(int(attempt)), "termination-log")
}

// terminationMessageMount creates the empty message file for a container attempt and returns its mount.
func (w *worker) terminationMessageMount(c *corev1.Container, attempt uint32) (*runtimeapi.Mount, error) {
	if c.TerminationMessagePath == "" {
		return nil, nil
	}
	host := w.m.terminationMessageFile(string(w.uid), c.Name, attempt)
	if err := os.MkdirAll(filepath.Dir(host), 0o750); err != nil {
		return nil, fmt.Errorf("termination message directory: %w", err)
	}
	f, err := os.OpenFile(host, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666)
	if err != nil {
		return nil, fmt.Errorf("termination message file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	// Writable by whatever user the container runs as (the umask narrowed the mode OpenFile asked for).
	if err := os.Chmod(host, 0o666); err != nil {
		return nil, fmt.Errorf("termination message file: %w", err)
	}
	return &runtimeapi.Mount{ContainerPath: c.TerminationMessagePath, HostPath: host}, nil
}

// terminationMessage is what the status shows for an exited container: the message file's content, or with
// FallbackToLogsOnError and a failure, the tail of its log.
func (w *worker) terminationMessage(c *corev1.Container, st *runtimeapi.ContainerStatus) string {
	file := w.m.terminationMessageFile(string(w.uid), c.Name, st.GetMetadata().GetAttempt())
	if msg := readAtMost(file, maxTerminationMessageBytes, false); msg != "" {
		return msg
	}
	if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && st.ExitCode != 0 {
		return logTail(st.LogPath)
	}
	return st.Message
}

// readAtMost returns up to limit bytes of a file, from its start or (tail) its end; "" if it is unreadable.
func readAtMost(path string, limit int64, tail bool) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if tail {
		if info, err := f.Stat(); err == nil && info.Size() > limit {
			if _, err := f.Seek(info.Size()-limit, io.SeekStart); err != nil {
				return ""
			}
		}
	}
	data, _ := io.ReadAll(io.LimitReader(f, limit))
	return string(data)
}

// logTail returns the last lines of a CRI log file with the timestamp, stream and tag of each line removed.
func logTail(path string) string {
	// CRI lines carry about 40 bytes of prefix; read enough raw bytes for the limits after stripping.
	raw := readAtMost(path, 4*maxFallbackLogBytes, true)
	lines := bytes.Split([]byte(raw), []byte("\n"))
	var out [][]byte
	for _, line := range lines {
		// "<timestamp> <stream> <P|F> <message>"
		fields := bytes.SplitN(line, []byte(" "), 4)
		if len(fields) == 4 {
			out = append(out, fields[3])
		}
	}
	if len(out) > maxFallbackLogLines {
		out = out[len(out)-maxFallbackLogLines:]
	}
	msg := bytes.Join(out, []byte("\n"))
	if len(msg) > maxFallbackLogBytes {
		msg = msg[len(msg)-maxFallbackLogBytes:]
	}
	return string(msg)
}
