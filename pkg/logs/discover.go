package logs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ContainerLog is one container's current log file in the kubelet's layout:
// <pod logs dir>/<namespace>_<pod>_<uid>/<container>/<restart count>.log.
type ContainerLog struct {
	Namespace, Pod, UID, Container string
	Restart                        int
	Path                           string
}

// ParseLogPath reads the pod and container from a log file's path under podLogsDir; ok is false for any
// other file, rotated ones (<n>.log.<time>, compressed or not) included: a tailer reaches those by
// following its container's current file.
func ParseLogPath(podLogsDir, path string) (ContainerLog, bool) {
	rel, err := filepath.Rel(podLogsDir, path)
	if err != nil {
		return ContainerLog{}, false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) != 3 || !strings.HasSuffix(parts[2], ".log") {
		return ContainerLog{}, false
	}
	restart, err := strconv.Atoi(strings.TrimSuffix(parts[2], ".log"))
	if err != nil || restart < 0 {
		return ContainerLog{}, false
	}
	// Namespaces and pod names are DNS labels and UIDs are hex with dashes: none holds an underscore.
	pod := strings.Split(parts[0], "_")
	if len(pod) != 3 || pod[0] == "" || pod[1] == "" || pod[2] == "" || parts[1] == "" {
		return ContainerLog{}, false
	}
	return ContainerLog{Namespace: pod[0], Pod: pod[1], UID: pod[2], Container: parts[1], Restart: restart, Path: path}, true
}

// Discover lists the container log files under podLogsDir.
func Discover(podLogsDir string) ([]ContainerLog, error) {
	paths, err := filepath.Glob(filepath.Join(podLogsDir, "*", "*", "*.log"))
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", podLogsDir, err)
	}
	var logs []ContainerLog
	for _, p := range paths {
		if l, ok := ParseLogPath(podLogsDir, p); ok {
			logs = append(logs, l)
		}
	}
	return logs, nil
}
