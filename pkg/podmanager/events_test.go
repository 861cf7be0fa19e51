package podmanager

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventRuntime streams the given events once, then answers like a runtime without container events.
type eventRuntime struct {
	fakeRuntime
	events []*runtimeapi.ContainerEventResponse
	calls  int
}

func (e *eventRuntime) GetContainerEvents(_ context.Context, ch chan *runtimeapi.ContainerEventResponse,
	connected func(runtimeapi.RuntimeService_GetContainerEventsClient)) error {
	e.calls++
	connected(nil)
	for _, ev := range e.events {
		ch <- ev
	}
	return status.Error(codes.Unimplemented, "unknown method GetContainerEvents")
}

func TestContainerEventsPokeThePodsWorkerAndUnimplementedFallsBackToRelisting(t *testing.T) {
	f := newFixture(t, testPod("img"))
	runtime := &eventRuntime{fakeRuntime: f.runtime, events: []*runtimeapi.ContainerEventResponse{
		{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
			PodSandboxStatus: &runtimeapi.PodSandboxStatus{Metadata: &runtimeapi.PodSandboxMetadata{Uid: "uid-1"}}},
		{ContainerId: "c9", PodSandboxStatus: &runtimeapi.PodSandboxStatus{Metadata: &runtimeapi.PodSandboxMetadata{Uid: "not-ours"}}},
	}}
	m := New(Config{}, runtime, nil, f.client, Sources{}, nil)
	w := newWorker(m, "uid-1", keyOf(testPod("img")))
	m.workers["uid-1"] = w

	m.runContainerEvents(context.Background()) // returns: the runtime has no event stream after all
	select {
	case <-w.updates:
	default:
		t.Error("the stopped container's pod worker was not poked")
	}
	if runtime.calls != 1 {
		t.Errorf("%d stream attempts, want 1: Unimplemented means relist, not retry", runtime.calls)
	}
}
