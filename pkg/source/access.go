package source

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// CheckServiceAccess makes sure the agent's credentials may list Services and EndpointSlices in all namespaces,
// which the proxy and cluster DNS watch. The Node authorizer does not give a node EndpointSlices: without a
// binding the cache would never fill and the agent would wait forever, so start-up stops with what to do
// instead.
func CheckServiceAccess(ctx context.Context, client kubernetes.Interface) error {
	one := metav1.ListOptions{Limit: 1}
	if _, err := client.CoreV1().Services("").List(ctx, one); err != nil {
		return accessError("services", err)
	}
	if _, err := client.DiscoveryV1().EndpointSlices("").List(ctx, one); err != nil {
		return accessError("endpointslices.discovery.k8s.io", err)
	}
	return nil
}

func accessError(resource string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("the agent cannot list %s, which its Service proxy and cluster DNS watch: %w; give the node kube-proxy's role "+
			"(kubectl create clusterrolebinding nodeagent:node-proxier --clusterrole=system:node-proxier --group=system:nodes) "+
			"or turn both off (proxy.enabled: false, dns.enabled: false; --enable-proxy=false --enable-dns=false)", resource, err)
	}
	return fmt.Errorf("listing %s: %w", resource, err)
}
