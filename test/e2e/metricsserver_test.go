package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// metricsServerManifest runs metrics-server (localhost/metrics-server, built from its module by hack/test.sh)
// as clusters run it: its ServiceAccount and RBAC, a Deployment-like pod on the node, its Service and the
// v1beta1.metrics.k8s.io APIService. It verifies the node's serving certificate by the node's address against
// the CA in the ConfigMap node-ca, as it does a kubelet's when given --kubelet-certificate-authority; with the
// kubelet's own self-signed certificate (no IP SAN) that fails, which is why clusters run it with
// --kubelet-insecure-tls. The cluster-scoped names carry the namespace (%[1]s).
const metricsServerManifest = `apiVersion: v1
kind: ServiceAccount
metadata: {name: metrics-server, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics-server-%[1]s}
rules:
- {apiGroups: [""], resources: [nodes/metrics], verbs: [get]}
- {apiGroups: [""], resources: [pods, nodes], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: metrics-server-%[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-server-%[1]s}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: %[1]s}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: metrics-server-auth-delegator-%[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: %[1]s}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: metrics-server-auth-reader-%[1]s, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: metrics-server, namespace: %[1]s}]
---
apiVersion: v1
kind: Pod
metadata: {name: metrics-server, namespace: %[1]s, labels: {app: metrics-server}}
spec:
  nodeName: %[2]s
  serviceAccountName: metrics-server
  containers:
  - name: metrics-server
    image: localhost/metrics-server:local
    imagePullPolicy: Never
    args: [--cert-dir=/tmp, --secure-port=4443, --kubelet-preferred-address-types=InternalIP,
      --kubelet-use-node-status-port, --metric-resolution=15s, --kubelet-certificate-authority=/node-ca/ca.crt]
    ports: [{containerPort: 4443, name: https}]
    volumeMounts: [{name: node-ca, mountPath: /node-ca}]
  volumes: [{name: node-ca, configMap: {name: node-ca}}]
---
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: %[1]s}
spec:
  selector: {app: metrics-server}
  ports: [{port: 443, targetPort: https}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  service: {name: metrics-server, namespace: %[1]s}
  group: metrics.k8s.io
  version: v1beta1
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
`

// kubectl top works: metrics-server, run as a pod with its Service and APIService on the aggregation layer,
// scrapes the node's /metrics/resource (verifying its certificate by IP address) and kubectl top node and
// kubectl top pod show the node's and the pods' CPU and memory.
func TestKubectlTopThroughMetricsServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	node, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A pod first: the node's bridge, which the relay below listens on, comes with it.
	startBusybox(ctx, t, ns, "measured", "exec sleep 3600")
	// metrics-server reaches the API server as an in-cluster client, through the kubernetes Service.
	kubernetesServiceOnTheBridge(ctx, t, netip.MustParsePrefix(node.Spec.PodCIDR).Addr().Next())
	nodeCA, err := os.ReadFile(filepath.Join(runDir, "root/pki/kubelet.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if out, code := kubectl(ctx, t, ns, "", "create", "configmap", "node-ca", "--from-literal=ca.crt="+string(nodeCA)); code != 0 {
		t.Fatalf("kubectl create configmap: %s", out)
	}
	manifest := fmt.Sprintf(metricsServerManifest, ns, nodeName)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		kubectl(ctx, t, "", manifest, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	})
	if out, code := kubectl(ctx, t, "", manifest, "apply", "-f", "-"); code != 0 {
		t.Fatalf("kubectl apply of metrics-server: %s", out)
	}
	waitForPod(ctx, t, ns, "metrics-server", "Running", podRunningAndReady)

	// The node's row: its name, CPU in millicores and a percentage, memory in Mi and a percentage.
	nodeRow := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(nodeName) + `\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%`)
	var out string
	polling, stopPolling := context.WithTimeout(ctx, 90*time.Second) // metrics-server needs two scrapes for a CPU rate
	defer stopPolling()
	if err := pollUntil(polling, func() (bool, error) {
		out, _ = kubectl(ctx, t, ns, "", "top", "node", nodeName)
		return nodeRow.MatchString(out), nil
	}); err != nil {
		log, _ := kubectl(ctx, t, ns, "", "logs", "metrics-server", "--tail=20")
		t.Fatalf("kubectl top node printed %q, want %s's CPU and memory; metrics-server's log:\n%s", out, nodeName, log)
	}
	t.Logf("kubectl top node:\n%s", out)
	podRow := regexp.MustCompile(`(?m)^measured\s+\d+m\s+\d+(\.\d+)?[KMG]i`)
	if err := pollUntil(ctx, func() (bool, error) {
		out, _ = kubectl(ctx, t, ns, "", "top", "pod")
		return podRow.MatchString(out) && strings.Contains(out, "metrics-server"), nil
	}); err != nil {
		t.Fatalf("kubectl top pod printed %q, want the pods measured and metrics-server with their CPU and memory", out)
	}
	t.Logf("kubectl top pod:\n%s", out)
}
