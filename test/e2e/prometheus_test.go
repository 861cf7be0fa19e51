package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeletNameLints are what promtool says of the node's series whose names break Prometheus's naming rules:
// they are the kubelet's names, which dashboards and alerts use, so they stay.
var kubeletNameLints = []string{
	`kubelet_evictions counter metrics should have "_total" suffix`,
	`kubelet_server_expiration_renew_errors counter metrics should have "_total" suffix`,
}

// Every path of the node API that Prometheus scrapes passes promtool's checks.
func TestNodeMetricsPassPromtool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, path := range []string{"metrics", "metrics/resource", "metrics/probes"} {
		checkWithPromtool(ctx, t, path)
	}
}

// checkWithPromtool runs promtool check metrics on a path of the node API, read through the API server.
func checkWithPromtool(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	raw, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", path).DoRaw(ctx)
	if err != nil {
		t.Fatalf("/%s through the API server: %v", path, err)
	}
	check := exec.CommandContext(ctx, "promtool", "check", "metrics")
	check.Stdin = strings.NewReader(string(raw))
	out, err := check.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !slices.Contains(kubeletNameLints, line) {
			problems = append(problems, line)
		}
	}
	// promtool exits 3 for naming problems alone, which the kubelet's names are.
	var exit *exec.ExitError
	if len(problems) > 0 || (err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3)) {
		t.Errorf("promtool check metrics on /%s: %v\n%s", path, err, strings.Join(problems, "\n"))
	}
}

// Prometheus scrapes the node as deploy/prometheus sets it up: over HTTPS with a ServiceAccount token that
// RBAC allows nodes/metrics, with the job and metrics_path labels kubernetes-mixin selects on and its
// kubelet rules loaded. The kubelet's series and metrics-server's come back through Prometheus's API, and
// the PLEG recording rule joins with kubelet_node_name.
func TestPrometheusScrapesTheNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "scraped", "exec sleep 3600")
	token := nodeAccessToken(ctx, t, ns, "prometheus", "metrics", "get") // as deploy/prometheus/rbac.yaml

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The scrape jobs of deploy/prometheus/prometheus.yml with the node as a static target on loopback
	// (the test's Prometheus runs outside the cluster and has no node discovery), verifying the node's
	// self-signed certificate by its host name.
	var jobs strings.Builder
	for _, path := range []string{"/metrics", "/metrics/resource", "/metrics/probes"} {
		fmt.Fprintf(&jobs, `  - job_name: kubelet%s
    metrics_path: %s
    scheme: https
    authorization: {credentials_file: %s}
    tls_config: {ca_file: %s, server_name: %s}
    static_configs: [{targets: ["127.0.0.1:10250"]}]
    relabel_configs:
      - {target_label: job, replacement: kubelet}
      - {source_labels: [__metrics_path__], target_label: metrics_path}
`, strings.ReplaceAll(path, "/", "-"), path, tokenFile, filepath.Join(runDir, "root/pki/kubelet.crt"), nodeName)
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte("global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"+
		"rule_files: ["+filepath.Join(repo, "deploy/prometheus/kubelet-rules.yaml")+"]\n"+
		"scrape_configs:\n"+jobs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	api := startPrometheus(t, config, dir)

	// Each query with the number of series it must give: the three scrape targets up, then one series each.
	for _, q := range []struct {
		query string
		want  int
	}{
		{`up{job="kubelet"} == 1`, 3},
		{`kubelet_running_pods{job="kubelet", metrics_path="/metrics"} >= 1`, 1},
		{`kubelet_node_name{node="` + nodeName + `"}`, 1},
		{`container_cpu_usage_seconds_total{metrics_path="/metrics/resource", namespace="` + ns + `", pod="scraped", container="c"}`, 1},
		{`node_quantile:kubelet_pleg_relist_duration_seconds:histogram_quantile{quantile="0.99", node="` + nodeName + `"}`, 1},
	} {
		var last string
		err := pollUntil(ctx, func() (bool, error) {
			var n int
			n, last = promQuery(ctx, api, q.query)
			return n == q.want, nil
		})
		if err != nil {
			t.Errorf("Prometheus has not %d series for %s (last answer: %s)", q.want, q.query, last)
		}
	}
}

// nodeAccessToken is a token of a new ServiceAccount sa in ns whose only rights are verbs on
// nodes/<subresource> (none when verbs is empty), as a ClusterRole grants them; the test's end removes the
// role and its binding.
func nodeAccessToken(ctx context.Context, t *testing.T, ns, sa, subresource string, verbs ...string) string {
	t.Helper()
	if _, err := stack.client.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(verbs) > 0 {
		rbac := stack.client.RbacV1()
		name := sa + "-" + ns
		if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/" + subresource}, Verbs: verbs}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	tr, err := stack.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// startPrometheus runs Prometheus with config on a free loopback port, its data in dir, until the test ends,
// and returns the address of its HTTP API once it answers.
func startPrometheus(t *testing.T, config, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	log, err := os.Create(filepath.Join(runDir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("prometheus", "--config.file", config, "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := "http://" + addr
	if err := pollUntil(ctx, func() (bool, error) {
		resp, err := http.Get(api + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("prometheus did not get ready (see %s/prometheus.log): %v", runDir, err)
	}
	return api
}

// promQuery runs an instant query and returns how many series it gave, and the answer as text.
func promQuery(ctx context.Context, api, query string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var answer struct {
		Status string `json:"status"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return 0, err.Error()
	}
	return len(answer.Data.Result), fmt.Sprintf("%s %s %d series", answer.Status, answer.Error, len(answer.Data.Result))
}
