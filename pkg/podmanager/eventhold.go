package podmanager

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
)

// maxEventHold is the longest an Event waits for the pods that are starting; maxStartHold the longest a pod
// counts as starting (a pod whose syncs keep failing is not starting for ever). A 110-pod burst lasts 13-16
// s on a two-core node: with a hold of 15 s, the first Events went out all at once during its last pods.
const (
	maxEventHold = 30 * time.Second
	maxStartHold = 30 * time.Second
)

// startingPods counts the pods whose first start is under way: a worker's syncs until one succeeds, it
// begins an image pull (the API server is not what a pull waits for) or maxStartHold has passed.
type startingPods struct {
	mu sync.Mutex
	n  int
	// none is closed while n is 0.
	none chan struct{}
}

func newStartingPods() *startingPods {
	none := make(chan struct{})
	close(none)
	return &startingPods{none: none}
}

func (s *startingPods) add() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		s.none = make(chan struct{})
	}
	s.n++
}

func (s *startingPods) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n--; s.n == 0 {
		close(s.none)
	}
}

// noneStarting is closed once no pod is starting (at once, if none is now).
func (s *startingPods) noneStarting() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.none
}

// EventSink makes sink's Events wait while pods are starting, at most maxEventHold from when each was
// recorded: in a burst of pod starts (110 at once on a two-core node) the API server's CPU goes to the
// statuses that say the pods run, and the Events that tell how they came to run follow. The kubelet sends
// them as they come, and a burst's Events (Created, Started: two a pod) then compete with its status
// writes. Nothing is held once ctx ends.
func (m *Manager) EventSink(ctx context.Context, sink record.EventSink) record.EventSink {
	return &heldEvents{ctx: ctx, sink: sink, starting: m.starting}
}

// heldEvents is a record.EventSink; record.EventSink's methods take no context, hence ctx in the struct.
type heldEvents struct {
	ctx      context.Context
	sink     record.EventSink
	starting *startingPods
}

func (h *heldEvents) Create(e *corev1.Event) (*corev1.Event, error) {
	h.hold(e)
	return h.sink.Create(e)
}

func (h *heldEvents) Update(e *corev1.Event) (*corev1.Event, error) {
	h.hold(e)
	return h.sink.Update(e)
}

func (h *heldEvents) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	h.hold(e)
	return h.sink.Patch(e, data)
}

// hold waits until no pod is starting, the Event has waited maxEventHold since it was recorded, or ctx ends.
func (h *heldEvents) hold(e *corev1.Event) {
	wait := time.Until(e.LastTimestamp.Add(maxEventHold))
	if wait <= 0 {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-h.starting.noneStarting():
	case <-timer.C:
	case <-h.ctx.Done():
	}
}
