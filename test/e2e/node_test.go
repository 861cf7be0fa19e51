package e2e

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeRegistersWithStatusAndCNIConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n *corev1.Node
	// The podCIDR is allocated by the real controller-manager after registration.
	err := pollUntil(ctx, func() (bool, error) {
		var err error
		n, err = stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		return err == nil && n.Spec.PodCIDR != "", nil
	})
	if err != nil {
		t.Fatalf("node has no podCIDR: %v", err)
	}
	_, cluster, _ := net.ParseCIDR(clusterCIDR)
	podIP, podNet, err := net.ParseCIDR(n.Spec.PodCIDR)
	if err != nil || !cluster.Contains(podIP) {
		t.Errorf("podCIDR %q is not inside the cluster CIDR %s", n.Spec.PodCIDR, clusterCIDR)
	}
	if got := n.Status.Capacity.Pods().Value(); got != maxPods {
		t.Errorf("capacity pods = %d, want %d (--max-pods)", got, maxPods)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := n.Status.Capacity[r]; !ok || q.Sign() <= 0 {
			t.Errorf("capacity %s = %v, want a positive quantity", r, q.String())
		}
		if _, ok := n.Status.Allocatable[r]; !ok {
			t.Errorf("allocatable has no %s", r)
		}
	}
	info := n.Status.NodeInfo
	if !strings.HasPrefix(info.ContainerRuntimeVersion, "containerd://") || info.KernelVersion == "" ||
		info.OSImage == "" || info.KubeletVersion == "" {
		t.Errorf("nodeInfo incomplete: %+v", info)
	}
	want := map[corev1.NodeConditionType]corev1.ConditionStatus{
		corev1.NodeReady: corev1.ConditionTrue, corev1.NodeMemoryPressure: corev1.ConditionFalse,
		corev1.NodeDiskPressure: corev1.ConditionFalse, corev1.NodePIDPressure: corev1.ConditionFalse,
	}
	for _, c := range n.Status.Conditions {
		if s, ok := want[c.Type]; ok {
			if c.Status != s {
				t.Errorf("condition %s = %s (%s), want %s", c.Type, c.Status, c.Message, s)
			}
			delete(want, c.Type)
		}
	}
	if len(want) > 0 {
		t.Errorf("conditions missing: %v", want)
	}
	var internalIP bool
	for _, a := range n.Status.Addresses {
		internalIP = internalIP || (a.Type == corev1.NodeInternalIP && net.ParseIP(a.Address) != nil)
	}
	if !internalIP {
		t.Errorf("no InternalIP in %v", n.Status.Addresses)
	}
	conf, err := os.ReadFile(cniConfFile)
	if err != nil {
		t.Fatalf("CNI config not written: %v", err)
	}
	if !strings.Contains(string(conf), podNet.String()) {
		t.Errorf("CNI config does not use the podCIDR %s:\n%s", podNet, conf)
	}
}

func TestLeaseRenewTimeAdvances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leases := stack.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	var first *coordinationv1.Lease
	err := pollUntil(ctx, func() (bool, error) {
		var err error
		first, err = leases.Get(ctx, nodeName, metav1.GetOptions{})
		return err == nil && first.Spec.RenewTime != nil, nil
	})
	if err != nil {
		t.Fatalf("no Lease %s/%s: %v", corev1.NamespaceNodeLease, nodeName, err)
	}
	if first.Spec.HolderIdentity == nil || *first.Spec.HolderIdentity != nodeName {
		t.Errorf("holderIdentity = %v, want %s", first.Spec.HolderIdentity, nodeName)
	}
	// The agent renews every 10 s (a quarter of the 40 s lease).
	err = pollUntil(ctx, func() (bool, error) {
		l, err := leases.Get(ctx, nodeName, metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime.After(first.Spec.RenewTime.Time), nil
	})
	if err != nil {
		t.Fatalf("renewTime stayed at %v: %v", first.Spec.RenewTime, err)
	}
	l, _ := leases.Get(ctx, nodeName, metav1.GetOptions{})
	if len(l.OwnerReferences) != 1 || l.OwnerReferences[0].Kind != "Node" || l.OwnerReferences[0].Name != nodeName {
		t.Errorf("lease owner = %v, want the Node %s", l.OwnerReferences, nodeName)
	}
}
