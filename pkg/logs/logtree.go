package logs

import (
	"context"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// safetyRescan is how often the pod logs directory is listed again although no directory event came: the
// kernel's event queue can overflow, and a directory made between a listing and its watch is only seen so.
const safetyRescan = 10 * time.Second

// logTree tells the shipper when to list the pod logs directory again: when an entry is created, removed or
// renamed in it, in a pod's directory or in a container's (a new pod, a new container, a restart's new
// file, a rotation), as inotify reports it on those directories. Listing every few hundred milliseconds
// instead cost most of an idle node's CPU at 110 pods: some 220 directories opened and read each time.
// Without inotify it falls back to listing every poll interval.
type logTree struct {
	poll    time.Duration
	watcher *fsnotify.Watcher // nil: polling
	watched map[string]bool
}

func watchLogTree(root string, poll time.Duration) *logTree {
	t := &logTree{poll: poll, watched: map[string]bool{}}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		klog.ErrorS(err, "Watching the pod logs directory; listing it every poll interval instead", "dir", root, "interval", poll)
		return t
	}
	t.watcher = w
	return t
}

// watch adds a watch on each of dirs (the root, each pod directory and each container directory, as the
// last listing found them) not watched yet; the kernel drops the watch of a directory that goes.
func (t *logTree) watch(dirs []string) {
	if t.watcher == nil {
		return
	}
	live := map[string]bool{}
	for _, dir := range dirs {
		live[dir] = true
		if t.watched[dir] {
			continue
		}
		if err := t.watcher.Add(dir); err == nil {
			t.watched[dir] = true
		}
	}
	for dir := range t.watched {
		if !live[dir] {
			delete(t.watched, dir)
		}
	}
}

// wait returns true when the directory should be listed again, false when ctx ended.
func (t *logTree) wait(ctx context.Context) bool {
	if t.watcher == nil {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(t.poll):
			return true
		}
	}
	rescan := time.NewTimer(safetyRescan)
	defer rescan.Stop()
	settling := false
	for {
		select {
		case <-ctx.Done():
			return false
		case <-rescan.C:
			return true
		case err := <-t.watcher.Errors:
			klog.V(2).InfoS("Pod logs directory events lost; listing it again", "err", err)
			return true
		case ev, ok := <-t.watcher.Events:
			if !ok {
				return true
			}
			// Writes to the logs are the followers' business, not a reason to list the tree.
			if !settling && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
				// A pod's directories and files come in a burst: one listing for them, soon after the first.
				rescan.Reset(settleEvents)
				settling = true
			}
		}
	}
}

// settleEvents is how long after a directory event the tree is listed, so that the events of one new pod
// (its directory, its containers', their files), or of a burst of pods, make one listing.
const settleEvents = 20 * time.Millisecond

func (t *logTree) close() {
	if t.watcher != nil {
		_ = t.watcher.Close()
	}
}
