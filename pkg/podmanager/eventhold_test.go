package podmanager

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// sentEvents is a record.EventSink that passes on the reason of each Event it is given.
type sentEvents chan string

func (s sentEvents) Create(e *corev1.Event) (*corev1.Event, error) { s <- e.Reason; return e, nil }
func (s sentEvents) Update(e *corev1.Event) (*corev1.Event, error) { s <- e.Reason; return e, nil }
func (s sentEvents) Patch(e *corev1.Event, _ []byte) (*corev1.Event, error) {
	s <- e.Reason
	return e, nil
}

func eventAt(reason string, recorded time.Time) *corev1.Event {
	return &corev1.Event{Reason: reason, LastTimestamp: metav1.NewTime(recorded)}
}

func TestEventsWaitForThePodsThatAreStarting(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	f.runtime.sandboxGate = make(chan struct{})
	m := f.worker.m
	m.runtime, m.cfg.ResyncInterval = f.runtime, time.Second // the gated runtime for the workers dispatch starts
	sent := make(sentEvents, 1)
	sink := m.EventSink(t.Context(), sent)

	// The pod counts as starting from its dispatch until its first sync has run through.
	m.dispatch(t.Context(), pod.UID, types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
	go func() { _, _ = sink.Create(eventAt("Scheduled", time.Now())) }()
	select {
	case reason := <-sent:
		t.Fatalf("%s was sent while the pod's sandbox was being created", reason)
	case <-time.After(200 * time.Millisecond):
	}
	close(f.runtime.sandboxGate)
	select {
	case reason := <-sent:
		if reason != "Scheduled" {
			t.Fatalf("sent %q, want Scheduled", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Event was not sent once the pod had started")
	}
}

func TestAnEventWaitsAtMostMaxEventHold(t *testing.T) {
	starting := newStartingPods()
	starting.add() // a pod that never ends its start
	sent := make(sentEvents, 2)
	sink := &heldEvents{ctx: context.Background(), sink: sent, starting: starting}

	held := make(chan struct{})
	go func() { defer close(held); _, _ = sink.Create(eventAt("Created", time.Now())) }()
	select {
	case reason := <-sent:
		t.Fatalf("%s was sent at once while a pod was starting", reason)
	case <-time.After(200 * time.Millisecond):
	}
	// One recorded maxEventHold ago has waited enough; it goes first, the held one once the start ends.
	if _, err := sink.Patch(eventAt("BackOff", time.Now().Add(-maxEventHold)), nil); err != nil {
		t.Fatal(err)
	}
	if reason := <-sent; reason != "BackOff" {
		t.Fatalf("sent %q, want BackOff", reason)
	}
	starting.done()
	<-held
	if reason := <-sent; reason != "Created" {
		t.Fatalf("sent %q, want Created", reason)
	}
}

func TestNothingIsHeldOnceTheAgentStops(t *testing.T) {
	starting := newStartingPods()
	starting.add()
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(sentEvents, 1)
	sink := &heldEvents{ctx: ctx, sink: sent, starting: starting}
	cancel()
	if _, err := sink.Update(eventAt("Killing", time.Now())); err != nil {
		t.Fatal(err)
	}
	if reason := <-sent; reason != "Killing" {
		t.Fatalf("sent %q, want Killing", reason)
	}
}
