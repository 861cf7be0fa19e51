package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

// testCA signs client certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// client is a TLS client certificate for user in groups, signed by the CA.
func (ca *testCA) client(t *testing.T, user string, groups ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: user, Organization: groups},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fixture is a node API on a loopback TLS server with a pod "web" whose container "app" has logged, and a
// fake API server that allows the SubjectAccessReviews of allowedUsers.
type fixture struct {
	ca      *testCA
	server  *httptest.Server
	logDir  string
	reviews []authorizationv1.SubjectAccessReviewSpec
	// tokenReviews counts the TokenReviews asked.
	tokenReviews int
	indexer      cache.Indexer
}

func newFixture(t *testing.T, allowedUsers ...string) *fixture {
	t.Helper()
	return newFixtureWithAccess(t, DefaultAccess(), allowedUsers...)
}

// fixtureToken is the bearer token the fixture's TokenReview authenticates, as the user token-user.
const fixtureToken = "token-of-token-user"

func newFixtureWithAccess(t *testing.T, access Access, allowedUsers ...string) *fixture {
	t.Helper()
	f := &fixture{ca: newTestCA(t), logDir: t.TempDir(),
		indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})}
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		review := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		f.tokenReviews++
		if review.Spec.Token == fixtureToken {
			review.Status = authenticationv1.TokenReviewStatus{Authenticated: true,
				User: authenticationv1.UserInfo{Username: "token-user", Groups: []string{"system:authenticated"}}}
		}
		return true, review, nil
	})
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		f.reviews = append(f.reviews, sar.Spec)
		for _, u := range allowedUsers {
			sar.Status.Allowed = sar.Status.Allowed || sar.Spec.User == u
		}
		return true, sar, nil
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", RestartCount: 1}}}}
	if err := f.indexer.Add(pod); err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	api, err := NewNodeAPI(NodeAPIConfig{NodeName: "node-a", CertDir: t.TempDir(), Hostname: "node-a", ParseLogLine: parseLogLine, Access: access,
		HostIPs: []string{"127.0.0.1"}, ClientCA: f.ca.pem, PodLogsDir: f.logDir,
		RunningPods: func() []*corev1.Pod {
			return []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "localhost/app:v1"}}}}}
		},
		Configz: map[string]any{"maxPods": 110}, Metrics: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}), Registry: registry,
		ResourceMetrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("node_cpu_usage_seconds_total 1\n"))
		}),
		ProbeMetrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("prober_probe_total 1\n"))
		}),
		StatsSummary: func(context.Context) (any, error) {
			return map[string]any{"node": map[string]string{"nodeName": "node-a"}, "pods": []any{}}, nil
		}},
		corelisters.NewPodLister(f.indexer), nil, client)
	if err != nil {
		t.Fatal(err)
	}
	f.server = httptest.NewUnstartedServer(api.Handler())
	f.server.TLS = api.tls
	f.server.StartTLS()
	t.Cleanup(f.server.Close)
	dir := filepath.Join(f.logDir, "default_web_uid-1", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"0.log": "2026-12-04T10:00:00.000000001Z stdout F first run\n",
		"1.log": "2026-12-04T10:00:01.5Z stdout F one\n2026-12-04T10:00:02Z stderr P tw\n" +
			"2026-12-04T10:00:02.1Z stderr F o\n2026-12-04T10:00:03Z stdout F three\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// get requests path with the client certificate (none when cert is nil) and returns status and body.
func (f *fixture) get(t *testing.T, cert *tls.Certificate, path string) (int, string) {
	t.Helper()
	return f.getWithToken(t, cert, "", path)
}

// getWithToken is get with a bearer token (none when empty).
func (f *fixture) getWithToken(t *testing.T, cert *tls.Certificate, token, path string) (int, string) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test's own self-signed server
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, f.server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Strangers are refused: no certificate 401, a certificate of another CA 401 (the handshake fails or it is
// not verified), a known user without permission 403; the API server's kubelet client reads the logs. The
// authorization asked is the kubelet's: get on nodes/node-a/proxy.
func TestNodeAPIAuthenticatesAndAuthorizes(t *testing.T) {
	f := newFixture(t, "kube-apiserver-kubelet-client")
	if code, _ := f.get(t, nil, "/containerLogs/default/web/app"); code != http.StatusUnauthorized {
		t.Errorf("anonymous: %d, want 401", code)
	}
	stranger := newTestCA(t).client(t, "kube-apiserver-kubelet-client")
	cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{stranger}} //nolint:gosec // test
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get(f.server.URL + "/containerLogs/default/web/app")
	if err == nil {
		resp.Body.Close()
		t.Errorf("a certificate of another CA: %d, want the handshake refused", resp.StatusCode)
	}
	someone := f.ca.client(t, "someone")
	if code, body := f.get(t, &someone, "/containerLogs/default/web/app"); code != http.StatusForbidden ||
		!strings.Contains(body, "user=someone, verb=get, resource=nodes, subresource=proxy") {
		t.Errorf("unauthorized user: %d %q, want 403 naming the check", code, body)
	}
	apiserver := f.ca.client(t, "kube-apiserver-kubelet-client", "kubeadm:cluster-admins")
	if code, body := f.get(t, &apiserver, "/containerLogs/default/web/app"); code != http.StatusOK || body != "one\ntwo\nthree\n" {
		t.Errorf("API server: %d %q, want 200 and the current run's log", code, body)
	}
	last := f.reviews[len(f.reviews)-1]
	if ra := last.ResourceAttributes; last.User != "kube-apiserver-kubelet-client" || ra == nil || ra.Verb != "get" ||
		ra.Resource != "nodes" || ra.Subresource != "proxy" || ra.Name != "node-a" || len(last.Groups) != 1 {
		t.Errorf("review %+v", last)
	}
	reviews := len(f.reviews)
	f.get(t, &apiserver, "/containerLogs/default/web/app")
	if len(f.reviews) != reviews {
		t.Error("an allowed decision was asked again instead of cached")
	}
}

// The kubelet's authentication and authorization settings: anonymous requests pass as system:anonymous
// when enabled, bearer tokens are refused when the webhook is off, AlwaysAllow asks no SubjectAccessReview,
// and a cache time of 0 keeps no answer.
func TestNodeAPIAccessSettings(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		f := newFixture(t, "token-user")
		if code, _ := f.getWithToken(t, nil, fixtureToken, "/pods"); code != http.StatusOK {
			t.Errorf("an authenticated, allowed token: %d, want 200", code)
		}
		if code, _ := f.get(t, nil, "/pods"); code != http.StatusUnauthorized {
			t.Errorf("anonymous: %d, want 401", code)
		}
		f.getWithToken(t, nil, fixtureToken, "/pods")
		if f.tokenReviews != 1 || len(f.reviews) != 1 {
			t.Errorf("two requests with one token asked %d TokenReviews and %d SubjectAccessReviews, want 1 and 1 (cached)",
				f.tokenReviews, len(f.reviews))
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		access := DefaultAccess()
		access.Anonymous = true
		f := newFixtureWithAccess(t, access, "system:anonymous")
		if code, _ := f.get(t, nil, "/pods"); code != http.StatusOK {
			t.Errorf("anonymous allowed by authorization: %d, want 200", code)
		}
		if r := f.reviews[0]; r.User != "system:anonymous" || len(r.Groups) != 1 || r.Groups[0] != "system:unauthenticated" {
			t.Errorf("review of %s in %v, want system:anonymous in system:unauthenticated", r.User, r.Groups)
		}
	})
	t.Run("no tokens", func(t *testing.T) {
		access := DefaultAccess()
		access.NoTokens = true
		f := newFixtureWithAccess(t, access, "token-user")
		if code, _ := f.getWithToken(t, nil, fixtureToken, "/pods"); code != http.StatusUnauthorized || f.tokenReviews != 0 {
			t.Errorf("a token with the webhook off: %d after %d TokenReviews, want 401 after none", code, f.tokenReviews)
		}
	})
	t.Run("always allow", func(t *testing.T) {
		access := DefaultAccess()
		access.AlwaysAllow = true
		f := newFixtureWithAccess(t, access)
		someone := f.ca.client(t, "someone")
		if code, _ := f.get(t, &someone, "/pods"); code != http.StatusOK || len(f.reviews) != 0 {
			t.Errorf("AlwaysAllow: %d after %d SubjectAccessReviews, want 200 after none", code, len(f.reviews))
		}
		if code, _ := f.get(t, nil, "/pods"); code != http.StatusUnauthorized {
			t.Errorf("AlwaysAllow, anonymous: %d, want 401 (authentication still applies)", code)
		}
	})
	t.Run("no cache", func(t *testing.T) {
		f := newFixtureWithAccess(t, Access{}, "token-user")
		f.getWithToken(t, nil, fixtureToken, "/pods")
		f.getWithToken(t, nil, fixtureToken, "/pods")
		if f.tokenReviews != 2 || len(f.reviews) != 2 {
			t.Errorf("with cache times of 0, two requests asked %d TokenReviews and %d SubjectAccessReviews, want 2 and 2",
				f.tokenReviews, len(f.reviews))
		}
	})
}

