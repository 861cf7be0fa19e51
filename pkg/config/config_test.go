package config

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil"
	"github.com/spf13/pflag"
)

func TestLoadFileRejectsUnknownFieldNamingIt(t *testing.T) {
	path := testutil.WriteFile(t, "config.yaml", "apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\nmaxPod: 10\n")
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), `unknown field "maxPod"`) {
		t.Fatalf("err = %v, want it to name the unknown field maxPod", err)
	}
}

func TestLoadFileRejectsWrongAPIVersion(t *testing.T) {
	_, err := LoadFile(testutil.WriteFile(t, "config.yaml", "apiVersion: v9\nkind: NodeAgentConfiguration\n"))
	if err == nil || !strings.Contains(err.Error(), "apiVersion: Unsupported value: \"v9\"") {
		t.Fatalf("err = %v, want apiVersion named", err)
	}
}

func TestLoadFileKeepsDefaultsForOmittedFields(t *testing.T) {
	kubeconfig := testutil.WriteFile(t, "config.yaml", testutil.ValidKubeconfig)
	c, err := LoadFile(testutil.WriteFile(t, "config.yaml", "apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\nkubeconfig: "+
		kubeconfig+"\nmaxPods: 42\nclusterDNS: [10.96.0.10]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxPods != 42 || c.ClusterDomain != "cluster.local" || c.NodeLeaseDurationSeconds != 40 {
		t.Errorf("got maxPods=%d clusterDomain=%q lease=%d", c.MaxPods, c.ClusterDomain, c.NodeLeaseDurationSeconds)
	}
	if c.KubeAPIQPS != 50 || c.KubeAPIBurst != 100 || c.EventRecordQPS != 50 || c.EventBurst != 100 {
		t.Errorf("got kubeAPIQPS=%d kubeAPIBurst=%d eventRecordQPS=%d eventBurst=%d, want the kubelet's 50, 100, 50, 100",
			c.KubeAPIQPS, c.KubeAPIBurst, c.EventRecordQPS, c.EventBurst)
	}
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("valid config rejected: %v", errs)
	}
}

