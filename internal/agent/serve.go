package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"

	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/pkg/metrics"
	"github.com/nodeagent/nodeagent/pkg/server"
)

// serveEndpoints opens /metrics (and /debug/pprof/ with enableProfiling), the node's /healthz (127.0.0.1:10248) and, with a proxy, its /healthz and
// /livez, as goroutines of wg. The ports are opened before anything runs, so one in use stops start-up with
// a clear error.
func (s *shared) serveEndpoints(ctx context.Context, wg *sync.WaitGroup, proxier *proxyComponent) error {
	cfg := s.cfg.cfg
	if cfg.MetricsBindAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(s.registry))
		if cfg.EnableProfiling {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		if err := serveHTTP(ctx, wg, cfg.MetricsBindAddress, mux); err != nil {
			return fmt.Errorf("metricsBindAddress: %w", err)
		}
	}
	if s.cfg.mode == ModeNode && cfg.HealthzPort != 0 {
		// The kubelet's: unauthenticated, on loopback by default, for local probes (systemd, kubeadm).
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			if err := s.healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		addr := net.JoinHostPort(cfg.HealthzBindAddress, strconv.Itoa(int(cfg.HealthzPort)))
		if err := serveHTTP(ctx, wg, addr, mux); err != nil {
			return fmt.Errorf("healthzPort: %w", err)
		}
	}
	if proxier != nil && cfg.Proxy.HealthzBindAddress != "" {
		if err := serveHTTP(ctx, wg, cfg.Proxy.HealthzBindAddress, proxier.proxier.HealthHandler(s.src.Node)); err != nil {
			return fmt.Errorf("proxy.healthzBindAddress: %w", err)
		}
	}
	return nil
}

// serveHTTP serves handler on addr until ctx ends, as one of wg's goroutines.
func serveHTTP(ctx context.Context, wg *sync.WaitGroup, addr string, handler http.Handler) error {
	wait, err := server.Serve(ctx, addr, handler)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := wait(); err != nil {
			klog.ErrorS(err, "HTTP server stopped", "address", addr)
		}
	}()
	return nil
}
