package podmanager

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// hostsOf syncs the pod once and returns the host file its first container would see at /etc/hosts, and the
// content of that file when it is a file.
func hostsOf(t *testing.T, pod *corev1.Pod, nodeHosts string) (hostPath, content string) {
	t.Helper()
	f := newFixture(t, pod)
	f.worker.m.cfg.NodeHostsFile = filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(f.worker.m.cfg.NodeHostsFile, []byte(nodeHosts), 0o644); err != nil {
		t.Fatal(err)
	}
	f.runtime.SetFakeImages([]string{pod.Spec.Containers[0].Image})
	if _, err := f.worker.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	created := *f.runtime.created
	if len(created) != 1 {
		t.Fatalf("%d containers created, want 1", len(created))
	}
	var mount *runtimeapi.Mount
	for _, m := range created[0].Mounts {
		if m.ContainerPath == "/etc/hosts" {
			if mount != nil {
				t.Fatalf("two mounts at /etc/hosts: %v", created[0].Mounts)
			}
			mount = m
		}
	}
	if mount == nil {
		t.Fatalf("nothing mounted at /etc/hosts: %v", created[0].Mounts)
	}
	if st, err := os.Stat(mount.HostPath); err != nil || st.IsDir() {
		return mount.HostPath, ""
	}
	b, err := os.ReadFile(mount.HostPath)
	if err != nil {
		t.Fatal(err)
	}
	return mount.HostPath, string(b)
}

// Each container sees the kubelet's managed /etc/hosts: its pod's address with its host name (and FQDN with a
// subdomain), and its hostAliases; a host-network pod sees the node's file under its own header; a container
// that mounts something at /etc/hosts keeps it.
func TestContainersSeeTheKubeletsManagedHostsFile(t *testing.T) {
	const loopback = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	aliases := []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.local", "bar.local"}}}

	plain := testPod("busybox")
	if _, got := hostsOf(t, plain, ""); got != loopback+"192.168.192.168\tweb\n" {
		t.Errorf("pod's hosts file:\n%q\nwant\n%q", got, loopback+"192.168.192.168\tweb\n")
	}

	named := testPod("busybox")
	named.Spec.Hostname, named.Spec.Subdomain, named.Spec.HostAliases = "db-0", "db", aliases
	want := loopback + "192.168.192.168\tdb-0.db.default.svc.cluster.local\tdb-0\n" +
		"\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"
	if _, got := hostsOf(t, named, ""); got != want {
		t.Errorf("hosts file with subdomain and aliases:\n%q\nwant\n%q", got, want)
	}

	hostNet := testPod("busybox")
	hostNet.Spec.HostNetwork, hostNet.Spec.HostAliases = true, aliases
	want = "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost node-a\n" +
		"\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"
	if _, got := hostsOf(t, hostNet, "127.0.0.1 localhost node-a\n"); got != want {
		t.Errorf("host network pod's hosts file:\n%q\nwant\n%q", got, want)
	}

	own := testPod("busybox")
	own.Spec.Volumes = []corev1.Volume{{Name: "hosts", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	own.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "hosts", MountPath: "/etc/hosts"}}
	if path, _ := hostsOf(t, own, ""); filepath.Base(path) != "hosts" || !strings.Contains(path, "empty-dir") {
		t.Errorf("a container mounting its own volume at /etc/hosts got %s", path)
	}
}
