// Package cri owns the connection to the container runtime over CRI (k8s.io/cri-client) and the label keys
// that tie runtime objects to Pods. It knows nothing of the API server; consumers define the subset of the
// runtime they call.
package cri

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"
	internalapi "k8s.io/cri-api/pkg/apis"
	remote "k8s.io/cri-client/pkg"
)

// The kubelet's label keys: containers and sandboxes carry them so any agent (or crictl user) can tell which
// Pod they belong to, and so the agent adopts what is running after a restart.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
	// AnnotationRestartCount is where the kubelet keeps a container's restart count across agent restarts.
	AnnotationRestartCount = "io.kubernetes.container.restartCount"
)

// Runtime holds the two CRI services of one endpoint.
type Runtime struct {
	internalapi.RuntimeService
	internalapi.ImageManagerService
}

// Connect dials the CRI endpoint; it fails if the runtime does not answer within timeout. Every call is
// counted and timed in ops; with nil ops the client does not instrument its calls at all.
func Connect(ctx context.Context, endpoint string, timeout time.Duration, ops *Operations) (*Runtime, error) {
	var tp trace.TracerProvider // nil: the CRI client installs no stats handler
	if ops != nil {
		tp = tracerProvider{ops: ops}
	}
	rs, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(timeout).
		WithTracerProvider(tp).Build(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to CRI runtime service %s: %w", endpoint, err)
	}
	is, err := remote.NewRemoteImageServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(timeout).
		WithTracerProvider(tp).Build(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to CRI image service %s: %w", endpoint, err)
	}
	if _, err := rs.Version(ctx, ""); err != nil {
		return nil, fmt.Errorf("CRI runtime at %s does not answer: %w", endpoint, err)
	}
	return &Runtime{RuntimeService: rs, ImageManagerService: is}, nil
}

// ImageFsPath is the mount point of the filesystem the runtime keeps images on, from CRI ImageFsInfo.
func ImageFsPath(ctx context.Context, images internalapi.ImageManagerService) (string, error) {
	info, err := images.ImageFsInfo(ctx)
	if err != nil {
		return "", fmt.Errorf("ImageFsInfo: %w", err)
	}
	for _, fs := range info.GetImageFilesystems() {
		if p := fs.GetFsId().GetMountpoint(); p != "" {
			return p, nil
		}
	}
	return "", fmt.Errorf("the runtime reports no image filesystem")
}
