package podmanager

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runHook runs a postStart or preStop handler against the container, within ctx's deadline.
func (w *worker) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, containerID string,
	h *corev1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		timeout := 30 * time.Second
		if deadline, ok := ctx.Deadline(); ok {
			timeout = time.Until(deadline)
		}
		return w.execProbe(ctx, containerID, h.Exec.Command, timeout)
	case h.HTTPGet != nil:
		return w.httpHook(ctx, pod, c, h.HTTPGet)
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("lifecycle handler has no exec, httpGet or sleep action")
}

// httpHook is the kubelet's httpGet hook: to the pod's address as the runtime has it (the posted status may
// not have it yet), any certificate accepted; only a failed request fails the hook, whatever the status code.
// An HTTPS hook answered in plain HTTP is retried over HTTP, with a LifecycleHTTPFallback event.
func (w *worker) httpHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, get *corev1.HTTPGetAction) error {
	var podIP string
	if get.Host == "" {
		sandboxes, err := w.sandboxes(ctx)
		if err != nil {
			return err
		}
		if len(sandboxes) == 0 {
			return fmt.Errorf("the pod has no sandbox")
		}
		ips, err := w.podIPs(ctx, pod, &sandboxes[0].Id)
		if err != nil {
			return err
		}
		if len(ips) == 0 {
			return fmt.Errorf("failed to find the pod's address for the hook")
		}
		podIP = ips[0]
	}
	req, err := httpGetRequest(ctx, get, probeTarget{podIP: podIP, ports: c.Ports}, "lifecycle")
	if err != nil {
		return err
	}
	resp, err := probeHTTPClient.Do(req)
	if err == nil {
		return drain(resp)
	}
	if !strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return err
	}
	plain := req.Clone(ctx)
	plain.URL.Scheme = "http"
	plain.Header.Del("Authorization")
	resp, fallbackErr := probeHTTPClient.Do(plain)
	if fallbackErr != nil {
		return err
	}
	w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "LifecycleHTTPFallback",
		"request to HTTPS lifecycle hook %s got HTTP response, retry with HTTP succeeded", req.URL.Host)
	return drain(resp)
}

func drain(resp *http.Response) error {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	return resp.Body.Close()
}

// specOf finds the spec of a container (app or init) by name.
func specOf(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// preStop runs the container's preStop hook, if any, within the grace period and returns the grace that
// is left for SIGTERM before SIGKILL (at least minimumGrace), as the kubelet does.
func (w *worker) preStop(ctx context.Context, pod *corev1.Pod, name, containerID string, grace int64) int64 {
	if pod == nil {
		return grace
	}
	c := specOf(pod, name)
	if c == nil || c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return grace
	}
	started := time.Now()
	hookCtx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second)
	defer cancel()
	if err := w.runHook(hookCtx, pod, c, containerID, c.Lifecycle.PreStop); err != nil {
		w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedPreStopHook",
			"PreStopHook failed for container %s: %v", name, err)
	}
	return max(grace-int64(time.Since(started).Seconds()), minimumGrace)
}
