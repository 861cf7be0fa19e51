package node

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

func readyOf(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// After an API server outage the node lifecycle controller has set Ready=Unknown; nothing changed on the
// node itself, yet its next status update must say Ready again (the kubelet compares with the Node as the
// API server holds it), not its periodic report minutes later.
func TestStatusUpdateRestoresConditionsTheControllerOverwrote(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	getNode := func() *corev1.Node {
		n, err := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return n
	}
	c := NewController(Config{Name: "node-a", NodeIP: "192.0.2.10", MaxPods: 110, RootDir: t.TempDir(), KubeletPort: 10250,
		StatusUpdateInterval: 10 * time.Second, StatusReportInterval: 5 * time.Minute, CNIConfDir: t.TempDir()},
		client, critest.NewFakeRuntimeService(), getNode)
	if err := c.syncStatus(ctx); err != nil { // registers
		t.Fatal(err)
	}
	if got := readyOf(getNode()); got.Status != corev1.ConditionTrue {
		t.Fatalf("after registration Ready = %+v, want True", got)
	}
	n := getNode()
	for i := range n.Status.Conditions {
		n.Status.Conditions[i].Status, n.Status.Conditions[i].Reason = corev1.ConditionUnknown, "NodeStatusUnknown"
		n.Status.Conditions[i].Message = "Kubelet stopped posting node status."
	}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.syncStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readyOf(getNode()); got.Status != corev1.ConditionTrue || got.Reason != "KubeletReady" {
		t.Errorf("after the next update Ready = %+v, want True again", got)
	}
	client.ClearActions()
	if err := c.syncStatus(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			t.Errorf("an update with nothing changed and the Node as posted patched it again: %v", a)
		}
	}
}
