package podmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// podLogDir is a pod's log directory, the kubelet's <pod logs dir>/<namespace>_<name>_<uid>.
func (m *Manager) podLogDir(namespace, name, uid string) string {
	return filepath.Join(m.cfg.PodLogsDir, fmt.Sprintf("%s_%s_%s", namespace, name, uid))
}

// containerLogPath is a container's log file in its pod's log directory, <name>/<attempt>.log.
func containerLogPath(name string, attempt uint32) string {
	return fmt.Sprintf("%s/%d.log", name, attempt)
}

// containerLogFile is where the runtime writes a container's log.
func (m *Manager) containerLogFile(ct *runtimeapi.Container) string {
	labels, md := ct.GetLabels(), ct.GetMetadata()
	return filepath.Join(m.podLogDir(labels[cri.LabelPodNamespace], labels[cri.LabelPodName], labels[cri.LabelPodUID]),
		containerLogPath(md.GetName(), md.GetAttempt()))
}

// containerLogLink is the kubelet's link to a container's log, <dir>/<pod>_<namespace>_<container>-<id>.log
// cut to ext4's 255-byte names: what log shippers set up for the kubelet tail (/var/log/containers/*.log)
// and take the pod, namespace and container from.
func containerLogLink(dir string, ct *runtimeapi.Container) string {
	labels := ct.GetLabels()
	name := fmt.Sprintf("%s_%s_%s-%s", labels[cri.LabelPodName], labels[cri.LabelPodNamespace], ct.GetMetadata().GetName(), ct.GetId())
	if len(name) > 255-len(".log") {
		name = name[:255-len(".log")]
	}
	return filepath.Join(dir, name+".log")
}

// linkContainerLog makes the container's link point at its log file. As in the kubelet, a failure is
// logged and the container runs on: the log itself is in place.
func (m *Manager) linkContainerLog(ct *runtimeapi.Container) {
	dir := m.cfg.ContainerLogLinksDir
	if dir == "" {
		return
	}
	link := containerLogLink(dir, ct)
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.Remove(link)
	}
	if err == nil || errors.Is(err, os.ErrNotExist) {
		err = os.Symlink(m.containerLogFile(ct), link)
	}
	if err != nil {
		klog.ErrorS(err, "Unable to link a container's log", "link", link, "containerID", ct.GetId())
	}
}

// removeContainerLogs removes an exited container's log files (rotated ones included) and its link.
func (m *Manager) removeContainerLogs(ct *runtimeapi.Container) error {
	file := m.containerLogFile(ct)
	rotated, err := filepath.Glob(file + ".*")
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range append(rotated, file) {
		errs = append(errs, removeIfPresent(f))
	}
	if m.cfg.ContainerLogLinksDir != "" {
		errs = append(errs, removeIfPresent(containerLogLink(m.cfg.ContainerLogLinksDir, ct)))
	}
	return errors.Join(errs...)
}

func removeIfPresent(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// removeOldContainers is the kubelet's container garbage collection for one pod, run as a container is
// restarted: of each container name it keeps the two newest (the one that runs or ran last and the one the
// status shows as lastState) and removes the exited ones before them, with their logs and termination
// message, once their successor has existed for logRetention, so that log shippers have read them to the
// end. Without it a container that crash-loops for a day leaves hundreds of containers, root file system
// layers and log files behind. all is the pod's containers, newest first.
func (w *worker) removeOldContainers(ctx context.Context, all []*runtimeapi.Container, now time.Time) {
	seen := map[string]int{}
	successorCreated := map[string]int64{}
	for _, ct := range all {
		name := ct.GetMetadata().GetName()
		seen[name]++
		successor := successorCreated[name]
		successorCreated[name] = ct.CreatedAt
		if seen[name] <= 2 || ct.State != runtimeapi.ContainerState_CONTAINER_EXITED || now.Sub(time.Unix(0, successor)) < logRetention {
			continue
		}
		if err := w.runtime.RemoveContainer(ctx, ct.Id); err != nil {
			klog.ErrorS(err, "Unable to remove an old container", "pod", w.key, "containerID", ct.Id)
			continue
		}
		attempt := ct.GetMetadata().GetAttempt()
		err := errors.Join(w.m.removeContainerLogs(ct), os.RemoveAll(filepath.Dir(w.m.terminationMessageFile(string(w.uid), name, attempt))))
		if err != nil {
			klog.ErrorS(err, "Unable to remove an old container's logs", "pod", w.key, "container", name, "attempt", attempt)
		}
		klog.V(2).InfoS("Removed an old container", "pod", w.key, "container", name, "attempt", attempt, "containerID", ct.Id)
	}
}

// removeLinksInto removes the container log links that point into dir (a removed pod's log directory).
func (m *Manager) removeLinksInto(dir string) error {
	return m.removeLinks(func(target string) bool { return strings.HasPrefix(target, dir+string(filepath.Separator)) })
}

// removeDanglingLinks removes the links into the pod logs directory whose pod log directory is gone: what
// an agent stopped between removing a pod's logs and its links left behind (the kubelet's garbage
// collection removes dead links too). A link whose log file the runtime has not created yet stays.
func (m *Manager) removeDanglingLinks() error {
	return m.removeLinks(func(target string) bool {
		rel, err := filepath.Rel(m.cfg.PodLogsDir, target)
		if err != nil || strings.HasPrefix(rel, "..") {
			return false // another agent's
		}
		podDir, _, _ := strings.Cut(rel, string(filepath.Separator))
		_, err = os.Stat(filepath.Join(m.cfg.PodLogsDir, podDir))
		return errors.Is(err, os.ErrNotExist)
	})
}

// removeLinks removes the links of the links directory whose target stale says is stale.
func (m *Manager) removeLinks(stale func(target string) bool) error {
	dir := m.cfg.ContainerLogLinksDir
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing container log links: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		link := filepath.Join(dir, e.Name())
		if target, err := os.Readlink(link); err == nil && stale(target) {
			errs = append(errs, removeIfPresent(link))
		}
	}
	return errors.Join(errs...)
}