func TestValidateNamesEachBadField(t *testing.T) {
	c := Default()
	c.Kubeconfig = "/does/not/exist"
	c.PodCIDR = "10.0.0.0/33"
	c.NodeIP = "not-an-ip"
	c.ClusterDNS = []string{"10.96.0.10", "bogus"}
	c.MaxPods = 0
	c.RootDir = "relative"
	c.AllowedUnsafeSysctls = []string{"kernel.msg*", "net.*.foo"}
	c.Proxy.NodePortAddresses = []string{"10.0.0.0/8", "primary"}
	c.Proxy.ClusterCIDR = "10.244.0.0"
	c.MetricsBindAddress = "localhost:10249"
	c.Proxy.HealthzBindAddress = "0.0.0.0:99999"
	c.DNS.LocalAddress = "169.254.20"
	c.DNS.Upstreams = []string{"10.0.0.2", "dns.example:53"}
	c.DNS.Port = 0
	c.Logs.Enabled = true
	c.Logs.TagTemplate = "kube.${podname}"
	c.Logs.BufferLimit = "lots"
	c.Logs.FlushInterval.Duration = 0
	c.Logs.Username = "agent"
	c.ImageGCHighThresholdPercent, c.ImageGCLowThresholdPercent = 101, 90
	c.ContainerLogLinksDir = "containers"
	c.RuntimeRequestTimeout.Duration = -time.Second
	c.EvictionSoft = map[string]string{"memory.available": "500Mi"}
	c.HealthzPort, c.HealthzBindAddress = 70000, "localhost"
	c.ReadOnlyPort = 10255
	c.Authorization.Mode = "RBAC"
	c.Authentication.Webhook.CacheTTL.Duration = -time.Minute
	c.KubeAPIQPS, c.KubeAPIBurst = 20, 0
	c.EventRecordQPS = -1
	got := c.Validate().ToAggregate().Error()
	for _, want := range []string{
		`kubeconfig: Invalid value: "/does/not/exist": file does not exist`,
		`podCIDR: Invalid value: "10.0.0.0/33": not a CIDR`,
		`nodeIP: Invalid value: "not-an-ip": not an IP address`,
		`clusterDNS[1]: Invalid value: "bogus"`,
		`maxPods: Invalid value: 0: must be greater than 0`,
		`imageGCHighThresholdPercent: Invalid value: 101: must be between 0 and 100`,
		`containerLogLinksDir: Invalid value: "containers": must be an absolute path or empty`,
		`rootDir: Invalid value: "relative": must be an absolute path`,
		`runtimeRequestTimeout: Invalid value: "-1s": must be positive`,
		`healthzPort: Invalid value: 70000: must be a port number, or 0 for none`,
		`healthzBindAddress: Invalid value: "localhost": not an IP address`,
		`allowedUnsafeSysctls[1]: Invalid value: "net.*.foo"`,
		`proxy.nodePortAddresses[1]: Invalid value: "primary": want "primary" alone, or CIDRs`,
		`proxy.clusterCIDR: Invalid value: "10.244.0.0": not a CIDR`,
		`metricsBindAddress: Invalid value: "localhost:10249": want IP:port`,
		`proxy.healthzBindAddress: Invalid value: "0.0.0.0:99999": want IP:port`,
		`dns.localAddress: Invalid value: "169.254.20": not an IP address`,
		`dns.upstreams[1]: Invalid value: "dns.example:53": want an IP or IP:port`,
		`dns.port: Invalid value: 0: must be 1-65535`,
		`logs.receivers: Required value: log shipping needs at least one receiver`,
		`logs.bufferLimit: Invalid value: "lots": want a positive quantity`,
		`logs.flushInterval: Invalid value: "0s": must be positive`,
		`logs.passwordFile: Required value: username needs a password`,
		`readOnlyPort: Invalid value: 10255: the unauthenticated read-only port is not served`,
		`authorization.mode: Unsupported value: "RBAC": supported values: "Webhook", "AlwaysAllow"`,
		`authentication.webhook.cacheTTL: Invalid value: "-1m0s": must not be negative`,
		`kubeAPIBurst: Invalid value: 0: must be at least 1 when kubeAPIQPS bounds the requests`,
		`eventRecordQPS: Invalid value: -1: must not be negative`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q\nlack %q", got, want)
		}
	}
}

func TestLoadFileRejectsFieldNamesInTheWrongCase(t *testing.T) {
	_, err := LoadFile(testutil.WriteFile(t, "config.yaml", "apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\nmaxpods: 3\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "maxpods"`) {
		t.Fatalf("err = %v, want maxpods rejected (the field is maxPods)", err)
	}
}

func TestValidateRejectsUnloadableKubeconfig(t *testing.T) {
	c := Default()
	c.Kubeconfig = testutil.WriteFile(t, "config.yaml", "not: [a kubeconfig")
	if got := c.Validate().ToAggregate().Error(); !strings.Contains(got, "kubeconfig: Invalid value") {
		t.Errorf("errors = %q, want kubeconfig invalid", got)
	}
}

func TestValidateRequiresKubeconfig(t *testing.T) {
	got := Default().Validate().ToAggregate().Error()
	if !strings.Contains(got, "kubeconfig: Required value") {
		t.Errorf("errors = %q, want kubeconfig required", got)
	}
}

func TestShippedExampleConfigLoads(t *testing.T) {
	c, err := LoadFile("../../deploy/nodeagent.yaml")
	if err != nil {
		t.Fatalf("deploy/nodeagent.yaml: %v", err)
	}
	if c.Kubeconfig != "/etc/nodeagent/kubeconfig" || c.MaxPods != 110 || !c.DNS.Enabled {
		t.Errorf("example config read as %+v", c)
	}
	// Without clusterDNS, pods use the agent's own DNS server.
	if got := c.PodNameservers(); len(got) != 1 || got[0] != "169.254.20.10" {
		t.Errorf("pod nameservers %v, want the agent's 169.254.20.10", got)
	}
}

func TestClusterCIDRTakesOneRangePerFamily(t *testing.T) {
	for value, want := range map[string]string{
		"":                                "[]",
		"10.244.0.0/16":                   "[10.244.0.0/16]",
		"10.244.0.0/16, fd00:10:244::/56": "[10.244.0.0/16 fd00:10:244::/56]",
		"10.244.0.0/16,10.245.0.0/16":     "error: two CIDRs of the same family",
		"10.244.0.0/16,fd00::":            `error: not a CIDR: "fd00::"`,
	} {
		p := ProxyConfiguration{ClusterCIDR: value}
		cidrs, err := p.ClusterCIDRs()
		got := fmt.Sprint(cidrs)
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, want) {
			t.Errorf("clusterCIDR %q: %s, want %s", value, got, want)
		}
	}
}

