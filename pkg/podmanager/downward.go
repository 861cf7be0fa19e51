package podmanager

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// podAddresses are the runtime values a fieldRef may name besides the Pod object's own fields: the pod's
// addresses as the runtime has them (the posted status may not have them yet when a container is created)
// and the node's.
type podAddresses struct {
	podIPs, hostIPs []string
}

// podFieldValue is the value of a downward API fieldRef, as the kubelet computes it for env and volumes:
// metadata (name, namespace, uid, labels and annotations whole or one key by subscript, e.g.
// metadata.labels['app']), spec.nodeName, spec.serviceAccountName, and the addresses (status.podIP(s),
// status.hostIP(s); lists comma-separated).
func podFieldValue(pod *corev1.Pod, path string, addrs podAddresses) (string, error) {
	if field, key, ok := subscripted(path); ok {
		switch field {
		case "metadata.labels":
			return pod.Labels[key], nil
		case "metadata.annotations":
			return pod.Annotations[key], nil
		}
		return "", fmt.Errorf("fieldRef %q is not supported", path)
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return first(addrs.podIPs), nil
	case "status.podIPs":
		return strings.Join(addrs.podIPs, ","), nil
	case "status.hostIP":
		return first(addrs.hostIPs), nil
	case "status.hostIPs":
		return strings.Join(addrs.hostIPs, ","), nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

// subscripted splits "metadata.labels['key']" into its field and key.
func subscripted(path string) (field, key string, ok bool) {
	field, rest, found := strings.Cut(path, "['")
	if !found || !strings.HasSuffix(rest, "']") {
		return "", "", false
	}
	return field, strings.TrimSuffix(rest, "']"), true
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

// formatMap writes labels or annotations as the kubelet does: key="value" lines, sorted, quoted.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// hostIPs are the pod's hostIPs: the node's first InternalIP of each family, the first one first.
func (m *Manager) hostIPs() []string {
	n := m.node()
	if n == nil {
		return nil
	}
	var out []string
	var families []bool
	for _, a := range n.Status.Addresses {
		ip, err := netip.ParseAddr(a.Address)
		if a.Type != corev1.NodeInternalIP || err != nil || slices.Contains(families, ip.Is4()) {
			continue
		}
		families = append(families, ip.Is4())
		out = append(out, a.Address)
	}
	return out
}
