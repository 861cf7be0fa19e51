package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
)

// The standalone node's objects: a server pod and its Service, a ConfigMap it mounts, and a client pod.
const (
	standaloneServer = `apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: server
    image: localhost/testserver:local
    env: [{name: GENERATION, value: "%s"}]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {port: 8080, path: /healthz}, periodSeconds: 1}
    volumeMounts: [{name: settings, mountPath: /etc/settings}]
  volumes: [{name: settings, configMap: {name: settings}}]
`
	standaloneService = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {level: debug}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 2
  containers: [{name: client, image: localhost/testserver:local}]
`
)

// nodeagent --standalone, with no API server, in a network namespace and containerd of its own: the pods of
// a manifest directory run, a pod reaches another by its Service's DNS name and ClusterIP, `nodeagent get
// pods` and `describe pod` show them through the local socket, an edited pod is replaced, and a removed one
// is stopped and leaves the Service without endpoints.
func TestStandaloneNodeFromAManifestDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b := newNodeBNamespace(t)
	manifests := filepath.Join(runDir, "standalone-manifests")
	must(t, os.RemoveAll(manifests))
	must(t, os.MkdirAll(manifests, 0o755))
	server := filepath.Join(manifests, "web.yaml")
	writeAtOnce(t, server, strings.Replace(standaloneServer, "%s", "1", 1))
	writeAtOnce(t, filepath.Join(manifests, "service.yaml"), standaloneService)
	must(t, os.RemoveAll(b.root))
	socket := filepath.Join(runDir, "standalone.sock")
	config := filepath.Join(runDir, "nodeagent-standalone.yaml")
	must(t, os.WriteFile(config, []byte("apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\n"+
		"standalone: {enabled: true, manifestDir: "+manifests+"}\npodCIDR: 10.247.0.0/24\n"+
		"hostnameOverride: standalone\ncontainerRuntimeEndpoint: unix://"+nodeBSocket+"\nrootDir: "+b.root+"\n"+
		"podLogsDir: "+filepath.Join(b.root, "pods")+"\ncontainerLogLinksDir: \"\"\nlocalAPISocket: "+socket+"\n"+
		"cniConfDir: /etc/cni/"+nodeBContainerd+"\ncniBridge: nodeagentb\ncgroupRoot: /e2e-nodeb\nimageGCHighThresholdPercent: 100\n"+
		"dns:\n  upstreams: [\"127.0.0.1:53\"]\nlogs:\n  enabled: false\n"), 0o644))
	logFile, err := os.Create(filepath.Join(runDir, "nodeagent-standalone.log"))
	must(t, err)
	defer logFile.Close()
	agent := exec.Command(stack.agentBin, "--config", config, "-v", "2")
	agent.Stdout, agent.Stderr = logFile, logFile
	must(t, netnsutil.Do(b.ns, agent.Start))
	t.Cleanup(func() { b.stop(t, agent, "") })
	tool := func(args ...string) string {
		out, _ := exec.CommandContext(ctx, stack.agentBin, append(args, "--socket", socket)...).CombinedOutput()
		return string(out)
	}
	running := regexp.MustCompile(`(?m)^default\s+(web|client)\s+1/1\s+Running\s`)
	var pods string
	if err := pollUntil(ctx, func() (bool, error) {
		pods = tool("get", "pods")
		return len(running.FindAllString(pods, -1)) == 2, nil
	}); err != nil {
		t.Fatalf("nodeagent get pods never showed web and client Running and ready (log %s):\n%s", logFile.Name(), pods)
	}
	t.Logf("nodeagent get pods:\n%s", pods)
	// From the client pod, by crictl exec inside node B's namespace, where the runtime's streaming server is.
	fetch := func(target string) string {
		var out strings.Builder
		cmd := exec.CommandContext(ctx, "bash", "-c", `id=$(crictl --runtime-endpoint unix://`+nodeBSocket+
			` ps -q --name '^client$' | head -1) && timeout 10 crictl --runtime-endpoint unix://`+nodeBSocket+
			` exec "$id" /testserver --get http://`+target+`/hostname`)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := netnsutil.Do(b.ns, cmd.Start); err != nil {
			return err.Error()
		}
		_ = cmd.Wait()
		return strings.TrimSpace(out.String())
	}
	for _, target := range []string{"web.default.svc.cluster.local", "web"} {
		if err := pollUntil(ctx, func() (bool, error) { return fetch(target) == "got web", nil }); err != nil {
			t.Errorf("from the client pod, http://%s/hostname: %q, want got web", target, fetch(target))
		}
	}

	described := tool("describe", "pod", "default/web")
	uid := regexp.MustCompile(`(?m)^UID:\s+(\S+)`).FindStringSubmatch(described)
	for _, want := range []string{"Phase: Running", "readiness http-get :8080/healthz every 1s: passing",
		"settings: configMap", "default/web: 10.", "nft chain: inet nodeagent service-default/web/tcp/", "web.default.svc.cluster.local"} {
		if !strings.Contains(squashSpaces(described), want) || uid == nil {
			t.Errorf("nodeagent describe pod default/web lacks %q:\n%s", want, described)
		}
	}
	if uid == nil {
		t.FailNow()
	}

	// An edited document replaces the pod; the Service follows it.
	writeAtOnce(t, server, strings.Replace(standaloneServer, "%s", "2", 1))
	if err := pollUntil(ctx, func() (bool, error) {
		now := regexp.MustCompile(`(?m)^UID:\s+(\S+)`).FindStringSubmatch(tool("describe", "pod", "default/web"))
		return now != nil && now[1] != uid[1] && len(running.FindAllString(tool("get", "pods"), -1)) == 2, nil
	}); err != nil {
		t.Fatalf("the edited pod was not replaced by a running one:\n%s", tool("describe", "pod", "default/web"))
	}
	if err := pollUntil(ctx, func() (bool, error) { return fetch("web") == "got web", nil }); err != nil {
		t.Errorf("after the edit, http://web/hostname: %q", fetch("web"))
	}

	// A removed file stops its pod, and the Service has no endpoint left.
	must(t, os.Remove(server))
	if err := pollUntil(ctx, func() (bool, error) {
		return !strings.Contains(tool("get", "pods"), " web ") && fetch("web") != "got web", nil
	}); err != nil {
		t.Errorf("after its file was removed, web is still listed or answers:\n%s", tool("get", "pods"))
	}
	// The rest goes while the agent runs, so that it stops the pods itself.
	must(t, os.Remove(filepath.Join(manifests, "service.yaml")))
	if err := pollUntil(ctx, func() (bool, error) { return !strings.Contains(tool("get", "pods"), "client"), nil }); err != nil {
		t.Errorf("the client pod stayed after its file was removed:\n%s", tool("get", "pods"))
	}
}

// writeAtOnce replaces a file by renaming a hidden one over it, as the standalone mode asks of its users.
func writeAtOnce(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	must(t, os.WriteFile(tmp, []byte(content), 0o644))
	must(t, os.Rename(tmp, path))
}
