package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"
)

// Serve listens on addr and serves mux until ctx ends. The listener is opened before Serve returns, so a
// port already in use stops start-up with a clear error instead of failing later in a goroutine.
func Serve(ctx context.Context, addr string, mux http.Handler) (wait func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			klog.ErrorS(err, "HTTP server did not stop cleanly", "address", addr)
		}
	}()
	klog.InfoS("Serving HTTP", "address", ln.Addr().String())
	return func() error { return <-done }, nil
}
