package podmanager

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	etcHostsPath                      = "/etc/hosts"
	managedHostsHeader                = "# Kubernetes-managed hosts file.\n"
	managedHostsHeaderWithHostNetwork = "# Kubernetes-managed hosts file (host network).\n"
)

// etcHostsMount writes the pod's hosts file, as the kubelet manages it, and returns its mount for a container
// that does not mount something of its own at /etc/hosts. It is nil while the pod has no address (the
// kubelet mounts none then either). The file is rewritten for every container created, as the kubelet does,
// so a new sandbox's addresses reach it.
func (w *worker) etcHostsMount(pod *corev1.Pod, c *corev1.Container, podIPs []string) (*runtimeapi.Mount, error) {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == etcHostsPath {
			return nil, nil
		}
	}
	if len(podIPs) == 0 {
		return nil, nil
	}
	var content []byte
	if pod.Spec.HostNetwork {
		node, err := os.ReadFile(w.m.cfg.NodeHostsFile)
		if err != nil {
			return nil, fmt.Errorf("reading the node's hosts file: %w", err)
		}
		content = append([]byte(managedHostsHeaderWithHostNetwork), node...)
		content = append(content, hostAliasEntries(pod.Spec.HostAliases)...)
	} else {
		hostname, domain, err := podHostnameAndDomain(pod, w.m.cfg.ClusterDomain)
		if err != nil {
			return nil, err
		}
		content = managedHostsContent(podIPs, hostname, domain, pod.Spec.HostAliases)
	}
	path := filepath.Join(w.m.podDir(string(w.uid)), "etc-hosts")
	if err := mkdirAll(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("pod directory: %w", err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		return nil, fmt.Errorf("writing the pod's hosts file: %w", err)
	}
	return &runtimeapi.Mount{ContainerPath: etcHostsPath, HostPath: path}, nil
}

// managedHostsContent is the kubelet's hosts file of a pod with its own network: loopback, the IPv6
// multicast names, the pod's addresses with its host name (and FQDN), then the pod's hostAliases.
func managedHostsContent(podIPs []string, hostname, domain string, aliases []corev1.HostAlias) []byte {
	var b bytes.Buffer
	b.WriteString(managedHostsHeader)
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, ip := range podIPs {
		if domain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, hostname, domain, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	b.Write(hostAliasEntries(aliases))
	return b.Bytes()
}

func hostAliasEntries(aliases []corev1.HostAlias) []byte {
	if len(aliases) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("\n# Entries added by HostAliases.\n")
	for _, a := range aliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	return b.Bytes()
}
