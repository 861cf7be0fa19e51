package podmanager

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// errVolumeNotReady keeps containers from starting until a volume can be set up; the pod shows
// ContainerCreating and a FailedMount event says why, as with the kubelet.
var errVolumeNotReady = errors.New("volumes not ready")

// volumeRefresh is how often ConfigMap and Secret volumes are re-read (from their watches) to follow updates.
const volumeRefresh = 10 * time.Second

// The kubelet's volume plugin directories of the volumes kept in the pod's directory.
const (
	pluginEmptyDir    = "empty-dir"
	pluginConfigMap   = "configmap"
	pluginSecret      = "secret"
	pluginDownwardAPI = "downward-api"
	pluginProjected   = "projected"
)

// LocalVolume is a pod volume kept in the pod's directory: part of its local ephemeral storage, unless it is
// in memory.
type LocalVolume struct {
	Name, Path string
	InMemory   bool
}

// LocalVolumes are the pod's volumes kept in its directory (emptyDir, configMap, secret, downwardAPI,
// projected), in the order of its spec, as /stats/summary reports them.
func (m *Manager) LocalVolumes(pod *corev1.Pod) []LocalVolume {
	var out []LocalVolume
	for _, v := range pod.Spec.Volumes {
		var plugin string
		inMemory := false
		switch {
		case v.EmptyDir != nil:
			plugin, inMemory = pluginEmptyDir, v.EmptyDir.Medium == corev1.StorageMediumMemory
		case v.ConfigMap != nil:
			plugin = pluginConfigMap
		case v.Secret != nil:
			plugin = pluginSecret
		case v.DownwardAPI != nil:
			plugin = pluginDownwardAPI
		case v.Projected != nil:
			plugin = pluginProjected
		default:
			continue
		}
		out = append(out, LocalVolume{Name: v.Name, Path: m.volumeDir(string(pod.UID), plugin, v.Name), InMemory: inMemory})
	}
	return out
}

// volumeDir is where a volume of a pod lives on the host, in the kubelet's layout.
func (m *Manager) volumeDir(uid, plugin, name string) string {
	return filepath.Join(m.volumeKindDir(uid, plugin), name)
}

// releaseEmptyDirs unmounts and deletes the pod's emptyDir volumes, which a terminated pod no longer needs
// (the kubelet tears down the volumes of terminated pods too); the rest of the pod's files stay until the
// pod is removed.
func (w *worker) releaseEmptyDirs() error {
	if err := w.m.tearDownVolumes(string(w.uid)); err != nil {
		return err
	}
	if err := os.RemoveAll(w.m.volumeKindDir(string(w.uid), pluginEmptyDir)); err != nil {
		return fmt.Errorf("removing emptyDir volumes: %w", err)
	}
	return nil
}

// volumeKindDir holds a pod's volumes of one plugin, as the kubelet lays them out.
func (m *Manager) volumeKindDir(uid, plugin string) string {
	return filepath.Join(m.podDir(uid), "volumes", "kubernetes.io~"+plugin)
}

// hostVolume is a set-up volume: its host path and whether containers must see it read-only.
type hostVolume struct {
	path     string
	readOnly bool
}

// setUpVolumes prepares every volume of the pod on the host and returns them by name. Volume types this
// agent does not handle yet are reported once per pod with a Warning event and left out.
func (w *worker) setUpVolumes(ctx context.Context, pod *corev1.Pod) (map[string]hostVolume, error) {
	out := map[string]hostVolume{}
	var failed []string
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		hv, err := w.setUpVolume(ctx, pod, v)
		switch {
		case errors.Is(err, errUnsupportedVolume):
			if !w.warnedVolumes[v.Name] {
				w.warnedVolumes[v.Name] = true
				w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "UnsupportedVolume",
					"Volume %q is not mounted: %v", v.Name, err)
			}
		case err != nil:
			failed = append(failed, v.Name)
			w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed for volume %q : %v", v.Name, err)
		default:
			out[v.Name] = hv
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("%w: %s", errVolumeNotReady, strings.Join(failed, ", "))
	}
	return out, nil
}

var errUnsupportedVolume = errors.New("this volume type is not supported yet")

