package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/nodeagent/nodeagent/internal/tcprelay"
	"github.com/nodeagent/nodeagent/pkg/proxy"
)

// mapHasKey reports whether the agent's table has an element with this key in the named map or set.
// Tests look before they send: a VIP without rules would be routed off the machine.
func mapHasKey(name string, key []byte) (bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return false, err
	}
	set, err := conn.GetSetByName(&nftables.Table{Name: proxy.TableName, Family: nftables.TableFamilyINet}, name)
	if err != nil {
		return false, nil // the table or map is not there yet
	}
	elems, err := conn.GetSetElements(set)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(elems, func(e nftables.SetElement) bool { return string(e.Key) == string(key) }), nil
}

// vipKey is the key of a ClusterIP's TCP port in the service maps: address . protocol . port, each field
// padded to four bytes.
func vipKey(ip netip.Addr, port uint16) []byte {
	return append(ip.AsSlice(), syscall.IPPROTO_TCP, 0, 0, 0, byte(port>>8), byte(port), 0, 0)
}

// httpGet returns the body of a 200 answer; any other status is an error.
func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), err
}

// hostnames GETs /hostname through addr until every name in want answered, or the context ends.
func hostnames(ctx context.Context, addr string, want []string) (map[string]int, error) {
	// A connection per request: the proxy picks an endpoint per connection.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		resp, err := client.Get("http://" + addr + "/hostname")
		if err != nil {
			return seen, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(body)]++
		if len(seen) == len(want) && !slices.ContainsFunc(want, func(n string) bool { return seen[n] == 0 }) {
			return seen, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return seen, fmt.Errorf("answers %v, want each of %v", seen, want)
}

func TestServiceClusterIPAndNodePort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	svc, pods := deployService(ctx, t, ns, "svc", 2)
	vip := netip.MustParseAddr(svc.Spec.ClusterIP)
	nodePort := uint16(svc.Spec.Ports[0].NodePort)
	if err := pollUntil(ctx, func() (bool, error) { return mapHasKey("service-ips", vipKey(vip, 80)) }); err != nil {
		t.Fatalf("the agent never programmed %s:80: %v", vip, err)
	}
	node, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The pod bridge's address, the first of the node's pod CIDR: it is there once a pod runs.
	bridgeIP := netip.MustParsePrefix(node.Spec.PodCIDR).Addr().Next()

	// Each part has a deadline of its own, so one that fails leaves time to the others.
	part := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("ClusterIP from the host", func(t *testing.T) {
		ctx := part(t)
		seen, err := hostnames(ctx, netip.AddrPortFrom(vip, 80).String(), pods)
		if err != nil {
			t.Fatalf("through %s:80: %v", vip, err)
		}
		t.Logf("answers through the ClusterIP from the host: %v", seen)
	})

	t.Run("ClusterIP from a pod", func(t *testing.T) {
		ctx := part(t)
		client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client"}, Spec: corev1.PodSpec{
			NodeName: nodeName, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: testImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Args: []string{"--get", fmt.Sprintf("http://%s/hostname", netip.AddrPortFrom(vip, 80)), "--count", "30"}}},
		}}
		client, err := stack.client.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range pods {
			waitForLog(ctx, t, logFile(client, "c"), "got "+name)
		}
	})

	t.Run("the kubernetes Service from a pod, as an in-cluster client", func(t *testing.T) {
		ctx := part(t)
		apiVIP, apiTarget := kubernetesServiceOnTheBridge(ctx, t, bridgeIP)
		if err := pollUntil(ctx, func() (bool, error) { return mapHasKey("service-ips", vipKey(apiVIP, 443)) }); err != nil {
			t.Fatalf("the agent never programmed the kubernetes Service %s:443: %v", apiVIP, err)
		}
		if err := pollUntil(ctx, func() (bool, error) {
			_, err := stack.client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		}); err != nil {
			t.Fatalf("no default ServiceAccount: %v", err)
		}
		client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "in-cluster"}, Spec: corev1.PodSpec{
			NodeName: nodeName, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: testImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Args: []string{"--whoami", "--count", "30"}}},
		}}
		client, err := stack.client.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// client-go's InClusterConfig: KUBERNETES_SERVICE_HOST/PORT, the token and CA of the pod's
		// kube-api-access volume; the answer names the pod's ServiceAccount.
		waitForLog(ctx, t, logFile(client, "c"), "user system:serviceaccount:"+ns+":default")
		t.Logf("a pod reached the API server through %s:443 → %s", apiVIP, apiTarget)
	})

	t.Run("NodePort on the node's bridge address", func(t *testing.T) {
		ctx := part(t)
		// nodePortAddresses is the cluster CIDR in the harness: the bridge's gateway address accepts NodePorts.
		if err := pollUntil(ctx, func() (bool, error) { return mapHasKey("nodeport-ips", bridgeIP.AsSlice()) }); err != nil {
			t.Fatalf("the bridge address %s never became a NodePort address: %v", bridgeIP, err)
		}
		seen, err := hostnames(ctx, netip.AddrPortFrom(bridgeIP, nodePort).String(), pods)
		if err != nil {
			t.Fatalf("through NodePort %s:%d: %v", bridgeIP, nodePort, err)
		}
		t.Logf("answers through the NodePort: %v", seen)
	})

	t.Run("no endpoints is refused at once", func(t *testing.T) {
		ctx := part(t)
		empty, err := stack.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "empty"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nothing"},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		emptyVIP := netip.MustParseAddr(empty.Spec.ClusterIP)
		if err := pollUntil(ctx, func() (bool, error) { return mapHasKey("no-endpoint-services", vipKey(emptyVIP, 80)) }); err != nil {
			t.Fatalf("the agent never rejected %s:80: %v", emptyVIP, err)
		}
		start := time.Now()
		_, err = net.DialTimeout("tcp", netip.AddrPortFrom(emptyVIP, 80).String(), 2*time.Second)
		if took := time.Since(start); !errors.Is(err, syscall.ECONNREFUSED) || took > 100*time.Millisecond {
			t.Errorf("connecting to a Service without endpoints: %v after %s, want connection refused within 100ms", err, took)
		}
	})

	t.Run("kube-proxy's metrics and health endpoints", func(t *testing.T) {
		ctx := part(t)
		// The EndpointSlice controller stamps every change; the agent measures from there to the rules.
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^kubeproxy_sync_proxy_rules_last_timestamp_seconds\{ip_family="IPv4"\} [0-9.e+]+$`),
			regexp.MustCompile(`(?m)^kubeproxy_network_programming_duration_seconds_count\{ip_family="IPv4"\} [1-9][0-9]*$`),
			regexp.MustCompile(`(?m)^kubeproxy_sync_full_proxy_rules_duration_seconds_count\{ip_family="IPv4"\} [1-9][0-9]*$`),
			// One transaction writes both families' rules: each sync counts for both.
			regexp.MustCompile(`(?m)^kubeproxy_sync_full_proxy_rules_duration_seconds_count\{ip_family="IPv6"\} [1-9][0-9]*$`),
		} {
			if err := pollUntil(ctx, func() (bool, error) {
				body, err := httpGet(ctx, "http://127.0.0.1:10249/metrics")
				return want.MatchString(body), err
			}); err != nil {
				t.Errorf("/metrics never matched %s: %v", want, err)
			}
		}
		body, err := httpGet(ctx, "http://127.0.0.1:10256/healthz")
		if err != nil || !strings.Contains(body, `"nodeEligible":true`) {
			t.Errorf("/healthz answered %q (%v), want 200 with nodeEligible true", body, err)
		}
	})

	// Deleting the Service takes its VIP out of the table.
	if err := stack.client.CoreV1().Services(ns).Delete(ctx, "svc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(ctx, func() (bool, error) {
		has, err := mapHasKey("service-ips", vipKey(vip, 80))
		return !has, err
	}); err != nil {
		t.Errorf("%s:80 still in the table after the Service was deleted: %v", vip, err)
	}
}

// deployService runs a Deployment of test servers and a NodePort Service of its name (port 80), targeting
// the servers' port by name, and waits until every replica is Ready and published as a ready endpoint. It
// returns the Service and the pods' names, sorted.
func deployService(ctx context.Context, t *testing.T, ns, name string, replicas int32) (*corev1.Service, []string) {
	t.Helper()
	labels := map[string]string{"app": name}
	spec := testPodSpec(testImage)
	spec.Containers[0].Ports[0].Name = "http" // the Service targets it by name
	if _, err := stack.client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := stack.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pods []string
	err = pollUntil(ctx, func() (bool, error) {
		list, err := stack.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err
		}
		pods = nil
		for i := range list.Items {
			if podRunningAndReady(&list.Items[i]) {
				pods = append(pods, list.Items[i].Name)
			}
		}
		slices.Sort(pods)
		return len(pods) == int(replicas), nil
	})
	if err != nil {
		t.Fatalf("pods not Running and Ready: %v\n%s", err, describe(ns))
	}
	err = pollUntil(ctx, func() (bool, error) {
		slices, err := stack.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		return ready == int(replicas), nil
	})
	if err != nil {
		t.Fatalf("EndpointSlices never had %d ready endpoints: %v", replicas, err)
	}
	return svc, pods
}

// kubernetesServiceOnTheBridge gives the kubernetes Service the endpoint an API server advertising the
// node's bridge address would have, and relays that address to the harness's API server, which listens on
// loopback only (a pod cannot reach the host's loopback; ENVIRONMENT.md: with a loopback advertise address
// the API server writes no endpoints). It returns the Service's ClusterIP and the endpoint.
func kubernetesServiceOnTheBridge(ctx context.Context, t *testing.T, bridgeIP netip.Addr) (netip.Addr, netip.AddrPort) {
	t.Helper()
	kube, err := stack.client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	port := kube.Spec.Ports[0]
	target := netip.AddrPortFrom(bridgeIP, uint16(port.TargetPort.IntValue()))
	relay(t, target.String(), fmt.Sprintf("127.0.0.1:%d", target.Port()))
	endpointSlices := stack.client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault)
	_, err = endpointSlices.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "kubernetes", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{bridgeIP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(port.Name), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(target.Port()))}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = endpointSlices.Delete(context.Background(), "kubernetes", metav1.DeleteOptions{}) })
	return netip.MustParseAddr(kube.Spec.ClusterIP), target
}

// relay passes each connection to listen on to target until the test ends.
func relay(t *testing.T, listen, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("relay on %s: %v", listen, err)
	}
	t.Cleanup(tcprelay.Start(ln, target))
}
