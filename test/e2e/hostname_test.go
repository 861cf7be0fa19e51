package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod whose name is longer than a host name may be (generated names can be) starts with the name cut as the
// kubelet cuts it; a pod with setHostnameAsFQDN sees its fully qualified name. Both see the kubelet's managed
// /etc/hosts with their address and names.
func TestPodHostnames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	script := `echo "hostname=$(hostname)"; cat /etc/hosts; exec sleep 3600`

	long := busyboxPod(strings.Repeat("a", 62)+"-and-more-than-63", 0, script)
	fqdn := busyboxPod("fqdn", 0, script)
	fqdn.Spec.Hostname, fqdn.Spec.Subdomain = "db-0", "db"
	setFQDN := true
	fqdn.Spec.SetHostnameAsFQDN = &setFQDN

	for _, tc := range []struct {
		pod        *corev1.Pod
		want, host string
	}{
		{long, strings.Repeat("a", 62), strings.Repeat("a", 62)},
		{fqdn, "db-0.db." + ns + ".svc.cluster.local", "db-0.db." + ns + ".svc.cluster.local\tdb-0"},
	} {
		created, err := stack.client.CoreV1().Pods(ns).Create(ctx, tc.pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitForLog(ctx, t, logFile(created, "c"), "stdout F hostname="+tc.want+"\n")
		running := waitForPod(ctx, t, ns, created.Name, "Running", podRunningAndReady)
		waitForLog(ctx, t, logFile(created, "c"), "stdout F # Kubernetes-managed hosts file.\n")
		waitForLog(ctx, t, logFile(created, "c"), "stdout F "+running.Status.PodIP+"\t"+tc.host+"\n")
	}
}