func (w *worker) setUpVolume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (hostVolume, error) {
	uid := string(pod.UID)
	var fsGroup *int64
	if pod.Spec.SecurityContext != nil {
		fsGroup = pod.Spec.SecurityContext.FSGroup
	}
	switch {
	case v.EmptyDir != nil:
		dir := w.m.volumeDir(uid, pluginEmptyDir, v.Name)
		return hostVolume{path: dir}, setUpEmptyDir(dir, v.EmptyDir, fsGroup)
	case v.HostPath != nil:
		return hostVolume{path: v.HostPath.Path}, checkHostPath(v.HostPath)
	case v.ConfigMap != nil:
		dir := w.m.volumeDir(uid, pluginConfigMap, v.Name)
		return hostVolume{path: dir, readOnly: true}, w.refreshFiles(dir, fsGroup, func() (map[string]projectedFile, error) {
			data, err := w.readConfigMap(ctx, pod.Namespace, v.ConfigMap.Name, isTrue(v.ConfigMap.Optional))
			if err != nil {
				return nil, err
			}
			return keyFiles(data, v.ConfigMap.Items, fileMode(v.ConfigMap.DefaultMode), isTrue(v.ConfigMap.Optional))
		})
	case v.Secret != nil:
		dir := w.m.volumeDir(uid, pluginSecret, v.Name)
		return hostVolume{path: dir, readOnly: true}, w.refreshFiles(dir, fsGroup, func() (map[string]projectedFile, error) {
			data, err := w.readSecret(ctx, pod.Namespace, v.Secret.SecretName, isTrue(v.Secret.Optional))
			if err != nil {
				return nil, err
			}
			return keyFiles(data, v.Secret.Items, fileMode(v.Secret.DefaultMode), isTrue(v.Secret.Optional))
		})
	case v.DownwardAPI != nil:
		dir := w.m.volumeDir(uid, pluginDownwardAPI, v.Name)
		return hostVolume{path: dir, readOnly: true}, w.refreshFiles(dir, fsGroup, func() (map[string]projectedFile, error) {
			return downwardAPIFiles(pod, v.DownwardAPI.Items, fileMode(v.DownwardAPI.DefaultMode), w.m.allocatable())
		})
	case v.Projected != nil:
		dir := w.m.volumeDir(uid, pluginProjected, v.Name)
		return hostVolume{path: dir, readOnly: true}, w.refreshFiles(dir, fsGroup, func() (map[string]projectedFile, error) {
			return w.projectedFiles(ctx, pod, v.Name, v.Projected)
		})
	}
	return hostVolume{}, errUnsupportedVolume
}

// setUpEmptyDir creates the directory; medium Memory mounts a tmpfs there, sized by sizeLimit, whose root
// keeps tmpfs's sticky bit (1777). Any container user may write in it, as with the kubelet; with an fsGroup
// the directory is the group's, setgid, so what containers create there is the group's too.
func setUpEmptyDir(dir string, ed *corev1.EmptyDirVolumeSource, fsGroup *int64) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if ed.Medium == corev1.StorageMediumMemory {
		mounted, err := isMountPoint(dir)
		if err != nil {
			return err
		}
		if !mounted {
			var opts string // tmpfs's own root mode, 1777, as with the kubelet
			if ed.SizeLimit != nil && !ed.SizeLimit.IsZero() {
				opts = "size=" + strconv.FormatInt(ed.SizeLimit.Value(), 10)
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
				return fmt.Errorf("mounting tmpfs at %s: %w", dir, err)
			}
		}
	}
	mode := os.FileMode(0o777)
	if ed.Medium == corev1.StorageMediumMemory {
		mode |= os.ModeSticky
	}
	if fsGroup != nil {
		if err := os.Chown(dir, -1, int(*fsGroup)); err != nil {
			return fmt.Errorf("giving %s to fsGroup %d: %w", dir, *fsGroup, err)
		}
		mode |= os.ModeSetgid
	}
	return os.Chmod(dir, mode)
}

// isMountPoint reports whether dir is the root of a mount (its device differs from its parent's).
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}