// The log options as the kubelet serves them.
func TestContainerLogsOptions(t *testing.T) {
	f := newFixture(t, "admin")
	admin := f.ca.client(t, "admin")
	for _, tc := range []struct {
		query string
		code  int
		want  string
	}{
		{"", 200, "one\ntwo\nthree\n"},
		{"?previous=true", 200, "first run\n"},
		{"?tailLines=2", 200, "o\nthree\n"},
		{"?tailLines=0", 200, ""},
		{"?timestamps=true&tailLines=1", 200, "2026-12-04T10:00:03Z three\n"},
		{"?limitBytes=6", 200, "one\ntw"},
		{"?sinceTime=2026-12-04T10:00:02Z", 200, "two\nthree\n"},
		{"?tailLines=-1", 400, "tailLines: invalid value \"-1\"\n"},
	} {
		code, body := f.get(t, &admin, "/containerLogs/default/web/app"+tc.query)
		if code != tc.code || body != tc.want {
			t.Errorf("%s: %d %q, want %d %q", tc.query, code, body, tc.code, tc.want)
		}
	}
	if code, body := f.get(t, &admin, "/containerLogs/default/web/nope"); code != 404 ||
		body != "container \"nope\" not found in pod \"web\"\n" {
		t.Errorf("unknown container: %d %q", code, body)
	}
	if code, _ := f.get(t, &admin, "/containerLogs/default/gone/app"); code != 404 {
		t.Errorf("unknown pod: %d, want 404", code)
	}
}

