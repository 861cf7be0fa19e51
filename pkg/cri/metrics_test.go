package cri

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

func TestOperationTypesAreTheKubelets(t *testing.T) {
	for method, want := range map[string]string{
		"/runtime.v1.RuntimeService/ListPodSandbox":           "list_podsandbox",
		"/runtime.v1.RuntimeService/PodSandboxStatus":         "podsandbox_status",
		"/runtime.v1.RuntimeService/ListContainerStats":       "list_container_stats",
		"/runtime.v1.RuntimeService/UpdateContainerResources": "update_container",
		"/runtime.v1.ImageService/ImageFsInfo":                "image_fs_info",
		"/runtime.v1.RuntimeService/Version":                  "version",
	} {
		if got := operationType(method); got != want {
			t.Errorf("%s: %q, want %q", method, got, want)
		}
	}
}

// fakeRuntimeServer serves the CRI fake over gRPC on a unix socket, as a runtime would.
type fakeRuntimeServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	fake *critest.FakeRuntimeService
}

func (s fakeRuntimeServer) Version(ctx context.Context, r *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return s.fake.Version(ctx, r.Version)
}

type fakeImageServer struct {
	runtimeapi.UnimplementedImageServiceServer
}

func (fakeImageServer) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{}, nil
}

// Every call through Connect's client is counted and timed under the kubelet's operation type; a call the
// runtime refuses counts as an error.
func TestConnectCountsEveryCall(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, fakeRuntimeServer{fake: critest.NewFakeRuntimeService()})
	runtimeapi.RegisterImageServiceServer(srv, fakeImageServer{})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	ops := NewOperations()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := Connect(ctx, "unix://"+sock, 10*time.Second, ops)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Version(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.ListContainers(ctx, nil); err == nil {
		t.Fatal("ListContainers answered; the fake server implements only Version")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(ops.Collectors()...)
	want := `
# HELP kubelet_runtime_operations_errors_total Cumulative number of runtime operation errors by operation type.
# TYPE kubelet_runtime_operations_errors_total counter
kubelet_runtime_operations_errors_total{operation_type="list_containers"} 1
# HELP kubelet_runtime_operations_total Cumulative number of runtime operations by operation type.
# TYPE kubelet_runtime_operations_total counter
kubelet_runtime_operations_total{operation_type="image_fs_info"} 1
kubelet_runtime_operations_total{operation_type="list_containers"} 1
kubelet_runtime_operations_total{operation_type="version"} 3
`
	// Version: the client's validation of the API, Connect's own check, and the test's call; ImageFsInfo:
	// the image client's validation.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kubelet_runtime_operations_total",
		"kubelet_runtime_operations_errors_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(ops.duration); n != 3 {
		t.Errorf("duration series: %d, want one per operation type", n)
	}
}