// checkHostPath applies the hostPath type's rules, creating the path for the *OrCreate types.
func checkHostPath(hp *corev1.HostPathVolumeSource) error {
	typ := corev1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}
	info, err := os.Stat(hp.Path)
	switch typ {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if errors.Is(err, os.ErrNotExist) {
			return os.MkdirAll(hp.Path, 0o755)
		}
	case corev1.HostPathFileOrCreate:
		if errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(hp.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(hp.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %s does not exist", hp.Path)
	}
	want := map[corev1.HostPathType]func(os.FileMode) bool{
		corev1.HostPathDirectoryOrCreate: os.FileMode.IsDir,
		corev1.HostPathDirectory:         os.FileMode.IsDir,
		corev1.HostPathFileOrCreate:      os.FileMode.IsRegular,
		corev1.HostPathFile:              os.FileMode.IsRegular,
		corev1.HostPathSocket:            func(m os.FileMode) bool { return m&os.ModeSocket != 0 },
		corev1.HostPathCharDev:           func(m os.FileMode) bool { return m&os.ModeCharDevice != 0 },
		corev1.HostPathBlockDev:          func(m os.FileMode) bool { return m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0 },
	}[typ]
	if want == nil {
		return fmt.Errorf("unknown hostPath type %q", typ)
	}
	if !want(info.Mode()) {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", hp.Path, typ)
	}
	return nil
}

// refreshFiles makes dir hold what build returns, at most every volumeRefresh, replacing the whole set
// atomically when it changed. With an fsGroup the files are the group's and group-readable, as the kubelet
// makes them (its read-only volumes get mode|0440): a container running as another user in that group can
// read a Secret's 0400 key.
func (w *worker) refreshFiles(dir string, fsGroup *int64, build func() (map[string]projectedFile, error)) error {
	if last, ok := w.projected[dir]; ok && time.Since(last) < volumeRefresh {
		return nil
	}
	files, err := build()
	if err != nil {
		return err
	}
	group := -1
	if fsGroup != nil {
		group = int(*fsGroup)
		for name, f := range files {
			f.mode |= 0o440
			files[name] = f
		}
	}
	if err := writeAtomically(dir, files, group); err != nil {
		return err
	}
	w.projected[dir] = time.Now()
	return nil
}

func isTrue(b *bool) bool { return b != nil && *b }

// fileMode is a volume's defaultMode, or the API's default 0644.
func fileMode(m *int32) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m)
}

// readConfigMap returns a ConfigMap's data and binaryData; a missing optional one is empty.
func (w *worker) readConfigMap(ctx context.Context, ns, name string, optional bool) (map[string][]byte, error) {
	cm, err := w.m.objects.ConfigMap(ctx, w.uid, ns, name)
	if apierrors.IsNotFound(err) && optional {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	maps.Copy(data, cm.BinaryData)
	return data, nil
}

// readSecret returns a Secret's data; a missing optional one is empty.
func (w *worker) readSecret(ctx context.Context, ns, name string, optional bool) (map[string][]byte, error) {
	sec, err := w.m.objects.Secret(ctx, w.uid, ns, name)
	if apierrors.IsNotFound(err) && optional {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	return sec.Data, nil
}

// keyFiles turns a source's keys into files: every key, or only the items (each with its own path and
// optional mode). A missing item key is an error unless the source is optional.
func keyFiles(data map[string][]byte, items []corev1.KeyToPath, mode os.FileMode, optional bool) (map[string]projectedFile, error) {
	files := map[string]projectedFile{}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = projectedFile{data: v, mode: mode}
		}
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("configmap or secret has no key %q", it.Key)
		}
		files[it.Path] = projectedFile{data: v, mode: itemMode(it.Mode, mode)}
	}
	return files, nil
}

func itemMode(m *int32, fallback os.FileMode) os.FileMode {
	if m == nil {
		return fallback
	}
	return os.FileMode(*m)
}

type projectedFile struct {
	data []byte
	mode os.FileMode
}

// writeAtomically makes dir show exactly files, the way the kubelet's atomic writer does: the files are
// written into a fresh hidden directory, the "..data" symlink is switched to it with one rename, and each
// top-level name is a symlink through "..data". A reader never sees a mix of old and new files. A group
// other than -1 gets every file, link and directory (the directories setgid), before the switch.
func writeAtomically(dir string, files map[string]projectedFile, group int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if current, err := os.Readlink(filepath.Join(dir, "..data")); err == nil && sameContent(filepath.Join(dir, current), files) {
		return nil
	}
	if err := giveToGroup(dir, group); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for name, f := range files {
		path := filepath.Join(stage, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode); err != nil { // WriteFile's mode is filtered by the umask
			return err
		}
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return err
	}
	if err := filepath.WalkDir(stage, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return giveToGroup(path, group)
	}); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(stage), tmpLink); err != nil {
		return err
	}
	if err := giveToGroup(tmpLink, group); err != nil {
		return err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	// Top-level names: add links for new ones, drop links whose target is gone.
	top := map[string]bool{}
	for name := range files {
		top[strings.SplitN(name, "/", 2)[0]] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") && !top[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(top)) {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
		if err := giveToGroup(link, group); err != nil {
			return err
		}
	}
	if old != "" && old != filepath.Base(stage) {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// giveToGroup makes path the group's (unless group is -1); a directory becomes setgid as well.
func giveToGroup(path string, group int) error {
	if group < 0 {
		return nil
	}
	if err := os.Lchown(path, -1, group); err != nil {
		return fmt.Errorf("giving %s to fsGroup %d: %w", path, group, err)
	}
	info, err := os.Lstat(path)
	if err != nil || !info.IsDir() {
		return err
	}
	return os.Chmod(path, info.Mode().Perm()|os.ModeSetgid)
}

// sameContent reports whether dir holds exactly files with the same bytes and modes.
func sameContent(dir string, files map[string]projectedFile) bool {
	count := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		f, ok := files[rel]
		info, statErr := d.Info()
		data, readErr := os.ReadFile(path)
		if !ok || statErr != nil || readErr != nil || string(data) != string(f.data) || info.Mode().Perm() != f.mode.Perm() {
			return errors.New("differs")
		}
		count++
		return nil
	})
	return err == nil && count == len(files)
}

