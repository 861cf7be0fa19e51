package agent

import (
	"context"
	"os"
	"runtime/debug"
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

// The modes with caches collect at gcPercent, the log shipper alone at Go's default, and GOGC from the
// environment wins over both.
func TestTheGCPercentFollowsTheModeUnlessGOGCIsSet(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	const goDefault = 100
	defer debug.SetGCPercent(debug.SetGCPercent(goDefault))
	for _, mode := range []Mode{ModeNode, ModeProxyOnly, ModeDNSOnly, ModeLogsOnly, ModeStandalone} {
		debug.SetGCPercent(goDefault)
		collectEarlier(mode)
		want := gcPercent
		if mode == ModeLogsOnly {
			want = goDefault
		}
		if got := debug.SetGCPercent(goDefault); got != want {
			t.Errorf("%s mode collects at GOGC %d, want %d", mode, got, want)
		}
	}
	t.Setenv("GOGC", "200")
	collectEarlier(ModeNode)
	if got := debug.SetGCPercent(goDefault); got != goDefault {
		t.Errorf("with GOGC set the node mode changed the GC percent to %d", got)
	}
}
