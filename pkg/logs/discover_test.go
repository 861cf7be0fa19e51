package logs

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/nodeagent/nodeagent/pkg/config"
)

func TestDiscoverFindsEachContainersCurrentLog(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{
		"shop_web-0_0c5e7a44-1b2f-4c3d-9e8f-001122334455/server/0.log",
		"shop_web-0_0c5e7a44-1b2f-4c3d-9e8f-001122334455/server/1.log",
		"shop_web-0_0c5e7a44-1b2f-4c3d-9e8f-001122334455/server/0.log.20261201-204519",    // rotated
		"shop_web-0_0c5e7a44-1b2f-4c3d-9e8f-001122334455/server/0.log.20261201-204500.gz", // rotated, compressed
		"kube-system_dns_9a8b7c6d-0000-4000-8000-aabbccddeeff/sidecar/3.log",
		"not-a-pod-dir/c/0.log",
		"a_b_c/c/x.log",
	} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logs, _ := discover(dir)
	var got []string
	for _, l := range logs {
		got = append(got, l.Namespace+"/"+l.Pod+"/"+l.UID+"/"+l.Container+"/"+strconv.Itoa(l.Restart))
	}
	slices.Sort(got)
	want := []string{
		"kube-system/dns/9a8b7c6d-0000-4000-8000-aabbccddeeff/sidecar/3",
		"shop/web-0/0c5e7a44-1b2f-4c3d-9e8f-001122334455/server/0",
		"shop/web-0/0c5e7a44-1b2f-4c3d-9e8f-001122334455/server/1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("found %q\nwant %q", got, want)
	}
}

func TestTagTemplates(t *testing.T) {
	l, _ := ParseLogPath("/var/log/pods", "/var/log/pods/shop_web-0_0c5e7a44-1b2f-4c3d-9e8f-001122334455/server/1.log")
	for template, want := range map[string]string{
		config.DefaultLogTag:                 "kube.var.log.containers.web-0_shop_server-4f9d.log",
		"k8s.${node}.${namespace}.${pod_id}": "k8s.node-a.shop.0c5e7a44-1b2f-4c3d-9e8f-001122334455",
		"plain":                              "plain",
		"${namespace}${pod}-${container_id}": "shopweb-0-4f9d",
	} {
		tag, err := ParseTagTemplate(template)
		if err != nil {
			t.Fatal(err)
		}
		if got := tag.Execute(l, "4f9d", "node-a"); got != want {
			t.Errorf("%s made %q, want %q", template, got, want)
		}
	}
	for _, bad := range []string{"", "kube.${podname}"} {
		if _, err := ParseTagTemplate(bad); err == nil {
			t.Errorf("template %q was accepted", bad)
		}
	}
}
