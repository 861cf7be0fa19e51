package podmanager

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// LogRotation is the kubelet's container log policy: a log over MaxSize bytes is rotated, and at most
// MaxFiles files (the live one included) are kept per container.
type LogRotation struct {
	MaxSize  int64
	MaxFiles int
	// Interval is how often the logs' sizes are checked.
	Interval time.Duration
}

// The kubelet's names: rotated logs are <log>.<timestamp>, compressed ones end in .gz.
const (
	rotatedTimestampFormat = "20060102-150405"
	compressedSuffix       = ".gz"
	tmpSuffix              = ".tmp"
)

// runLogRotation checks the running containers' logs every interval until ctx ends.
func (m *Manager) runLogRotation(ctx context.Context) {
	ticker := time.NewTicker(m.cfg.LogRotation.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if err := m.rotateLogs(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Container log rotation")
		}
	}
}

// rotateLogs rotates the log of every running container of this node's pods that outgrew MaxSize. The
// containers and their log paths come from the runtime cache: no CRI call unless one is due.
func (m *Manager) rotateLogs(ctx context.Context) error {
	var errs []error
	for _, st := range m.rtcache.runningContainers() {
		log := st.GetLogPath()
		if info, err := os.Stat(log); err != nil || info.Size() < m.cfg.LogRotation.MaxSize {
			continue
		}
		if err := m.rotateLog(ctx, st.Id, log); err != nil {
			errs = append(errs, fmt.Errorf("rotating %s: %w", log, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) hasWorker(uid types.UID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.workers[uid]
	return ok
}

// rotateLog does what the kubelet's container log manager does: drop leftovers and the oldest rotated files
// beyond MaxFiles-2, compress the older rotated ones, then rename the live log and have the runtime reopen
// it (renaming it back if the runtime cannot, to try again next round).
func (m *Manager) rotateLog(ctx context.Context, containerID, log string) error {
	rotated, err := filepath.Glob(log + ".*")
	if err != nil {
		return err
	}
	var keep []string
	for _, f := range rotated {
		if strings.HasSuffix(f, tmpSuffix) {
			if err := removeIfPresent(f); err != nil {
				return err
			}
			continue
		}
		keep = append(keep, f)
	}
	sort.Strings(keep) // oldest first: the timestamps sort as strings
	excess := max(len(keep)-max(m.cfg.LogRotation.MaxFiles-2, 0), 0)
	for _, f := range keep[:excess] {
		if err := removeIfPresent(f); err != nil {
			return err
		}
	}
	for _, f := range keep[excess:] {
		if !strings.HasSuffix(f, compressedSuffix) {
			if err := compress(f); err != nil {
				return err
			}
		}
	}
	target := log + "." + time.Now().Format(rotatedTimestampFormat)
	if _, err := os.Stat(target); err == nil {
		return nil // rotated within this second already; the next round does it
	}
	if err := os.Rename(log, target); err != nil {
		return err
	}
	if err := m.runtime.ReopenContainerLog(ctx, containerID); err != nil {
		if renameErr := os.Rename(target, log); renameErr != nil {
			return errors.Join(fmt.Errorf("ReopenContainerLog: %w", err), renameErr)
		}
		return fmt.Errorf("ReopenContainerLog: %w", err)
	}
	klog.V(2).InfoS("Rotated container log", "containerID", containerID, "path", target)
	return nil
}

// compress gzips path into path.gz (through a temporary file, so a crash leaves no half-written .gz) and
// removes path.
func compress(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := path + compressedSuffix + tmpSuffix
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	err = errors.Join(err, zw.Close(), out.Close())
	if err == nil {
		err = os.Rename(tmp, path+compressedSuffix)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compressing %s: %w", path, err)
	}
	return os.Remove(path)
}