func TestEvictionFlagTakesTheKubeletsForm(t *testing.T) {
	c := Default()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--eviction-hard", "memory.available<200Mi, nodefs.available<5%"}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"memory.available": "200Mi", "nodefs.available": "5%"}; !maps.Equal(c.EvictionHard, want) {
		t.Errorf("evictionHard = %v, want %v (the flag replaces the defaults)", c.EvictionHard, want)
	}
	if err := fs.Parse([]string{"--eviction-hard", "memory.available=100Mi"}); err == nil || !strings.Contains(err.Error(), "want signal<value") {
		t.Errorf("a value without < gave %v, want it refused naming the form", err)
	}
}

// A kubelet configuration's node API fields are read as the kubelet reads them: the secure defaults unless
// set, and the read-only port off.
func TestLoadFileTakesTheKubeletsNodeAPIFields(t *testing.T) {
	c, err := LoadFile(testutil.WriteFile(t, "config.yaml", `apiVersion: nodeagent.io/v1alpha1
kind: NodeAgentConfiguration
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {cacheTTL: 1m}
authorization:
  mode: Webhook
  webhook: {cacheUnauthorizedTTL: 10s}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, z := c.Authentication, c.Authorization
	if a.Anonymous.Enabled || !a.Webhook.Enabled || a.Webhook.CacheTTL.Duration != time.Minute {
		t.Errorf("authentication %+v, want anonymous off, tokens on with a 1m cache", a)
	}
	if z.Mode != AuthorizationModeWebhook || z.Webhook.CacheAuthorizedTTL.Duration != 5*time.Minute ||
		z.Webhook.CacheUnauthorizedTTL.Duration != 10*time.Second {
		t.Errorf("authorization %+v, want Webhook, 5m (the default) and 10s", z)
	}
}

// Standalone mode needs a manifest directory and a pod range, and refuses what needs an API server.
func TestValidateStandalone(t *testing.T) {
	c := Default()
	c.Standalone.Enabled = true
	c.Standalone.ServiceCIDR = "10.96.0.0/30"
	c.Kubeconfig = "/etc/kubernetes/kubelet.conf"
	c.StaticPodPath = "/etc/kubernetes/manifests"
	got := c.Validate().ToAggregate().Error()
	for _, want := range []string{
		"standalone.manifestDir: Required value",
		"podCIDR: Required value",
		`standalone.serviceCIDR: Invalid value: "10.96.0.0/30": want a CIDR of at least 256 addresses`,
		"kubeconfig: Forbidden: standalone mode runs without an API server",
		"staticPodPath: Forbidden",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q\nlack %q", got, want)
		}
	}
	c = Default()
	c.Standalone = StandaloneConfiguration{Enabled: true, ManifestDir: "/etc/nodeagent/manifests", ServiceCIDR: "10.96.0.0/12"}
	c.PodCIDR = "10.244.0.0/24"
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("a standalone configuration without a kubeconfig: %v", errs)
	}
}
