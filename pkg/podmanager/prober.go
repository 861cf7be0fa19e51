package podmanager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeKind is which of a container's probes a prober runs.
type probeKind string

const (
	livenessProbe  probeKind = "Liveness"
	readinessProbe probeKind = "Readiness"
	startupProbe   probeKind = "Startup"
)

// probeResult is a prober's current verdict after its thresholds.
type probeResult int32

const (
	probeUnknown probeResult = iota // not probed yet
	probeSuccess
	probeFailure
)

// prober runs one probe of one container (by container ID) on its own goroutine until stopped.
type prober struct {
	kind        probeKind
	containerID string
	probe       *corev1.Probe
	result      atomic.Int32
	record      probeRecord
	cancel      context.CancelFunc
	done        chan struct{}
}

// probeTarget is what a probe needs to reach its container.
type probeTarget struct {
	podIP       string
	containerID string
	ports       []corev1.ContainerPort
	// exec runs a command in the container with a timeout and returns its exit status error.
	exec func(ctx context.Context, containerID string, cmd []string, timeout time.Duration) error
}

// probeRecord counts one probe's outcome and how long it took (prober_probe_total, _duration_seconds).
type probeRecord func(success bool, took time.Duration)

// probeNotice is what a prober tells its worker: an event to record (reason Unhealthy or ProbeWarning, with
// its message), or with an empty reason that its verdict changed.
type probeNotice func(kind probeKind, reason, msg string)

func startProber(kind probeKind, probe *corev1.Probe, target probeTarget, onChange probeNotice, record probeRecord) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{kind: kind, containerID: target.containerID, probe: probe, record: record, cancel: cancel, done: make(chan struct{})}
	go p.run(ctx, target, onChange)
	return p
}

func (p *prober) stop() {
	p.cancel()
	<-p.done
}

func (p *prober) current() probeResult { return probeResult(p.result.Load()) }

func (p *prober) run(ctx context.Context, target probeTarget, onChange probeNotice) {
	defer close(p.done)
	period := time.Duration(max(p.probe.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.probe.TimeoutSeconds, 1)) * time.Second
	successThreshold, failureThreshold := max(p.probe.SuccessThreshold, 1), max(p.probe.FailureThreshold, 1)
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(p.probe.InitialDelaySeconds) * time.Second):
	}
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	var successes, failures int32
	for {
		began := time.Now()
		err := runProbe(ctx, p.probe, target, timeout)
		if ctx.Err() != nil {
			return
		}
		var warned errProbeWarning
		p.record(err == nil || errors.As(err, &warned), time.Since(began))
		next := p.current()
		var warning errProbeWarning
		if errors.As(err, &warning) {
			onChange(p.kind, "ProbeWarning", fmt.Sprintf("%s probe warning: %s", p.kind, warning.msg))
			err = nil
		}
		if err == nil {
			successes, failures = successes+1, 0
			if successes >= successThreshold {
				next = probeSuccess
			}
		} else {
			successes, failures = 0, failures+1
			onChange(p.kind, "Unhealthy", fmt.Sprintf("%s probe failed: %v", p.kind, err))
			if failures >= failureThreshold {
				next = probeFailure
			}
		}
		if prev := probeResult(p.result.Swap(int32(next))); prev != next {
			onChange(p.kind, "", "")
		}
		if p.kind == startupProbe && next == probeSuccess {
			return // a startup probe stops once it succeeded
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// runProbe runs one check and returns why it failed, or nil.
func runProbe(ctx context.Context, probe *corev1.Probe, target probeTarget, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := probe.ProbeHandler
	switch {
	case h.Exec != nil:
		return target.exec(ctx, target.containerID, h.Exec.Command, timeout)
	case h.HTTPGet != nil:
		return probeHTTP(ctx, h.HTTPGet, target)
	case h.TCPSocket != nil:
		port, err := resolvePort(h.TCPSocket.Port, target.ports)
		if err != nil {
			return err
		}
		host := h.TCPSocket.Host
		if host == "" {
			host = target.podIP
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case h.GRPC != nil:
		return probeGRPC(ctx, h.GRPC, target)
	}
	return fmt.Errorf("probe has no handler")
}

// errProbeWarning wraps what a probe that passed wants said: an HTTP probe whose redirect to another host was
// not followed passes with a ProbeWarning event, as in the kubelet.
type errProbeWarning struct{ msg string }

func (e errProbeWarning) Error() string { return e.msg }

// probeHTTP is the kubelet's HTTP probe: any certificate is accepted, redirects are followed on the same host
// (up to 10) and end the probe otherwise; 2xx passes, an unfollowed 3xx passes with a warning, the rest fails.
func probeHTTP(ctx context.Context, get *corev1.HTTPGetAction, target probeTarget) error {
	req, err := httpGetRequest(ctx, get, target, "probe")
	if err != nil {
		return err
	}
	resp, err := probeHTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	switch {
	case resp.StatusCode < 200 || resp.StatusCode >= 400:
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	case resp.StatusCode >= 300:
		return errProbeWarning{fmt.Sprintf("Probe terminated redirects, Response body: %s", body)}
	}
	return nil
}

// maxProbeBody is how much of a response the kubelet reads (10 KiB).
const maxProbeBody = 10 << 10

// httpGetRequest is the kubelet's request of an httpGet probe or hook (purpose "probe" or "lifecycle"): to the
// pod's address unless the action names a host; the action's headers, where a Host header sets the request's
// host, and User-Agent kube-<purpose>/1.37 and Accept */* unless the action sets them (an empty Accept is
// dropped).
func httpGetRequest(ctx context.Context, get *corev1.HTTPGetAction, target probeTarget, purpose string) (*http.Request, error) {
	port, err := resolvePort(get.Port, target.ports)
	if err != nil {
		return nil, err
	}
	host, scheme := get.Host, strings.ToLower(string(get.Scheme))
	if host == "" {
		host = target.podIP
	}
	if host == "" {
		return nil, fmt.Errorf("the pod has no IP address yet")
	}
	if scheme == "" {
		scheme = "http"
	}
	u, err := url.Parse(get.Path)
	if err != nil {
		u = &url.URL{Path: get.Path} // too late to refuse a bad path: pass it on, as the kubelet does
	}
	u.Scheme, u.Host = scheme, net.JoinHostPort(host, strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	headers := http.Header{}
	for _, h := range get.HTTPHeaders {
		headers.Add(h.Name, h.Value)
	}
	if _, ok := headers["User-Agent"]; !ok {
		headers.Set("User-Agent", "kube-"+purpose+"/1.37")
	}
	if _, ok := headers["Accept"]; !ok {
		headers.Set("Accept", "*/*")
	} else if headers.Get("Accept") == "" {
		headers.Del("Accept")
	}
	req.Header, req.Host = headers, headers.Get("Host")
	return req, nil
}

// probeHTTPClient is shared by probes and hooks. The kubelet does not verify the serving certificates of the
// pods it probes (they are rarely signed for the pod's address), and does not follow redirects off the host.
var probeHTTPClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true, Proxy: nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // as the kubelet
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Hostname() != via[0].URL.Hostname() {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	},
}

func probeGRPC(ctx context.Context, g *corev1.GRPCAction, target probeTarget) error {
	conn, err := grpc.NewClient(net.JoinHostPort(target.podIP, strconv.Itoa(int(g.Port))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("gRPC health check: %w", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("service unhealthy (responded with %q)", resp.Status)
	}
	return nil
}

// resolvePort turns a probe port (number or container port name) into a number.
func resolvePort(port intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q is not a named port of the container", port.StrVal)
}
