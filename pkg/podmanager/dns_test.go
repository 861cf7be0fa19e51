package podmanager

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/nodeagent/nodeagent/pkg/resolvconf"
)

func TestPodDNSConfigFollowsTheDNSPolicy(t *testing.T) {
	host, err := resolvconf.Parse(strings.NewReader("# the node's\nnameserver 10.0.0.2\nnameserver 10.0.0.3 ; second\n" +
		"search corp.example\noptions edns0 ndots:2\n"))
	if err != nil {
		t.Fatal(err)
	}
	cluster := []string{"169.254.20.10"}
	pod := func(policy corev1.DNSPolicy, hostNetwork bool, extra *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"},
			Spec: corev1.PodSpec{DNSPolicy: policy, HostNetwork: hostNetwork, DNSConfig: extra}}
	}
	clusterSearches := "shop.svc.cluster.local svc.cluster.local cluster.local corp.example"
	for _, c := range []struct {
		name        string
		pod         *corev1.Pod
		nameservers []string
		want        string // servers | searches | options
	}{
		{"ClusterFirst", pod(corev1.DNSClusterFirst, false, nil), cluster,
			"169.254.20.10 | " + clusterSearches + " | ndots:5"},
		{"ClusterFirst on the host network is Default", pod(corev1.DNSClusterFirst, true, nil), cluster,
			"10.0.0.2 10.0.0.3 | corp.example | edns0 ndots:2"},
		{"ClusterFirstWithHostNet", pod(corev1.DNSClusterFirstWithHostNet, true, nil), cluster,
			"169.254.20.10 | " + clusterSearches + " | ndots:5"},
		{"ClusterFirst without cluster DNS is Default", pod(corev1.DNSClusterFirst, false, nil), nil,
			"10.0.0.2 10.0.0.3 | corp.example | edns0 ndots:2"},
		{"Default", pod(corev1.DNSDefault, false, nil), cluster, "10.0.0.2 10.0.0.3 | corp.example | edns0 ndots:2"},
		{"None takes only the pod's dnsConfig", pod(corev1.DNSNone, false, &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.53"}, Searches: []string{"a.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("1")}}}), cluster,
			"192.0.2.53 | a.example | ndots:1"},
		{"dnsConfig adds to ClusterFirst and replaces an option of the same name", pod(corev1.DNSClusterFirst, false, &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.53", "169.254.20.10"}, Searches: []string{"shop.svc.cluster.local", "b.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "single-request-reopen"}}}), cluster,
			"169.254.20.10 192.0.2.53 | " + clusterSearches + " b.example | ndots:2 single-request-reopen"},
		{"at most three nameservers", pod(corev1.DNSDefault, false, &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2"}}), cluster,
			"10.0.0.2 10.0.0.3 192.0.2.1 | corp.example | edns0 ndots:2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := podDNSConfig(c.pod, c.nameservers, "cluster.local", host)
			if got == nil {
				t.Fatal("nil: the runtime would copy the node's resolv.conf")
			}
			s := strings.Join(got.Servers, " ") + " | " + strings.Join(got.Searches, " ") + " | " + strings.Join(got.Options, " ")
			if s != c.want {
				t.Errorf("got  %s\nwant %s", s, c.want)
			}
		})
	}
}
