package certificate

import (
	"net"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestServingTemplateNamesTheNodesAddresses(t *testing.T) {
	var addresses []corev1.NodeAddress
	template := servingTemplate("node-a", func() []corev1.NodeAddress { return addresses })
	addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node-a"}}
	if req := template(); req != nil {
		t.Errorf("a node without an IP address asked for %v, want no request (as the kubelet)", req)
	}
	addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}, {Type: corev1.NodeHostName, Address: "node-a"},
		{Type: corev1.NodeInternalIP, Address: "2001:db8::a"}, {Type: corev1.NodeExternalIP, Address: "192.0.2.10"},
		{Type: corev1.NodeExternalDNS, Address: "a.example.com"}, {Type: corev1.NodeInternalDNS, Address: ""},
	}
	req := template()
	if req == nil {
		t.Fatal("no request for a node with addresses")
	}
	if req.Subject.CommonName != "system:node:node-a" || !reflect.DeepEqual(req.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("subject %v, want CN=system:node:node-a, O=system:nodes", req.Subject)
	}
	if want := []string{"a.example.com", "node-a"}; !reflect.DeepEqual(req.DNSNames, want) {
		t.Errorf("DNS names %v, want %v", req.DNSNames, want)
	}
	if want := []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::a")}; !reflect.DeepEqual(req.IPAddresses, want) {
		t.Errorf("IP addresses %v, want %v (each once, in a stable order)", req.IPAddresses, want)
	}
	if again := template(); !reflect.DeepEqual(again, req) {
		t.Errorf("the same addresses gave another request %v: the manager would ask again", again)
	}
}