// volumeMounts turns a container's volumeMounts into CRI mounts of the set-up volumes.
func volumeMounts(c *corev1.Container, volumes map[string]hostVolume, env map[string]string) ([]*runtimeapi.Mount, error) {
	var out []*runtimeapi.Mount
	for _, vm := range c.VolumeMounts {
		hv, ok := volumes[vm.Name]
		if !ok {
			continue // an unsupported volume, already reported by an event
		}
		host := hv.path
		subPath := vm.SubPath
		if vm.SubPathExpr != "" {
			var err error
			if subPath, err = expandSubPath(vm.SubPathExpr, env); err != nil {
				return nil, err
			}
		}
		if subPath != "" {
			var err error
			if host, err = ensureSubPath(hv.path, subPath); err != nil {
				return nil, err
			}
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: vm.MountPath, HostPath: host,
			Readonly: vm.ReadOnly || hv.readOnly})
	}
	return out, nil
}

// expandSubPath expands a subPathExpr with the container's environment, as the kubelet does: a variable that
// is not set or empty is an error.
func expandSubPath(expr string, env map[string]string) (string, error) {
	var missing []string
	expanded := expandWith(expr, func(name string) (string, bool) {
		v, ok := env[name]
		if !ok || v == "" {
			missing = append(missing, name)
		}
		return v, true
	})
	if len(missing) > 0 {
		slices.Sort(missing)
		return "", fmt.Errorf("missing value for %s", strings.Join(slices.Compact(missing), ", "))
	}
	return expanded, nil
}

// ensureSubPath is the host directory of a volume's subPath, created with the volume's mode (special bits
// included) when missing (as
// the kubelet does, so it is not left to the runtime with another owner or mode). A subPath may not leave the
// volume: absolute paths and '..' are refused with the kubelet's messages.
func ensureSubPath(volume, subPath string) (string, error) {
	if filepath.IsAbs(subPath) {
		return "", fmt.Errorf("error SubPath `%s` must not be an absolute path", subPath)
	}
	if slices.Contains(strings.Split(filepath.ToSlash(subPath), "/"), "..") {
		return "", fmt.Errorf("unable to provision SubPath `%s`: must not contain '..'", subPath)
	}
	host := filepath.Join(volume, subPath)
	if _, err := os.Lstat(host); err == nil || !os.IsNotExist(err) {
		return host, nil
	}
	st, err := os.Stat(volume)
	if err != nil {
		return "", fmt.Errorf("volume of SubPath `%s`: %w", subPath, err)
	}
	if !st.IsDir() {
		return host, nil // a file volume (a hostPath file): the runtime reports what is wrong
	}
	mode := st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	if err := os.MkdirAll(host, mode.Perm()); err != nil {
		return "", fmt.Errorf("creating SubPath `%s`: %w", subPath, err)
	}
	// The umask may have narrowed the mode, and MkdirAll sets no special bits (setgid of an fsGroup volume).
	if err := os.Chmod(host, mode); err != nil {
		return "", fmt.Errorf("creating SubPath `%s`: %w", subPath, err)
	}
	return host, nil
}

// tearDownVolumes unmounts the pod's memory-backed emptyDirs so its directory can be removed.
func (m *Manager) tearDownVolumes(uid string) error {
	dirs, _ := filepath.Glob(filepath.Join(m.volumeKindDir(uid, pluginEmptyDir), "*"))
	for _, dir := range dirs {
		if mounted, err := isMountPoint(dir); err == nil && mounted {
			if err := unix.Unmount(dir, 0); err != nil {
				return fmt.Errorf("unmounting %s: %w", dir, err)
			}
		}
	}
	return nil
}