// A follower gets what the container writes, across a rotation of its file, until the container stops.
func TestContainerLogsFollow(t *testing.T) {
	f := newFixture(t, "admin")
	admin := f.ca.client(t, "admin")
	pod, _, _ := f.indexer.GetByKey("default/web")
	running := pod.(*corev1.Pod).DeepCopy()
	running.Status.ContainerStatuses[0].State.Running = &corev1.ContainerStateRunning{}
	if err := f.indexer.Update(running); err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{admin}} //nolint:gosec // test
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 20 * time.Second}
	resp, err := client.Get(f.server.URL + "/containerLogs/default/web/app?follow=true&tailLines=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	expect := func(want string) {
		t.Helper()
		if got, err := lines.ReadString('\n'); got != want {
			t.Fatalf("followed %q (%v), want %q", got, err, want)
		}
	}
	path := filepath.Join(f.logDir, "default_web_uid-1", "app", "1.log")
	expect("three\n")
	appendLine(t, path, "2026-12-04T10:00:04Z stdout F four\n")
	expect("four\n")
	if err := os.Rename(path, path+".20261204-100005"); err != nil { // the pod manager's rotation
		t.Fatal(err)
	}
	appendLine(t, path, "2026-12-04T10:00:05Z stdout F five\n")
	expect("five\n")
	// The runtime's reopen creates the new file before its writer lets go of the old one: a line can still
	// land in the old file, and comes before those of the new one.
	if err := os.Rename(path, path+".20261204-100006"); err != nil {
		t.Fatal(err)
	}
	appendLine(t, path, "")
	appendLine(t, path+".20261204-100006", "2026-12-04T10:00:06Z stdout F six, late in the old file\n")
	expect("six, late in the old file\n")
	appendLine(t, path, "2026-12-04T10:00:07Z stdout F seven\n")
	expect("seven\n")
	stopped := running.DeepCopy()
	stopped.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	if err := f.indexer.Update(stopped); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(lines); err != nil || len(rest) != 0 {
		t.Errorf("after the container stopped: %q, %v; want the stream to end", rest, err)
	}
}

func appendLine(t *testing.T, path, line string) {
	file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer file.Close()
	_, _ = file.WriteString(line)
}

// The kubelet's mapping of requests to authorization checks, with exec and its kin needing create whatever
// the method (a WebSocket exec is a GET).
func TestRequestAttributes(t *testing.T) {
	for _, tc := range []struct{ method, path, verb, subresource string }{
		{"GET", "/containerLogs/ns/p/c", "get", "proxy"},
		{"GET", "/stats/summary", "get", "stats"},
		{"GET", "/metrics/resource", "get", "metrics"},
		{"GET", "/logs/syslog", "get", "log"},
		{"GET", "/pods", "get", "pods"},
		{"GET", "/runningpods/", "get", "pods"},
		{"GET", "/configz", "get", "configz"},
		{"GET", "/healthz", "get", "healthz"},
		{"POST", "/exec/ns/p/c", "create", "proxy"},
		{"GET", "/exec/ns/p/c", "create", "proxy"},
		{"GET", "/portForward/ns/p", "create", "proxy"},
		{"GET", "/attach/ns/p/c", "create", "proxy"},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if verb, sub := requestAttributes(r); verb != tc.verb || sub != tc.subresource {
			t.Errorf("%s %s: %s nodes/%s, want %s nodes/%s", tc.method, tc.path, verb, sub, tc.verb, tc.subresource)
		}
	}
}

