package imagegc

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

type fakeRuntime struct {
	*critest.FakeRuntimeService
	*critest.FakeImageService
}

// newFakeRuntime returns a runtime whose one container runs app:v1, whose images are 100 bytes each and
// which pins pause:3.10 (set the images with SetFakeImages).
func newFakeRuntime(t *testing.T) fakeRuntime {
	t.Helper()
	ctx := context.Background()
	rt := fakeRuntime{critest.NewFakeRuntimeService(), critest.NewFakeImageService()}
	rt.SetFakeImageSize(100)
	rt.SetFakeImagePinned("pause:3.10", true)
	sandbox, err := rt.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Uid: "u"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CreateContainer(ctx, sandbox, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "app:v1"}}, nil); err != nil {
		t.Fatal(err)
	}
	return rt
}

// Status answers as containerd 1.x does, naming its sandbox image in the verbose status.
func (f fakeRuntime) Status(context.Context, bool) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{Info: map[string]string{"config": `{"sandboxImage": "localhost/pause:local"}`}}, nil
}

func (f fakeRuntime) imageNames(t *testing.T) []string {
	t.Helper()
	images, err := f.ListImages(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range images {
		names = append(names, img.Id)
	}
	slices.Sort(names)
	return names
}

// Over the high threshold, the collector removes images no container uses, the oldest first, until the
// filesystem would be at the low threshold; it leaves images in use, the pinned sandbox image and images
// younger than the minimum age.
func TestUnusedImagesGoOldestFirstDownToTheLowThreshold(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime(t)
	// 1,000 bytes of filesystem: 450 used by other things, 100 per image.
	full, others := false, int64(450)
	usage := func(context.Context) (int64, int64, error) {
		if !full {
			return 0, 1000, nil
		}
		return others + 100*int64(len(rt.imageNames(t))), 1000, nil
	}
	m := New(Config{HighThresholdPercent: 85, LowThresholdPercent: 80, MinAge: 2 * time.Minute, Interval: time.Minute}, rt, usage)

	t0 := time.Now()
	rt.SetFakeImages([]string{"app:v1", "older:v1", "pause:3.10"})
	if err := m.collect(ctx, t0); err != nil {
		t.Fatal(err)
	}
	rt.SetFakeImages([]string{"app:v1", "older:v1", "old:v1", "pause:3.10"})
	if err := m.collect(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Ten minutes on, a new image arrives and the filesystem is at 95%: 150 bytes must go.
	full = true
	rt.SetFakeImages([]string{"app:v1", "older:v1", "old:v1", "new:v1", "pause:3.10"})
	if err := m.collect(ctx, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, want := rt.imageNames(t), []string{"app:v1", "new:v1", "pause:3.10"}; !slices.Equal(got, want) {
		t.Errorf("images left %v, want %v", got, want)
	}

	// Other files fill the filesystem to 90%: the image left unused is too young, so collect says it
	// could not free enough.
	others = 600
	err := m.collect(ctx, t0.Add(11*time.Minute))
	if err == nil || !strings.Contains(err.Error(), "only 0 bytes were eligible") {
		t.Errorf("collect with nothing to remove: %v, want an error saying nothing was eligible", err)
	}
	if got, want := rt.imageNames(t), []string{"app:v1", "new:v1", "pause:3.10"}; !slices.Equal(got, want) {
		t.Errorf("images left %v, want %v", got, want)
	}
}

// Below the high threshold nothing is removed, however old and unused.
func TestNothingIsRemovedBelowTheHighThreshold(t *testing.T) {
	ctx := context.Background()
	rt := fakeRuntime{critest.NewFakeRuntimeService(), critest.NewFakeImageService()}
	rt.SetFakeImages([]string{"old:v1"})
	m := New(Config{HighThresholdPercent: 85, LowThresholdPercent: 80, MinAge: time.Minute, Interval: time.Minute}, rt,
		func(context.Context) (int64, int64, error) { return 849, 1000, nil })
	for _, at := range []time.Duration{0, time.Hour} {
		if err := m.collect(ctx, time.Now().Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	if got := rt.imageNames(t); !slices.Equal(got, []string{"old:v1"}) {
		t.Errorf("images left %v, want old:v1 kept at 84.9%% used", got)
	}
}

// For the eviction manager, every image no container uses goes at once, whatever the thresholds; the
// sandbox image (pinned, or named in the runtime's status) and images in use stay.
func TestDeleteUnusedRemovesEveryUnusedImage(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime(t)
	rt.SetFakeImages([]string{"app:v1", "a:v1", "b:v1", "pause:3.10", "localhost/pause:local"})
	m := New(Config{HighThresholdPercent: 85, LowThresholdPercent: 80, Interval: time.Minute}, rt,
		func(context.Context) (int64, int64, error) { return 0, 1000, nil })
	if err := m.DeleteUnused(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := rt.imageNames(t), []string{"app:v1", "localhost/pause:local", "pause:3.10"}; !slices.Equal(got, want) {
		t.Errorf("images left %v, want %v", got, want)
	}

	// imageGCHighThresholdPercent 100 turns removal off, under disk pressure too.
	rt.SetFakeImages([]string{"app:v1", "a:v1"})
	off := New(Config{HighThresholdPercent: 100, LowThresholdPercent: 80, Interval: time.Minute}, rt,
		func(context.Context) (int64, int64, error) { return 1000, 1000, nil })
	if err := off.DeleteUnused(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := rt.imageNames(t), []string{"a:v1", "app:v1"}; !slices.Equal(got, want) {
		t.Errorf("images left with removal off %v, want %v", got, want)
	}
}
