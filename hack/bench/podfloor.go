package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// floorResult is the runtime's pod start-up with at most parallel pods starting at once.
type floorResult struct {
	parallel  int
	latencies []time.Duration
}

// runtimeFloor is the pod start-up of the runtime alone: the benchmark itself asks the runtime over CRI
// for each pod's sandbox and then its container (benchPod's container: the same image and command), with
// no node agent, no API server and no watch, and times each pod from the burst's start to the return of
// its StartContainer. It does so for each bound on the pods starting at once: no node agent can start the
// pods sooner on this runtime than the best of them, whatever it does around the runtime.
func runtimeFloor(ctx context.Context, endpoint string, pods, rounds int, bounds []int) ([]floorResult, error) {
	rt, err := cri.Connect(ctx, endpoint, 2*time.Minute, nil)
	if err != nil {
		return nil, err
	}
	var out []floorResult
	for _, parallel := range bounds {
		res := floorResult{parallel: parallel}
		for r := range rounds {
			lat, err := floorBurst(ctx, rt, fmt.Sprintf("floor-p%d-r%d", parallel, r), pods, parallel)
			if err != nil {
				return nil, err
			}
			res.latencies = append(res.latencies, lat...)
			fmt.Fprintf(os.Stderr, "bench: runtime alone, %d at once, round %d: p50 %s p99 %s\n",
				parallel, r, percentile(lat, 50), percentile(lat, 99))
		}
		out = append(out, res)
	}
	return out, nil
}

// floorBurst starts n pods, at most parallel at once, then removes them.
func floorBurst(ctx context.Context, rt *cri.Runtime, tag string, n, parallel int) ([]time.Duration, error) {
	latencies := make([]time.Duration, n)
	names, uids, sandboxes := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		names[i], uids[i] = fmt.Sprintf("%s-%d", tag, i), uuid.NewString()
	}
	errs := make([]error, n)
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			sandboxes[i], _, errs[i] = startFloorPod(ctx, rt, names[i], uids[i])
			latencies[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i := range n {
		wg.Go(func() {
			if sandboxes[i] != "" {
				if err := rt.StopPodSandbox(ctx, sandboxes[i]); err != nil && errs[i] == nil {
					errs[i] = err
				}
				if err := rt.RemovePodSandbox(ctx, sandboxes[i]); err != nil && errs[i] == nil {
					errs[i] = err
				}
			}
			// The runtime leaves a pod's log directory to the node agent.
			_ = os.RemoveAll(floorLogDir(names[i], uids[i]))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("runtime alone: %w", err)
		}
	}
	return latencies, nil
}

// startFloorPod runs one pod's sandbox and container as a node agent asks for them, with the kubelet's log
// layout and labels, and returns the sandbox's and the container's IDs.
func startFloorPod(ctx context.Context, rt *cri.Runtime, name, uid string) (sandboxID, containerID string, err error) {
	labels := map[string]string{cri.LabelPodName: name, cri.LabelPodNamespace: namespace, cri.LabelPodUID: uid}
	sandbox := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		Hostname:     name,
		LogDirectory: floorLogDir(name, uid),
		Labels:       labels,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD,
				Ipc: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
	id, err := rt.RunPodSandbox(ctx, sandbox, "")
	if err != nil {
		return "", "", fmt.Errorf("RunPodSandbox %s: %w", name, err)
	}
	spec := benchPod(name, "", "bench=floor").Spec.Containers[0]
	container := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: spec.Name},
		Image:    &runtimeapi.ImageSpec{Image: spec.Image},
		Command:  spec.Command,
		LogPath:  spec.Name + "/0.log",
		Labels:   map[string]string{cri.LabelContainerName: spec.Name},
	}
	cid, err := rt.CreateContainer(ctx, id, container, sandbox)
	if err != nil {
		return id, "", fmt.Errorf("CreateContainer %s: %w", name, err)
	}
	if err := rt.StartContainer(ctx, cid); err != nil {
		return id, cid, fmt.Errorf("StartContainer %s: %w", name, err)
	}
	return id, cid, nil
}

// floorLogDir is a pod's log directory in the kubelet's layout.
func floorLogDir(name, uid string) string {
	return filepath.Join("/var/log/pods", namespace+"_"+name+"_"+uid)
}
