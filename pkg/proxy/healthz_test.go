package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/pkg/source"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// probe GETs path from the proxy's health handler and returns the code and the decoded body.
func probe(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s answered %q: %v", path, rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s Content-Type %q, want application/json", path, ct)
	}
	return rec.Code, body
}

func TestHealthzFailsWhenAChangeWaitsTooLongOrTheNodeIsGoing(t *testing.T) {
	p, err := New(Config{NodeName: testNode}, nil, source.NewFactoryServices(informers.NewSharedInformerFactory(fake.NewClientset(), 0)))
	must(t, err)
	clock := time.Now() // New queued the first sync at the real time
	p.health.now = func() time.Time { return clock }
	node := &corev1.Node{}
	h := p.HealthHandler(func() *corev1.Node { return node })

	p.health.synced(clock)
	if code, body := probe(t, h, "/healthz"); code != http.StatusOK || body["nodeEligible"] != true {
		t.Errorf("after a sync /healthz = %d %v, want 200 with nodeEligible true", code, body)
	}
	// A change waits: healthy for healthTimeout, then not, until a sync writes it.
	p.health.queued()
	clock = clock.Add(healthTimeout)
	if code, _ := probe(t, h, "/livez"); code != http.StatusOK {
		t.Errorf("a change pending for %v: /livez = %d, want 200", healthTimeout, code)
	}
	clock = clock.Add(time.Second)
	if code, _ := probe(t, h, "/livez"); code != http.StatusServiceUnavailable {
		t.Errorf("a change pending for longer than %v: /livez = %d, want 503", healthTimeout, code)
	}
	p.health.synced(clock)
	if code, body := probe(t, h, "/healthz"); code != http.StatusOK || body["lastUpdated"] != clock.String() {
		t.Errorf("after the sync /healthz = %d %v, want 200 with lastUpdated %s", code, body, clock)
	}
	// The cluster autoscaler is removing the node: /healthz drains it, /livez still says the proxy is fine.
	node.Spec.Taints = []corev1.Taint{{Key: toBeDeletedTaint, Effect: corev1.TaintEffectNoSchedule}}
	if code, body := probe(t, h, "/healthz"); code != http.StatusServiceUnavailable || body["nodeEligible"] != false {
		t.Errorf("node being deleted: /healthz = %d %v, want 503 with nodeEligible false", code, body)
	}
	if code, body := probe(t, h, "/livez"); code != http.StatusOK || body["nodeEligible"] != nil {
		t.Errorf("node being deleted: /livez = %d %v, want 200 without nodeEligible", code, body)
	}
}
