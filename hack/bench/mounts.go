package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// unmountUnder detaches every mount at or under dir. The kubelet bind-mounts its root dir onto itself at
// each start (to make it rshared) and mounts its pods' volumes under it; left behind by the runs before,
// each start doubled what was mounted there: 99,328 mounts on 2026-12-06 after a day of benchmarks, and
// every runc init and every read of the mount table slowed with them (the kubelet's own 30-pod bursts went
// from 4.5 to 47 s, the runtime alone's from 3.2 to 6 s).
func unmountUnder(dir string) error {
	for range 16 { // a detached mount can uncover another one stacked below it
		targets, err := mountsUnder(dir)
		if err != nil || len(targets) == 0 {
			return err
		}
		// The deepest first; lazily, as a mount may be busy for a moment.
		slices.SortFunc(targets, func(a, b string) int { return len(b) - len(a) })
		for _, t := range targets {
			if err := unix.Unmount(t, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmounting %s: %w", t, err)
			}
		}
	}
	return fmt.Errorf("mounts left under %s after 16 passes", dir)
}

// mountsUnder lists the mount points at or under dir, once each.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var targets []string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		if t := fields[4]; (t == dir || strings.HasPrefix(t, dir+"/")) && !seen[t] {
			seen[t] = true
			targets = append(targets, t)
		}
	}
	return targets, nil
}
