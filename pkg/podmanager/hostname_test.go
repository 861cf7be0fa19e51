package podmanager

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A generated pod name can be longer than a host name may be: the sandbox gets the kubelet's cut, 63
// characters without a trailing '-' or '.', else runc refuses it (sethostname: invalid argument).
func TestSandboxHostnameIsCutToWhatTheKernelTakes(t *testing.T) {
	long := strings.Repeat("a", 62) + "-bcdef" // character 63 is '-'
	fqdn := true
	for _, tc := range []struct {
		name    string
		edit    func(*corev1.Pod)
		want    string
		wantErr string
	}{
		{name: "short name", edit: func(p *corev1.Pod) {}, want: "web"},
		{name: "63 characters", edit: func(p *corev1.Pod) { p.Name = strings.Repeat("b", 63) }, want: strings.Repeat("b", 63)},
		{name: "long name", edit: func(p *corev1.Pod) { p.Name = long }, want: strings.Repeat("a", 62)},
		{name: "spec.hostname", edit: func(p *corev1.Pod) { p.Spec.Hostname = "db-0" }, want: "db-0"},
		{name: "subdomain without FQDN", edit: func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "db-0", "db" }, want: "db-0"},
		{name: "FQDN", edit: func(p *corev1.Pod) {
			p.Spec.Hostname, p.Spec.Subdomain, p.Spec.SetHostnameAsFQDN = "db-0", "db", &fqdn
		}, want: "db-0.db.default.svc.cluster.local"},
		{name: "FQDN over 64", edit: func(p *corev1.Pod) {
			p.Name, p.Spec.Subdomain, p.Spec.SetHostnameAsFQDN = strings.Repeat("c", 40), "db", &fqdn
		}, wantErr: "is too long (64 characters is the max, 69 characters requested)"},
		{name: "hostnameOverride wins over hostname and subdomain", edit: func(p *corev1.Pod) {
			override := "my.custom.host"
			p.Spec.Hostname, p.Spec.Subdomain, p.Spec.HostnameOverride = "db-0", "db", &override
		}, want: "my.custom.host"},
		{name: "host network", edit: func(p *corev1.Pod) { p.Name, p.Spec.HostNetwork = long, true }, want: ""},
		{name: "invalid hostname", edit: func(p *corev1.Pod) { p.Spec.Hostname = "Not_A_Label" }, wantErr: `pod Hostname "Not_A_Label" is not a valid DNS label`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("busybox")
			pod.Name = "web"
			tc.edit(pod)
			f := newFixture(t, pod)
			config, err := f.worker.sandboxConfig(pod, 0)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if config.Hostname != tc.want {
				t.Errorf("sandbox hostname %q, want %q", config.Hostname, tc.want)
			}
		})
	}
}