// parseLogLine is the agent's parser (pkg/logs) as the node API receives it.
func parseLogLine(raw []byte) (LogLine, error) {
	line, err := logs.ParseLine(raw)
	return LogLine{Time: line.Time, Partial: line.Partial, Message: line.Message}, err
}

// /pods, /runningpods/, /configz and /stats/summary answer as the kubelet's: a v1 PodList of the node's pods
// with their status, a PodList of what the runtime runs (names, UIDs, containers and images), the
// configuration under "kubeletconfig", the stats summary; each needs get on nodes/pods (nodes/configz,
// nodes/stats), which a caller without it is refused.
func TestPodsRunningPodsAndConfigz(t *testing.T) {
	f := newFixture(t, "monitoring")
	reader := f.ca.client(t, "monitoring")
	code, body := f.get(t, &reader, "/pods")
	var list corev1.PodList
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || list.Kind != "PodList" ||
		len(list.Items) != 1 || list.Items[0].Name != "web" || list.Items[0].Status.ContainerStatuses[0].RestartCount != 1 {
		t.Errorf("/pods: %d %s (%v), want the PodList of web with its status", code, body, err)
	}
	code, body = f.get(t, &reader, "/runningpods/")
	list = corev1.PodList{}
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list.Items) != 1 ||
		list.Items[0].UID != "uid-1" || list.Items[0].Spec.Containers[0].Image != "localhost/app:v1" {
		t.Errorf("/runningpods/: %d %s (%v), want web's running container", code, body, err)
	}
	if code, body := f.get(t, &reader, "/configz"); code != http.StatusOK || !strings.Contains(body, `{"kubeletconfig":{"maxPods":110}}`) {
		t.Errorf("/configz: %d %s, want the configuration under kubeletconfig", code, body)
	}
	last := f.reviews[len(f.reviews)-1]
	if last.ResourceAttributes.Subresource != "configz" {
		t.Errorf("/configz was authorized as %+v, want nodes/configz", last.ResourceAttributes)
	}
	if code, body := f.get(t, &reader, "/stats/summary"); code != http.StatusOK || !strings.Contains(body, `"nodeName":"node-a"`) {
		t.Errorf("/stats/summary: %d %s, want the summary as JSON", code, body)
	}
	if last := f.reviews[len(f.reviews)-1]; last.ResourceAttributes.Subresource != "stats" {
		t.Errorf("/stats/summary was authorized as %+v, want nodes/stats", last.ResourceAttributes)
	}
	someone := f.ca.client(t, "someone")
	if code, _ := f.get(t, &someone, "/pods"); code != http.StatusForbidden {
		t.Errorf("/pods for a user without nodes/pods or nodes/proxy: %d, want 403", code)
	}
}

// /metrics serves the agent's registry (nodes/metrics), with the kubelet's kubelet_http_requests_total
// counting every request by method, path bucket and whether it is long-running.
func TestMetricsCountRequests(t *testing.T) {
	f := newFixture(t, "prometheus")
	scraper := f.ca.client(t, "prometheus")
	f.get(t, &scraper, "/pods")
	f.get(t, &scraper, "/pods")
	f.get(t, nil, "/exec/ns/p/c")
	code, body := f.get(t, &scraper, "/metrics")
	for _, want := range []string{
		`kubelet_http_requests_total{long_running="false",method="GET",path="pods",server_type="readwrite"} 2`,
		`kubelet_http_requests_total{long_running="true",method="GET",path="exec",server_type="readwrite"} 1`,
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, lacks %s:\n%s", code, want, body)
		}
	}
	if last := f.reviews[len(f.reviews)-1]; last.ResourceAttributes.Subresource != "metrics" {
		t.Errorf("/metrics was authorized as %+v, want nodes/metrics", last.ResourceAttributes)
	}
	if code, body := f.get(t, &scraper, "/metrics/resource"); code != http.StatusOK || body != "node_cpu_usage_seconds_total 1\n" {
		t.Errorf("/metrics/resource: %d %q, want the resource metrics handler's answer", code, body)
	}
	if code, body := f.get(t, &scraper, "/metrics/probes"); code != http.StatusOK || body != "prober_probe_total 1\n" {
		t.Errorf("/metrics/probes: %d %q, want the probe metrics handler's answer", code, body)
	}
}
