package e2e

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nodeagent/nodeagent/internal/dnsnet"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// agentDNS is where the agent serves cluster DNS by default: an address on a link of its own.
const agentDNS = "169.254.20.10:53"

// upstreamName is the one name outside the cluster that the loopback upstream knows.
const upstreamName, upstreamAddr = "upstream.e2e.test.", "192.0.2.1"

// startUpstreamStub is the resolver on loopback that stands in for the node's upstream: it answers
// upstreamName and says NXDOMAIN to everything else.
func startUpstreamStub() (*dnsnet.Stub, error) {
	return dnsnet.StartStub(func(req, resp *dns.Msg) {
		if q := req.Question[0]; strings.EqualFold(q.Name, upstreamName) && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(upstreamName + " 60 IN A " + upstreamAddr)
			resp.Answer = []dns.RR{rr}
		} else if !strings.EqualFold(q.Name, upstreamName) {
			resp.Rcode = dns.RcodeNameError
		}
	})
}

func TestClusterDNSFromAPod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	_, pods := deployService(ctx, t, ns, "web", 1)

	// Three containers reach the Service by the three names a pod uses: through the search path (short and
	// namespaced names, ndots:5) and fully qualified. Go's resolver in the test server reads the pod's
	// resolv.conf; busybox shows that file and resolves a name outside the cluster through the upstream.
	get := func(name, host string) corev1.Container {
		return corev1.Container{Name: name, Image: testImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Args: []string{"--get", "http://" + host + "/hostname", "--count", "3"}}
	}
	client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client"}, Spec: corev1.PodSpec{
		NodeName: nodeName, RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{
			get("short", "web"), get("namespaced", "web."+ns), get("fqdn", "web."+ns+".svc.cluster.local."),
			{Name: "resolver", Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "cat /etc/resolv.conf; nslookup " + strings.TrimSuffix(upstreamName, ".")}},
		},
	}}
	client, err := stack.client.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"short", "namespaced", "fqdn"} {
		waitForLog(ctx, t, logFile(client, c), "got "+pods[0])
	}
	for _, want := range []string{
		"nameserver 169.254.20.10",
		"search " + ns + ".svc.cluster.local svc.cluster.local cluster.local",
		"options ndots:5",
		"Address: " + upstreamAddr,
	} {
		waitForLog(ctx, t, logFile(client, "resolver"), want)
	}

	t.Run("a new Service is answered within 1 s", func(t *testing.T) {
		name := "fresh." + ns + ".svc.cluster.local."
		if rcode, _ := askAgent(t, name); rcode != dns.RcodeNameError {
			t.Fatalf("before the Service exists: %s, want NXDOMAIN", dns.RcodeToString[rcode])
		}
		svc, err := stack.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "fresh"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created := time.Now()
		for {
			rcode, answer := askAgent(t, name)
			if rcode == dns.RcodeSuccess && answer == svc.Spec.ClusterIP {
				t.Logf("answered %s %v after the create call returned", answer, time.Since(created))
				break
			}
			if time.Since(created) > time.Second {
				t.Fatalf("1 s after the Service was created the agent says %s %q, want %s", dns.RcodeToString[rcode], answer, svc.Spec.ClusterIP)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("CoreDNS metrics", func(t *testing.T) {
		body, err := httpGet(ctx, "http://127.0.0.1:10249/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^coredns_dns_requests_total\{[^}]*proto="udp"[^}]*zone="cluster.local."\} [1-9]`),
			regexp.MustCompile(`(?m)^coredns_dns_responses_total\{plugin="forward",rcode="NOERROR"[^}]*\} [1-9]`),
			regexp.MustCompile(`(?m)^coredns_dns_request_duration_seconds_count\{[^}]*zone="cluster.local."\} [1-9]`),
		} {
			if !re.MatchString(body) {
				t.Errorf("/metrics has no line matching %s", re)
			}
		}
	})
}

// askAgent asks the agent's DNS server for name's A record from the host, and returns the rcode and the
// first address.
func askAgent(t *testing.T, name string) (int, string) {
	t.Helper()
	req := new(dns.Msg)
	req.SetQuestion(name, dns.TypeA)
	resp, _, err := (&dns.Client{Timeout: time.Second}).Exchange(req, agentDNS)
	if err != nil {
		t.Fatalf("asking %s for %s: %v", agentDNS, name, err)
	}
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			return resp.Rcode, a.A.String()
		}
	}
	return resp.Rcode, ""
}

// Cluster DNS through an agent crash: the agent is killed (-9) and started again 5 s later while a client
// asks every 50 ms, each question with the glibc resolver's defaults (a 5 s timeout, 2 attempts). The DNS
// socket holder keeps the sockets, so the questions asked while no agent runs wait and are answered: none
// is lost.
func TestDNSAnswersThroughAnAgentRestart(t *testing.T) {
	const name = "kubernetes.default.svc.cluster.local."
	if rcode, _ := askAgent(t, name); rcode != dns.RcodeSuccess {
		t.Fatalf("before the restart: rcode %d", rcode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan error, 2000)
	var asking sync.WaitGroup
	asking.Add(1)
	go func() {
		defer asking.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range 1000 { // at most 50 s of questions
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			asking.Add(1)
			go func() {
				defer asking.Done()
				results <- resolveAsGlibc(name)
			}()
		}
	}()
	time.Sleep(time.Second)
	if err := stack.killAgent(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if err := stack.startAgent(); err != nil {
		t.Fatal(err)
	}
	waitForNodeAPI(t)
	time.Sleep(3 * time.Second)
	cancel()
	asking.Wait()
	close(results)
	var asked, failed int
	var firstErr error
	for err := range results {
		asked++
		if err != nil {
			failed++
			firstErr = cmp.Or(firstErr, err)
		}
	}
	t.Logf("%d questions through the restart, %d unanswered", asked, failed)
	if asked < 100 || failed > 0 {
		t.Errorf("%d of %d questions went unanswered through an agent restart (first: %v), want none", failed, asked, firstErr)
	}
}

// resolveAsGlibc asks the agent as a pod's resolver does by default: up to 2 attempts of 5 s each.
func resolveAsGlibc(name string) error {
	req := new(dns.Msg)
	req.SetQuestion(name, dns.TypeA)
	var err error
	for range 2 {
		var resp *dns.Msg
		if resp, _, err = (&dns.Client{Timeout: 5 * time.Second}).Exchange(req, agentDNS); err == nil {
			if resp.Rcode != dns.RcodeSuccess {
				return fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
			}
			return nil
		}
	}
	return err
}
