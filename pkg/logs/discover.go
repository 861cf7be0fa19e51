package logs

import (
	"os"
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

// discover lists the container log files under podLogsDir, and the directories it read to find them (the
// root, each pod's, each container's), which the shipper watches for the next change. What cannot be read
// is passed over, as a glob would.
func discover(podLogsDir string) (logs []ContainerLog, dirs []string) {
	// readDir lists dir's names, and records it as a directory when it is one.
	readDir := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil
		}
		dirs = append(dirs, dir)
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		return names
	}
	for _, pod := range readDir(podLogsDir) {
		podDir := filepath.Join(podLogsDir, pod)
		for _, container := range readDir(podDir) {
			containerDir := filepath.Join(podDir, container)
			for _, name := range readDir(containerDir) {
				if l, ok := ParseLogPath(podLogsDir, filepath.Join(containerDir, name)); ok {
					logs = append(logs, l)
				}
			}
		}
	}
	return logs, dirs
}
