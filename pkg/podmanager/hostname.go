package podmanager

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
)

// The kernel's limits on a host name (uts nodename: 64 bytes with the terminating NUL, 63 for one DNS label).
const (
	hostnameMaxLen = 63
	fqdnMaxLen     = 64
)

// podHostnameAndDomain is the host name and domain the kubelet gives a pod: spec.hostnameOverride as it is
// (no domain), else spec.hostname or the pod's name, and <subdomain>.<namespace>.svc.<cluster domain> when the
// pod has a subdomain. The name is cut to 63 characters without a trailing '-' or '.' (a generated name can be
// longer, and runc refuses such a host name).
func podHostnameAndDomain(pod *corev1.Pod, clusterDomain string) (hostname, domain string, err error) {
	if override := pod.Spec.HostnameOverride; override != nil {
		if msgs := validation.IsDNS1123Subdomain(*override); len(msgs) != 0 {
			return "", "", fmt.Errorf("pod HostnameOverride %q is not a valid DNS subdomain: %s", *override, strings.Join(msgs, ";"))
		}
		hostname, err := truncateHostname(pod, *override)
		return hostname, "", err
	}
	hostname = pod.Name
	if pod.Spec.Hostname != "" {
		if msgs := validation.IsDNS1123Label(pod.Spec.Hostname); len(msgs) != 0 {
			return "", "", fmt.Errorf("pod Hostname %q is not a valid DNS label: %s", pod.Spec.Hostname, strings.Join(msgs, ";"))
		}
		hostname = pod.Spec.Hostname
	}
	if hostname, err = truncateHostname(pod, hostname); err != nil {
		return "", "", err
	}
	if pod.Spec.Subdomain != "" {
		if msgs := validation.IsDNS1123Label(pod.Spec.Subdomain); len(msgs) != 0 {
			return "", "", fmt.Errorf("pod Subdomain %q is not a valid DNS label: %s", pod.Spec.Subdomain, strings.Join(msgs, ";"))
		}
		domain = fmt.Sprintf("%s.%s.svc.%s", pod.Spec.Subdomain, pod.Namespace, clusterDomain)
	}
	return hostname, domain, nil
}

// truncateHostname cuts a host name to the kernel's 63 characters, without a trailing '-' or '.'.
func truncateHostname(pod *corev1.Pod, hostname string) (string, error) {
	if len(hostname) > hostnameMaxLen {
		truncated := strings.TrimRight(hostname[:hostnameMaxLen], "-.")
		klog.InfoS("Hostname for pod was too long, truncated it", "pod", klog.KObj(pod), "hostnameMaxLen", hostnameMaxLen,
			"truncatedHostname", truncated)
		if truncated == "" {
			return "", fmt.Errorf("hostname for pod %q was invalid: %q", pod.Name, hostname)
		}
		hostname = truncated
	}
	return hostname, nil
}

// kernelHostname is the name the pod's UTS namespace gets: the host name, or with setHostnameAsFQDN and a
// domain the fully qualified name, which must fit the kernel's 64 bytes.
func kernelHostname(pod *corev1.Pod, hostname, domain string) (string, error) {
	if domain == "" || !isTrue(pod.Spec.SetHostnameAsFQDN) {
		return hostname, nil
	}
	fqdn := hostname + "." + domain
	if len(fqdn) > fqdnMaxLen {
		return "", fmt.Errorf("failed to construct FQDN from pod hostname and cluster domain, FQDN %s is too long (%d characters is the max, %d characters requested)",
			fqdn, fqdnMaxLen, len(fqdn))
	}
	return fqdn, nil
}
