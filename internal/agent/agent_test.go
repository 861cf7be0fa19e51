package agent

import (
	"context"
	"sync"
	"testing"

	"github.com/nodeagent/nodeagent/internal/testutil"
	"github.com/nodeagent/nodeagent/pkg/config"
)

// kubeAPIQPS and kubeAPIBurst bound the agent's client, eventRecordQPS and eventBurst its Events' client;
// a QPS of 0 bounds nothing.
func TestTheClientsTakeTheirRatesFromTheConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Kubeconfig = testutil.WriteFile(t, "kubeconfig", testutil.ValidKubeconfig)
	cfg.KubeAPIQPS, cfg.KubeAPIBurst = 20, 40
	cfg.EventRecordQPS = 0
	completed, errs := Complete(cfg, ModeNode)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	s := &shared{cfg: completed, version: "test"}
	var wg sync.WaitGroup
	defer wg.Wait()
	client, events, err := s.connect(context.Background(), &wg)
	if err != nil {
		t.Fatal(err)
	}
	limiter := client.CoreV1().RESTClient().GetRateLimiter()
	if limiter == nil || limiter.QPS() != 20 {
		t.Errorf("the client's rate limiter %v, want 20 requests a second", limiter)
	}
	if limiter := events.CoreV1().RESTClient().GetRateLimiter(); limiter != nil {
		t.Errorf("the Events client has a rate limiter of %v a second with eventRecordQPS 0, want none", limiter.QPS())
	}
}
