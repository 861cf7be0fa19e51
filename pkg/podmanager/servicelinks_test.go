package podmanager

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func service(namespace, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func TestServiceEnvMatchesTheKubeletsVariables(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, svc := range []*corev1.Service{
		service("default", "kubernetes", "10.96.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}),
		service("shop", "redis-primary", "10.96.0.20",
			corev1.ServicePort{Name: "redis", Port: 6379, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "metrics", Port: 9121, Protocol: corev1.ProtocolUDP}),
		service("shop", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
		service("other", "elsewhere", "10.96.0.30", corev1.ServicePort{Port: 80}),
	} {
		if err := indexer.Add(svc); err != nil {
			t.Fatal(err)
		}
	}
	lister := corelisters.NewServiceLister(indexer)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}}

	env, err := serviceEnv(lister, pod)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range env {
		got[e.Name] = e.Value
	}
	for name, want := range map[string]string{
		"REDIS_PRIMARY_SERVICE_HOST":         "10.96.0.20",
		"REDIS_PRIMARY_SERVICE_PORT":         "6379",
		"REDIS_PRIMARY_SERVICE_PORT_REDIS":   "6379",
		"REDIS_PRIMARY_SERVICE_PORT_METRICS": "9121",
		"REDIS_PRIMARY_PORT":                 "tcp://10.96.0.20:6379",
		"REDIS_PRIMARY_PORT_6379_TCP":        "tcp://10.96.0.20:6379",
		"REDIS_PRIMARY_PORT_6379_TCP_PROTO":  "tcp",
		"REDIS_PRIMARY_PORT_6379_TCP_PORT":   "6379",
		"REDIS_PRIMARY_PORT_6379_TCP_ADDR":   "10.96.0.20",
		"REDIS_PRIMARY_PORT_9121_UDP":        "udp://10.96.0.20:9121",
		"KUBERNETES_SERVICE_HOST":            "10.96.0.1",
		"KUBERNETES_SERVICE_PORT":            "443",
		"KUBERNETES_SERVICE_PORT_HTTPS":      "443",
		"KUBERNETES_PORT_443_TCP":            "tcp://10.96.0.1:443",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "HEADLESS") || strings.HasPrefix(name, "ELSEWHERE") {
			t.Errorf("unexpected variable %s", name)
		}
	}

	off := false
	pod.Spec.EnableServiceLinks = &off
	env, err = serviceEnv(lister, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) == 0 || env[0].Name != "KUBERNETES_SERVICE_HOST" {
		t.Fatalf("with enableServiceLinks=false, env = %v; want only the kubernetes Service's variables", env)
	}
	for _, e := range env {
		if !strings.HasPrefix(e.Name, "KUBERNETES_") {
			t.Errorf("with enableServiceLinks=false: unexpected %s", e.Name)
		}
	}
}
