package podmanager

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/resolvconf"
)

// The resolver's limits, which the kubelet also enforces: glibc reads three nameservers, and 32 search
// domains.
const (
	maxNameservers = 3
	maxSearches    = 32
)

// podDNSConfig is the resolver the kubelet gives a pod for its dnsPolicy: the cluster's nameservers and
// search path (ClusterFirst, and ClusterFirstWithHostNet), the node's resolv.conf (Default, and ClusterFirst
// on the host network or without cluster DNS), or nothing (None); then the pod's own dnsConfig on top.
// nil lets the runtime copy the node's resolv.conf.
func podDNSConfig(pod *corev1.Pod, nameservers []string, domain string, host resolvconf.File) *runtimeapi.DNSConfig {
	var cfg runtimeapi.DNSConfig
	cluster := pod.Spec.DNSPolicy == corev1.DNSClusterFirstWithHostNet ||
		pod.Spec.DNSPolicy == corev1.DNSClusterFirst && !pod.Spec.HostNetwork
	switch {
	case pod.Spec.DNSPolicy == corev1.DNSNone:
	case cluster && len(nameservers) > 0:
		cfg.Servers = slices.Clone(nameservers)
		cfg.Searches = omitDuplicates(append([]string{pod.Namespace + ".svc." + domain, "svc." + domain, domain}, host.Searches...))
		cfg.Options = []string{"ndots:5"}
	default:
		if len(host.Nameservers) == 0 && pod.Spec.DNSConfig == nil {
			return nil
		}
		cfg.Servers, cfg.Searches, cfg.Options = slices.Clone(host.Nameservers), slices.Clone(host.Searches), slices.Clone(host.Options)
	}
	if extra := pod.Spec.DNSConfig; extra != nil {
		cfg.Servers = omitDuplicates(append(cfg.Servers, extra.Nameservers...))
		cfg.Searches = omitDuplicates(append(cfg.Searches, extra.Searches...))
		cfg.Options = mergeOptions(cfg.Options, extra.Options)
	}
	cfg.Servers = cfg.Servers[:min(len(cfg.Servers), maxNameservers)]
	cfg.Searches = cfg.Searches[:min(len(cfg.Searches), maxSearches)]
	return &cfg
}

func omitDuplicates(list []string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// mergeOptions adds the pod's options to the base ones; a pod option replaces a base option of its name.
func mergeOptions(base []string, pod []corev1.PodDNSConfigOption) []string {
	out := slices.Clone(base)
	for _, o := range pod {
		opt := o.Name
		if o.Value != nil {
			opt += ":" + *o.Value
		}
		i := slices.IndexFunc(out, func(existing string) bool { return strings.SplitN(existing, ":", 2)[0] == o.Name })
		if i >= 0 {
			out[i] = opt
		} else {
			out = append(out, opt)
		}
	}
	return out
}
