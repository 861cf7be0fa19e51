package podmanager

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// maxEventsBackoff bounds the wait before reconnecting a broken container events stream.
const maxEventsBackoff = 30 * time.Second

// runContainerEvents turns the runtime's container events (CRI GetContainerEvents) into worker pokes, so a
// container that starts, exits or is removed is seen at once. A runtime without them (containerd 1.6
// answers Unimplemented) leaves it to the runtime cache's relist every second, as the kubelet's generic
// PLEG does. It returns when ctx ends or the runtime has no events.
func (m *Manager) runContainerEvents(ctx context.Context) {
	events := make(chan *runtimeapi.ContainerEventResponse, 64)
	done := make(chan struct{})
	go func() {
		// Owned here: this function reads events until the stream's goroutine is done, so it never blocks.
		defer close(done)
		m.streamContainerEvents(ctx, events)
	}()
	for {
		select {
		case ev := <-events:
			m.handleContainerEvent(ev)
		case <-done:
			// The stream has ended: what it buffered still counts.
			for {
				select {
				case ev := <-events:
					m.handleContainerEvent(ev)
				default:
					return
				}
			}
		}
	}
}

// handleContainerEvent wakes the worker of the event's pod, which reads the pod's state from the runtime
// rather than wait for the next relist.
func (m *Manager) handleContainerEvent(ev *runtimeapi.ContainerEventResponse) {
	uid := ev.GetPodSandboxStatus().GetMetadata().GetUid()
	klog.V(2).InfoS("Container event", "type", ev.GetContainerEventType(), "containerID", ev.GetContainerId(), "podUID", uid)
	m.rtcache.invalidate(types.UID(uid))
	m.pokeWorker(types.UID(uid))
}

// streamContainerEvents keeps a container events stream open, reconnecting with back-off, until ctx ends
// or the runtime says it has no such stream.
func (m *Manager) streamContainerEvents(ctx context.Context, events chan *runtimeapi.ContainerEventResponse) {
	backoff := time.Second
	for {
		connected := false
		err := m.runtime.GetContainerEvents(ctx, events, func(runtimeapi.RuntimeService_GetContainerEventsClient) {
			connected = true
			klog.InfoS("Receiving container events from the runtime")
		})
		switch {
		case ctx.Err() != nil:
			return
		case status.Code(err) == codes.Unimplemented:
			klog.InfoS("The container runtime offers no container events; changes are seen by the relist",
				"interval", relistInterval)
			return
		case connected:
			backoff = time.Second // the stream worked: start the back-off over
		}
		klog.ErrorS(err, "Container events stream ended; reconnecting", "after", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxEventsBackoff)
	}
}

// pokeWorker tells the worker of the pod with uid, if there is one, to sync now.
func (m *Manager) pokeWorker(uid types.UID) {
	m.mu.Lock()
	w, ok := m.workers[uid]
	m.mu.Unlock()
	if ok {
		w.poke()
	}
}
