// Package config owns nodeagent's configuration: the versioned file format, its defaults, the kubelet-style
// command-line flags that override it, and validation with field paths. It must not start anything.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	// APIVersion and Kind identify the config file format.
	APIVersion = "nodeagent.io/v1alpha1"
	Kind       = "NodeAgentConfiguration"
)

// Configuration is the whole configuration of one agent. JSON names are the config file's field names.
type Configuration struct {
	metav1.TypeMeta `json:",inline"`

	// Kubeconfig is the path of the kubeconfig the agent uses to reach the API server as its node.
	Kubeconfig string `json:"kubeconfig"`
	// BootstrapKubeconfig, as the kubelet's --bootstrap-kubeconfig, holds credentials (a bootstrap token) that
	// may request the node's client certificate when Kubeconfig is missing or its certificate expired; the
	// agent then writes Kubeconfig to name the certificate it keeps in <rootDir>/pki and rotates.
	BootstrapKubeconfig string `json:"bootstrapKubeconfig,omitempty"`
	// HostnameOverride, when set, is the node's name instead of the host name.
	HostnameOverride string `json:"hostnameOverride,omitempty"`
	// NodeIP is the node's InternalIP; empty means the address of the default-route interface.
	NodeIP string `json:"nodeIP,omitempty"`
	// ContainerRuntimeEndpoint is the CRI socket, e.g. unix:///run/containerd/containerd.sock.
	ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint"`
	// RootDir holds the agent's own state.
	RootDir string `json:"rootDir"`
	// PodLogsDir is where container log directories are created, as the kubelet's /var/log/pods.
	PodLogsDir string `json:"podLogsDir"`
	// ContainerLogLinksDir gets a link to each container's log named <pod>_<namespace>_<container>-<id>.log,
	// as the kubelet's /var/log/containers, where log shippers set up for the kubelet look; "" means none.
	ContainerLogLinksDir string `json:"containerLogLinksDir"`
	// CNIConfDir is where the agent writes its CNI conflist once the node has a podCIDR.
	CNIConfDir string `json:"cniConfDir"`
	// CNIBridge is the Linux bridge the agent's CNI config attaches pods to (and names its network after).
	CNIBridge string `json:"cniBridge"`
	// PodCIDR is the node's pod range when the API server does not assign one.
	PodCIDR string `json:"podCIDR,omitempty"`
	// MaxPods is the node's pod capacity.
	MaxPods int32 `json:"maxPods"`
	// ClusterDNS are the resolver addresses given to pods with dnsPolicy ClusterFirst.
	ClusterDNS []string `json:"clusterDNS,omitempty"`
	// ClusterDomain is the cluster's DNS domain.
	ClusterDomain string `json:"clusterDomain"`
	// NodeStatusUpdateFrequency is how often the node status is computed (and posted if it changed).
	NodeStatusUpdateFrequency metav1.Duration `json:"nodeStatusUpdateFrequency"`
	// NodeStatusReportFrequency is how often the status is posted even when nothing changed.
	NodeStatusReportFrequency metav1.Duration `json:"nodeStatusReportFrequency"`
	// NodeLeaseDurationSeconds is the Lease's duration; it is renewed every quarter of it.
	NodeLeaseDurationSeconds int32 `json:"nodeLeaseDurationSeconds"`
	// KubeletPort is the node API's port, which the node advertises.
	KubeletPort int32 `json:"port"`
	// Address is the IP address the node API listens on (the kubelet's address; all by default).
	Address string `json:"address"`
	// HealthzBindAddress and HealthzPort are where the kubelet's unauthenticated /healthz is served
	// (127.0.0.1:10248); port 0 turns it off. The flag --healthz-bind-address is kube-proxy's (the
	// proxy's host:port), so the node's address is set in the file only.
	HealthzBindAddress string `json:"healthzBindAddress"`
	HealthzPort        int32  `json:"healthzPort"`
	// TLSCertFile and TLSPrivateKeyFile are the node API's serving certificate; when both are empty a
	// self-signed one for the node's addresses and host name is made in <rootDir>/pki.
	TLSCertFile       string `json:"tlsCertFile,omitempty"`
	TLSPrivateKeyFile string `json:"tlsPrivateKeyFile,omitempty"`
	// ServerTLSBootstrap has the cluster sign the node API's serving certificate, as the kubelet's: a
	// kubernetes.io/kubelet-serving CSR for the node's addresses, kept in <rootDir>/pki and rotated before it
	// expires. The cluster must approve the CSR (the controller-manager does not approve this signer).
	ServerTLSBootstrap bool `json:"serverTLSBootstrap,omitempty"`
	// Authentication says which clients the node API knows.
	Authentication NodeAPIAuthentication `json:"authentication"`
	// Authorization says what they may do.
	Authorization NodeAPIAuthorization `json:"authorization"`
	// ReadOnlyPort is the kubelet's unauthenticated read-only port, which is not served: only 0 is accepted, so
	// a kubelet configuration that turns it off is taken as it is and one that turns it on is refused.
	ReadOnlyPort int32 `json:"readOnlyPort"`
	// StaticPodPath is a directory of Pod manifests that the agent runs without the API server (static pods),
	// showing each in the API as a mirror pod; empty means none.
	StaticPodPath string `json:"staticPodPath,omitempty"`
	// FileCheckFrequency is how often the static pod directory is read again besides watching it.
	FileCheckFrequency metav1.Duration `json:"fileCheckFrequency"`
	// RuntimeRequestTimeout bounds each CRI call but the long-running ones (the sandbox calls get twice
	// it), as the kubelet's: under a burst, stopping or starting many pods makes single calls slow.
	RuntimeRequestTimeout metav1.Duration `json:"runtimeRequestTimeout"`
	// ContainerLogMaxSize is the size (a quantity, e.g. 10Mi) at which a container's log is rotated.
	ContainerLogMaxSize string `json:"containerLogMaxSize"`
	// ContainerLogMaxFiles is how many log files a container keeps, the live one included.
	ContainerLogMaxFiles int32 `json:"containerLogMaxFiles"`
	// ContainerLogMonitorInterval is how often the logs' sizes are checked.
	ContainerLogMonitorInterval metav1.Duration `json:"containerLogMonitorInterval"`
	// EvictionHard are the hard eviction thresholds, signal → quantity or percentage, as the kubelet's
	// (memory.available, nodefs.available, nodefs.inodesFree).
	EvictionHard map[string]string `json:"evictionHard,omitempty"`
	// EvictionSoft are thresholds that evict only once met for their EvictionSoftGracePeriod (signal →
	// duration, one each), giving the pod its terminationGracePeriodSeconds up to EvictionMaxPodGracePeriod.
	EvictionSoft              map[string]string `json:"evictionSoft,omitempty"`
	EvictionSoftGracePeriod   map[string]string `json:"evictionSoftGracePeriod,omitempty"`
	EvictionMaxPodGracePeriod int32             `json:"evictionMaxPodGracePeriod"`
	// ImageGCHighThresholdPercent of the image filesystem used starts the removal of unused images, down to
	// ImageGCLowThresholdPercent; images are kept at least ImageMinimumGCAge after they were first seen.
	ImageGCHighThresholdPercent int32           `json:"imageGCHighThresholdPercent"`
	ImageGCLowThresholdPercent  int32           `json:"imageGCLowThresholdPercent"`
	ImageMinimumGCAge           metav1.Duration `json:"imageMinimumGCAge"`
	// EvictionPressureTransitionPeriod keeps a pressure condition after its threshold stopped being met.
	EvictionPressureTransitionPeriod metav1.Duration `json:"evictionPressureTransitionPeriod"`
	// MaxParallelSandboxCreations bounds the pod sandboxes being created at once; 0 means twice the CPUs.
	// On a small node a burst of pods then starts in waves instead of all crawling together: the first pods
	// are ready much sooner, the last no later.
	MaxParallelSandboxCreations int32 `json:"maxParallelSandboxCreations"`
	// CgroupsPerQOS puts pods in the kubelet's cgroup tree: kubepods, a cgroup per QoS class, one per pod.
	CgroupsPerQOS bool `json:"cgroupsPerQOS"`
	// CgroupRoot is where that tree starts ("/" puts it at /kubepods).
	CgroupRoot string `json:"cgroupRoot"`
	// MaxParallelImagePulls bounds the image pulls in flight (1 pulls one image at a time, as the kubelet's
	// serializeImagePulls; 0 means no bound).
	MaxParallelImagePulls int32 `json:"maxParallelImagePulls"`
	// AllowedUnsafeSysctls are sysctls (or prefixes ending in *) that pods may set beyond the safe set.
	AllowedUnsafeSysctls []string `json:"allowedUnsafeSysctls,omitempty"`
	// KubeAPIQPS and KubeAPIBurst bound the agent's requests to the API server (a token bucket: so many a
	// second, bursts of so many), EventRecordQPS and EventBurst its Events, which go through a client of
	// their own so that a burst of Events never delays a status; the kubelet's fields, with its defaults
	// (50 and 100 each). 0 QPS means no bound (the kubelet gives client-go's 5 a second for a kubeAPIQPS of
	// 0, and no bound for an eventRecordQPS of 0).
	KubeAPIQPS     int32 `json:"kubeAPIQPS"`
	KubeAPIBurst   int32 `json:"kubeAPIBurst"`
	EventRecordQPS int32 `json:"eventRecordQPS"`
	EventBurst     int32 `json:"eventBurst"`
	// MetricsBindAddress is where /metrics is served (host:port, kube-proxy's default); "" turns it off.
	MetricsBindAddress string `json:"metricsBindAddress"`
	// EnableProfiling serves Go's /debug/pprof/ handlers on MetricsBindAddress, as kube-proxy's
	// enableProfiling does: heap and CPU profiles of a running agent.
	EnableProfiling bool `json:"enableProfiling"`
	// Proxy is the Service proxy, kube-proxy's part of the node.
	Proxy ProxyConfiguration `json:"proxy"`
	// PodNetwork is the routes between nodes' pods, kindnet's part of the node.
	PodNetwork PodNetworkConfiguration `json:"podNetwork"`
	// ResolvConf is the node's resolver file (the kubelet's --resolv-conf): pods with dnsPolicy Default get
	// its servers, searches and options, cluster pods its searches, and the DNS server its nameservers as
	// upstreams unless dns.upstreams names them; "" means none.
	ResolvConf string `json:"resolvConf"`
	// DNS is the cluster DNS server, CoreDNS's (or NodeLocal DNSCache's) part of the node.
	DNS DNSConfiguration `json:"dns"`
	// Logs is the container log shipper, Fluent Bit's part of the node.
	Logs LogsConfiguration `json:"logs"`
	// Standalone runs the node without an API server, from a directory of manifests.
	Standalone StandaloneConfiguration `json:"standalone"`
	// LocalAPISocket is a unix socket (mode 0600) serving the node API to root on this host without
	// credentials, for nodeagent get and describe; "" turns it off.
	LocalAPISocket string `json:"localAPISocket"`
}

// StandaloneConfiguration is the node without a cluster: no kubeconfig, no Node registration; the Pods,
// Services, ConfigMaps and Secrets come from files, the Services' endpoints from the node's own pods.
type StandaloneConfiguration struct {
	// Enabled runs the node from ManifestDir instead of an API server (--standalone).
	Enabled bool `json:"enabled"`
	// ManifestDir holds the objects as YAML or JSON files, several per file separated by --- (--manifests).
	ManifestDir string `json:"manifestDir,omitempty"`
	// ServiceCIDR is where Services that name no clusterIP get one, as the API server's
	// --service-cluster-ip-range.
	ServiceCIDR string `json:"serviceCIDR"`
}

// LogsConfiguration is the log shipper's part: Fluent Bit's tail input, kubernetes filter and forward
// output, with its defaults where it has one.
type LogsConfiguration struct {
	// Enabled makes the agent ship its pods' container logs to Receivers.
	Enabled bool `json:"enabled"`
	// Receivers are Fluentd forward protocol receivers (host:port), the first preferred; the next one takes
	// over when one fails.
	Receivers []string `json:"receivers,omitempty"`
	// TagTemplate makes each container's tag from ${namespace}, ${pod}, ${pod_id}, ${container},
	// ${container_id} and ${node}; the default is Fluent Bit's kube.var.log.containers... tag.
	TagTemplate string `json:"tagTemplate"`
	// Gzip sends CompressedPackedForward.
	Gzip bool `json:"gzip"`
	// ParseJSON merges the fields of messages that are JSON objects into their records (Fluent Bit's
	// Merge_Log).
	ParseJSON bool `json:"parseJSON"`
	// FlushInterval is the longest a record waits in its chunk before the chunk is sent (Fluent Bit's Flush).
	FlushInterval metav1.Duration `json:"flushInterval"`
	// ChunkSize bounds the records' bytes in one chunk (one forward message), e.g. "1Mi".
	ChunkSize string `json:"chunkSize"`
	// BufferLimit bounds the chunks waiting on disk under rootDir; past it the oldest are dropped and counted
	// (Fluent Bit's storage.total_limit_size).
	BufferLimit string `json:"bufferLimit"`
	// Timeout bounds connecting to a receiver and each exchange with it.
	Timeout metav1.Duration `json:"timeout"`
	// RetryMaxInterval bounds the back-off between attempts while no receiver takes the records.
	RetryMaxInterval metav1.Duration `json:"retryMaxInterval"`
	// TLS, when set, makes every connection a TLS one.
	TLS *LogsTLSConfiguration `json:"tls,omitempty"`
	// SharedKeyFile, when set, holds the shared key of the protocol's HELO/PING/PONG handshake.
	SharedKeyFile string `json:"sharedKeyFile,omitempty"`
	// Username and PasswordFile add user authentication to the handshake.
	Username     string `json:"username,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty"`
}

// LogsTLSConfiguration is how the shipper checks its receivers and proves who it is.
type LogsTLSConfiguration struct {
	// CAFile holds the certificates that may sign a receiver's; empty means the host's roots.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are the client certificate, for receivers that ask for one.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ServerName is the name checked in a receiver's certificate; empty means the receiver's host.
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify accepts any certificate: traffic is encrypted, the receiver is not checked.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// LogsChunkBytes is logs.chunkSize in bytes; call it on a validated configuration.
func (c *Configuration) LogsChunkBytes() int64 {
	q := resource.MustParse(c.Logs.ChunkSize)
	return q.Value()
}

// LogsBufferBytes is logs.bufferLimit in bytes; call it on a validated configuration.
func (c *Configuration) LogsBufferBytes() int64 {
	q := resource.MustParse(c.Logs.BufferLimit)
	return q.Value()
}

// NodeAPIAuthentication is the node API's authentication, as the kubelet's: client certificates signed by
// a CA of X509.ClientCAFile, and bearer tokens through TokenReview. Anonymous requests are refused unless
// Anonymous.Enabled.
type NodeAPIAuthentication struct {
	X509      NodeAPIX509Authentication      `json:"x509"`
	Webhook   NodeAPIWebhookAuthentication   `json:"webhook"`
	Anonymous NodeAPIAnonymousAuthentication `json:"anonymous"`
}

// NodeAPIWebhookAuthentication is bearer-token authentication through the API server's TokenReview.
type NodeAPIWebhookAuthentication struct {
	// Enabled accepts bearer tokens (the default); false accepts client certificates only.
	Enabled bool `json:"enabled"`
	// CacheTTL is how long a TokenReview's answer is kept.
	CacheTTL metav1.Duration `json:"cacheTTL"`
}

// NodeAPIAnonymousAuthentication lets requests without credentials through as system:anonymous (in
// system:unauthenticated), for authorization to decide; off by default, as kubeadm sets the kubelet.
type NodeAPIAnonymousAuthentication struct {
	Enabled bool `json:"enabled"`
}

// NodeAPIAuthorization is the node API's authorization, as the kubelet's.
type NodeAPIAuthorization struct {
	// Mode is Webhook (a SubjectAccessReview per user, verb and subresource; the default) or AlwaysAllow
	// (every authenticated request).
	Mode    string                      `json:"mode"`
	Webhook NodeAPIWebhookAuthorization `json:"webhook"`
}

// NodeAPIWebhookAuthorization are the times a SubjectAccessReview's answer is kept.
type NodeAPIWebhookAuthorization struct {
	CacheAuthorizedTTL   metav1.Duration `json:"cacheAuthorizedTTL"`
	CacheUnauthorizedTTL metav1.Duration `json:"cacheUnauthorizedTTL"`
}

// The node API's authorization modes.
const (
	AuthorizationModeWebhook     = "Webhook"
	AuthorizationModeAlwaysAllow = "AlwaysAllow"
)

// NodeAPIX509Authentication names the CA bundle of client certificates; "" means the kubeconfig's cluster CA.
type NodeAPIX509Authentication struct {
	ClientCAFile string `json:"clientCAFile,omitempty"`
}

// DNSConfiguration is the node-local cluster DNS server's part.
type DNSConfiguration struct {
	// Enabled makes the agent answer cluster DNS for its pods. Pods use it when clusterDNS is empty.
	Enabled bool `json:"enabled"`
	// LocalAddress is the address the agent adds to a link of its own (nodeagent-local) and serves DNS on,
	// reachable from every pod through its default route; the default is NodeLocal DNSCache's. A loopback
	// address serves the node only.
	LocalAddress string `json:"localAddress"`
	// Port is the UDP and TCP port served.
	Port int32 `json:"port"`
	// Upstreams are the resolvers (IP or IP:port) that names outside the cluster are forwarded to; empty
	// means the nameservers of resolvConf.
	Upstreams []string `json:"upstreams,omitempty"`
	// CacheSize bounds the upstream answers kept (CoreDNS's cache default).
	CacheSize int32 `json:"cacheSize"`
	// SocketHolder keeps the DNS sockets in a small process of their own (`nodeagent dns-socket-holder`) that
	// outlives the agent, so queries sent while the agent restarts wait in the socket for the next one
	// instead of finding nothing listening.
	SocketHolder bool `json:"socketHolder"`
}

// PodNetworkConfiguration is kindnet's part: the agent writes the node's CNI config in any case.
type PodNetworkConfiguration struct {
	// Enabled routes every other Node's spec.podCIDRs via its InternalIP and masquerades pod traffic that
	// leaves the cluster's pod ranges (the Nodes' podCIDRs and proxy.clusterCIDR). Turn it off where
	// something else routes between nodes (a cloud's routes, another CNI's daemon).
	Enabled bool `json:"enabled"`
}

// ProxyConfiguration is the Service proxy's part, with kube-proxy's names.
type ProxyConfiguration struct {
	// Enabled makes the agent program Service VIPs in nftables (kube-proxy --proxy-mode=nftables). Turn it
	// off where another proxy (a kube-proxy DaemonSet, Cilium, ...) serves the node.
	Enabled bool `json:"enabled"`
	// NodePortAddresses selects the node addresses that accept NodePorts: "primary" (the node's
	// InternalIPs) or CIDRs, whose addresses on this host are used.
	NodePortAddresses []string `json:"nodePortAddresses,omitempty"`
	// ClusterCIDR is the pods' range, or comma-separated one IPv4 and one IPv6 range on a dual-stack
	// cluster (as kube-proxy's --cluster-cidr): traffic to a ClusterIP from outside it is masqueraded.
	// Empty: the node's podCIDRs.
	ClusterCIDR string `json:"clusterCIDR,omitempty"`
	// SyncPeriod is how often the whole table is rewritten from the cache; changes are written as they come.
	SyncPeriod metav1.Duration `json:"syncPeriod"`
	// HealthzBindAddress is where kube-proxy's /healthz and /livez are served (host:port); "" turns it off.
	HealthzBindAddress string `json:"healthzBindAddress"`
}

// evictionFlag is --eviction-hard or --eviction-soft in the kubelet's "signal<value,..." form; setting it
// replaces the map.
type evictionFlag struct{ m *map[string]string }

func (f *evictionFlag) String() string {
	if f.m == nil {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(*f.m)) {
		parts = append(parts, k+"<"+(*f.m)[k])
	}
	return strings.Join(parts, ",")
}

func (f *evictionFlag) Set(s string) error {
	m, err := parseEvictionFlag(s)
	if err != nil {
		return err
	}
	*f.m = m
	return nil
}

func (f *evictionFlag) Type() string { return "mapStringString" }

// parseEvictionFlag reads the kubelet's --eviction-hard form: "memory.available<100Mi,nodefs.available<10%".
// What the signals and values mean is the eviction manager's to check (agent.Complete).
func parseEvictionFlag(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		signal, value, ok := strings.Cut(part, "<")
		if !ok {
			return nil, fmt.Errorf("%q: want signal<value", part)
		}
		out[strings.TrimSpace(signal)] = strings.TrimSpace(value)
	}
	return out, nil
}

// DefaultEvictionHard is the kubelet's default evictionHard for the signals the agent observes.
func DefaultEvictionHard() map[string]string {
	return map[string]string{"memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%",
		"imagefs.available": "15%", "imagefs.inodesFree": "5%"}
}

// DefaultLogTag is Fluent Bit's tag for a container's records with its kubernetes filter's usual setup
// (tail on /var/log/containers/*.log, Tag kube.*), so receivers' routing rules written for Fluent Bit keep
// working.
const DefaultLogTag = "kube.var.log.containers.${pod}_${namespace}_${container}-${container_id}.log"

// SandboxCreationLimit is MaxParallelSandboxCreations with 0 resolved to twice the CPUs.
func (c *Configuration) SandboxCreationLimit() int {
	if c.MaxParallelSandboxCreations > 0 {
		return int(c.MaxParallelSandboxCreations)
	}
	return 2 * runtime.NumCPU()
}

// ContainerLogMaxBytes is ContainerLogMaxSize in bytes; call it on a validated configuration.
func (c *Configuration) ContainerLogMaxBytes() int64 {
	q := resource.MustParse(c.ContainerLogMaxSize)
	return q.Value()
}

// Default returns the configuration a kubelet user would expect with no file and no flags.
func Default() *Configuration {
	return &Configuration{
		TypeMeta:                  metav1.TypeMeta{APIVersion: APIVersion, Kind: Kind},
		ContainerRuntimeEndpoint:  "unix:///run/containerd/containerd.sock",
		RootDir:                   "/var/lib/nodeagent",
		PodLogsDir:                "/var/log/pods",
		ContainerLogLinksDir:      "/var/log/containers",
		CNIConfDir:                "/etc/cni/net.d",
		CNIBridge:                 "nodeagent0",
		MaxPods:                   110,
		ClusterDomain:             "cluster.local",
		NodeStatusUpdateFrequency: metav1.Duration{Duration: 10 * time.Second},
		NodeStatusReportFrequency: metav1.Duration{Duration: 5 * time.Minute},
		NodeLeaseDurationSeconds:  40,
		KubeletPort:               10250,
		HealthzBindAddress:        "127.0.0.1",
		HealthzPort:               10248,
		Address:                   "0.0.0.0",
		Authentication: NodeAPIAuthentication{Webhook: NodeAPIWebhookAuthentication{Enabled: true,
			CacheTTL: metav1.Duration{Duration: 2 * time.Minute}}},
		Authorization: NodeAPIAuthorization{Mode: AuthorizationModeWebhook, Webhook: NodeAPIWebhookAuthorization{
			CacheAuthorizedTTL: metav1.Duration{Duration: 5 * time.Minute}, CacheUnauthorizedTTL: metav1.Duration{Duration: 30 * time.Second}}},
		MaxParallelImagePulls:            5,
		KubeAPIQPS:                       50,
		KubeAPIBurst:                     100,
		EventRecordQPS:                   50,
		EventBurst:                       100,
		FileCheckFrequency:               metav1.Duration{Duration: 20 * time.Second},
		RuntimeRequestTimeout:            metav1.Duration{Duration: 2 * time.Minute},
		ContainerLogMaxSize:              "10Mi",
		ContainerLogMaxFiles:             5,
		ContainerLogMonitorInterval:      metav1.Duration{Duration: 10 * time.Second},
		EvictionHard:                     DefaultEvictionHard(),
		EvictionPressureTransitionPeriod: metav1.Duration{Duration: 5 * time.Minute},
		ImageGCHighThresholdPercent:      85,
		ImageGCLowThresholdPercent:       80,
		ImageMinimumGCAge:                metav1.Duration{Duration: 2 * time.Minute},
		CgroupsPerQOS:                    true,
		CgroupRoot:                       "/",
		MetricsBindAddress:               "127.0.0.1:10249",
		Proxy: ProxyConfiguration{
			Enabled:            true,
			NodePortAddresses:  []string{"primary"},
			SyncPeriod:         metav1.Duration{Duration: time.Hour},
			HealthzBindAddress: "0.0.0.0:10256",
		},
		PodNetwork:     PodNetworkConfiguration{Enabled: true},
		Standalone:     StandaloneConfiguration{ServiceCIDR: "10.96.0.0/12"},
		LocalAPISocket: "/run/nodeagent/nodeagent.sock",
		ResolvConf:     "/etc/resolv.conf",
		DNS:            DNSConfiguration{Enabled: true, LocalAddress: "169.254.20.10", Port: 53, CacheSize: 9984, SocketHolder: true},
		Logs: LogsConfiguration{
			TagTemplate:      DefaultLogTag,
			FlushInterval:    metav1.Duration{Duration: time.Second},
			ChunkSize:        "1Mi",
			BufferLimit:      "512Mi",
			Timeout:          metav1.Duration{Duration: 10 * time.Second},
			RetryMaxInterval: metav1.Duration{Duration: 30 * time.Second},
		},
	}
}

// NewFlagSet is the agent's flag set: --config (into configFile), c's flags and klog's.
func (c *Configuration) NewFlagSet(name string, configFile *string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.StringVar(configFile, "config", "", "Path to a "+Kind+" YAML file ("+APIVersion+"); flags override it.")
	c.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	return fs
}

// AddFlags binds the kubelet-style flags to c's fields, so parsing them overrides what c already holds.
func (c *Configuration) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "Path to a kubeconfig for the API server.")
	fs.StringVar(&c.BootstrapKubeconfig, "bootstrap-kubeconfig", c.BootstrapKubeconfig,
		"Path to a kubeconfig with a bootstrap token: when --kubeconfig is missing or its certificate expired, the agent requests a client certificate with it and writes --kubeconfig.")
	fs.StringVar(&c.HostnameOverride, "hostname-override", c.HostnameOverride, "Node name to use instead of the host name.")
	fs.StringVar(&c.NodeIP, "node-ip", c.NodeIP, "InternalIP of the node; empty: the default-route interface's address.")
	fs.StringVar(&c.ContainerRuntimeEndpoint, "container-runtime-endpoint", c.ContainerRuntimeEndpoint, "CRI endpoint.")
	fs.StringVar(&c.RootDir, "root-dir", c.RootDir, "Directory for the agent's own state.")
	fs.StringVar(&c.PodLogsDir, "pod-logs-dir", c.PodLogsDir, "Directory for container log directories.")
	fs.StringVar(&c.ContainerLogLinksDir, "container-log-links-dir", c.ContainerLogLinksDir,
		"Directory for the links to container logs named as the kubelet's in /var/log/containers (\"\" for none).")
	fs.StringVar(&c.CNIConfDir, "cni-conf-dir", c.CNIConfDir, "Directory the agent writes its CNI conflist into.")
	fs.StringVar(&c.CNIBridge, "cni-bridge", c.CNIBridge, "Linux bridge the agent's CNI config attaches pods to.")
	fs.StringVar(&c.PodCIDR, "pod-cidr", c.PodCIDR, "Pod range when the API server assigns none.")
	fs.Int32Var(&c.MaxPods, "max-pods", c.MaxPods, "Number of pods the node can run.")
	fs.StringSliceVar(&c.ClusterDNS, "cluster-dns", c.ClusterDNS, "Comma-separated DNS server addresses for pods.")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "Cluster DNS domain.")
	fs.DurationVar(&c.NodeStatusUpdateFrequency.Duration, "node-status-update-frequency", c.NodeStatusUpdateFrequency.Duration, "How often node status is computed.")
	fs.Int32Var(&c.KubeletPort, "port", c.KubeletPort, "Port of the node API, advertised in the Node.")
	fs.StringVar(&c.Address, "address", c.Address, "IP address the node API listens on.")
	fs.Int32Var(&c.HealthzPort, "healthz-port", c.HealthzPort, "Port of the unauthenticated /healthz; 0 turns it off.")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "The node API's serving certificate (default: self-signed in <root-dir>/pki).")
	fs.StringVar(&c.TLSPrivateKeyFile, "tls-private-key-file", c.TLSPrivateKeyFile, "The key of --tls-cert-file.")
	fs.StringVar(&c.Authentication.X509.ClientCAFile, "client-ca-file", c.Authentication.X509.ClientCAFile,
		"CA bundle of the node API's client certificates (default: the kubeconfig's cluster CA).")
	fs.StringVar(&c.StaticPodPath, "pod-manifest-path", c.StaticPodPath, "Directory of static pod manifests.")
	fs.BoolVar(&c.Standalone.Enabled, "standalone", c.Standalone.Enabled, "Run without an API server: Pods, Services, ConfigMaps and Secrets from --manifests.")
	fs.StringVar(&c.Standalone.ManifestDir, "manifests", c.Standalone.ManifestDir, "With --standalone: the directory of YAML or JSON manifests.")
	fs.StringVar(&c.Standalone.ServiceCIDR, "service-cidr", c.Standalone.ServiceCIDR, "With --standalone: the range of the cluster IPs given to Services that name none.")
	fs.StringVar(&c.LocalAPISocket, "local-api-socket", c.LocalAPISocket, "Unix socket serving the node API to root on this host, for nodeagent get and describe (\"\": none).")
	fs.StringVar(&c.ContainerLogMaxSize, "container-log-max-size", c.ContainerLogMaxSize, "Size at which a container log is rotated.")
	fs.Int32Var(&c.ContainerLogMaxFiles, "container-log-max-files", c.ContainerLogMaxFiles, "Log files kept per container, the live one included.")
	fs.Int32Var(&c.ImageGCHighThresholdPercent, "image-gc-high-threshold", c.ImageGCHighThresholdPercent,
		"Percent of the image filesystem used from which unused images are removed (100: never).")
	fs.Int32Var(&c.ImageGCLowThresholdPercent, "image-gc-low-threshold", c.ImageGCLowThresholdPercent,
		"Percent of the image filesystem used that image removal stops at.")
	fs.DurationVar(&c.ImageMinimumGCAge.Duration, "minimum-image-ttl-duration", c.ImageMinimumGCAge.Duration,
		"How long an image stays after it was first seen, used or not.")
	fs.Var(&evictionFlag{&c.EvictionHard}, "eviction-hard", `Hard eviction thresholds, e.g. "memory.available<100Mi,nodefs.available<10%".`)
	fs.Var(&evictionFlag{&c.EvictionSoft}, "eviction-soft", `Soft eviction thresholds, e.g. "memory.available<500Mi".`)
	fs.StringToStringVar(&c.EvictionSoftGracePeriod, "eviction-soft-grace-period", c.EvictionSoftGracePeriod,
		`How long each soft threshold must be met before it evicts, e.g. "memory.available=1m30s".`)
	fs.Int32Var(&c.EvictionMaxPodGracePeriod, "eviction-max-pod-grace-period", c.EvictionMaxPodGracePeriod,
		"Longest termination grace period (seconds) a pod gets when a soft threshold evicts it.")
	fs.BoolVar(&c.CgroupsPerQOS, "cgroups-per-qos", c.CgroupsPerQOS, "Create the kubepods cgroup tree with QoS class and pod cgroups.")
	fs.StringVar(&c.CgroupRoot, "cgroup-root", c.CgroupRoot, "Cgroup under which the kubepods tree is created.")
	fs.Int32Var(&c.MaxParallelImagePulls, "max-parallel-image-pulls", c.MaxParallelImagePulls,
		"Most image pulls in flight at once; 1 serializes them, 0 means no bound.")
	fs.Int32Var(&c.MaxParallelSandboxCreations, "max-parallel-sandbox-creations", c.MaxParallelSandboxCreations,
		"Most pod sandboxes created at once; 0 means twice the CPUs.")
	fs.Int32Var(&c.KubeAPIQPS, "kube-api-qps", c.KubeAPIQPS, "Requests a second to the API server, Events aside; 0 means no bound.")
	fs.Int32Var(&c.KubeAPIBurst, "kube-api-burst", c.KubeAPIBurst, "Requests to the API server allowed in a burst, Events aside.")
	fs.Int32Var(&c.EventRecordQPS, "event-qps", c.EventRecordQPS, "Events created a second; 0 means no bound.")
	fs.Int32Var(&c.EventBurst, "event-burst", c.EventBurst, "Events created in a burst.")
	fs.StringSliceVar(&c.AllowedUnsafeSysctls, "allowed-unsafe-sysctls", c.AllowedUnsafeSysctls,
		"Comma-separated unsafe sysctls or patterns (ending in *) pods may set.")
	fs.StringVar(&c.MetricsBindAddress, "metrics-bind-address", c.MetricsBindAddress,
		`host:port to serve /metrics on; "" turns it off.`)
	fs.BoolVar(&c.EnableProfiling, "profiling", c.EnableProfiling, "Serve /debug/pprof/ on the metrics address.")
	fs.StringVar(&c.Proxy.HealthzBindAddress, "healthz-bind-address", c.Proxy.HealthzBindAddress,
		`host:port to serve the proxy's /healthz and /livez on; "" turns it off.`)
	fs.BoolVar(&c.Proxy.Enabled, "enable-proxy", c.Proxy.Enabled, "Program Service VIPs in nftables, as kube-proxy does.")
	fs.BoolVar(&c.PodNetwork.Enabled, "enable-pod-routes", c.PodNetwork.Enabled, "Route to the other nodes' pod ranges and masquerade pod traffic leaving them, as kindnet does.")
	fs.StringSliceVar(&c.Proxy.NodePortAddresses, "nodeport-addresses", c.Proxy.NodePortAddresses,
		`"primary" or comma-separated CIDRs: the node addresses that accept NodePorts.`)
	fs.StringVar(&c.Proxy.ClusterCIDR, "cluster-cidr", c.Proxy.ClusterCIDR,
		"Pod range (dual-stack: an IPv4 and an IPv6 range, comma-separated); traffic to ClusterIPs from outside it is masqueraded (empty: the node's podCIDRs).")
	fs.StringVar(&c.ResolvConf, "resolv-conf", c.ResolvConf, "The node's resolver file, for dnsPolicy Default and DNS upstreams.")
	fs.BoolVar(&c.DNS.Enabled, "enable-dns", c.DNS.Enabled, "Answer cluster DNS for the node's pods, as CoreDNS does.")
	fs.StringVar(&c.DNS.LocalAddress, "dns-address", c.DNS.LocalAddress, "Node-local address the DNS server listens on.")
	fs.Int32Var(&c.DNS.Port, "dns-port", c.DNS.Port, "UDP and TCP port the DNS server listens on.")
	fs.BoolVar(&c.Logs.Enabled, "enable-log-shipping", c.Logs.Enabled, "Ship the pods' container logs over the Fluentd forward protocol, as Fluent Bit does.")
	fs.StringSliceVar(&c.Logs.Receivers, "log-receivers", c.Logs.Receivers, "Comma-separated forward protocol receivers (host:port), the first preferred.")
	fs.StringSliceVar(&c.DNS.Upstreams, "dns-upstreams", c.DNS.Upstreams,
		"Comma-separated resolvers (IP or IP:port) for names outside the cluster; empty: resolv-conf's nameservers.")
}

// PodNameservers are the resolvers given to pods with dnsPolicy ClusterFirst: clusterDNS, or the agent's
// own DNS address when clusterDNS is empty and the agent serves DNS.
func (c *Configuration) PodNameservers() []string {
	if len(c.ClusterDNS) == 0 && c.DNS.Enabled {
		return []string{c.DNS.LocalAddress}
	}
	return c.ClusterDNS
}

// LoadFile reads a config file over the defaults. Unknown fields and a wrong apiVersion/kind are errors.
func LoadFile(path string) (*Configuration, error) {
	c := Default()
	if err := c.LoadFile(path); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadFile reads the file at path over c: the fields the file sets replace c's, the others stay.
func (c *Configuration) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config file: %w", err)
	}
	jsonData, err := yaml.YAMLToJSON(bytes.TrimSpace(data))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	// encoding/json matches field names case-insensitively, which would accept "maxpods" silently;
	// sigs.k8s.io/json is the strict, case-sensitive decoder Kubernetes components use for their files.
	strictErrs, err := kjson.UnmarshalStrict(jsonData, c)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(strictErrs) > 0 {
		return fmt.Errorf("config file %s: %w", path, errors.Join(strictErrs...))
	}
	if errs := c.validateType(); len(errs) > 0 {
		return fmt.Errorf("config file %s: %w", path, errs.ToAggregate())
	}
	return nil
}

func (c *Configuration) validateType() field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{APIVersion}))
	}
	if c.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{Kind}))
	}
	return errs
}

func validateKubeconfig(path *field.Path, file string) field.ErrorList {
	if _, err := os.Stat(file); err != nil {
		return field.ErrorList{field.Invalid(path, file, "file does not exist or cannot be read")}
	}
	if _, err := clientcmd.BuildConfigFromFlags("", file); err != nil {
		return field.ErrorList{field.Invalid(path, file, err.Error())}
	}
	return nil
}

// Validate reports every invalid field with its path and the reason.
func (c *Configuration) Validate() field.ErrorList {
	errs := c.validateType()
	switch {
	case c.Standalone.Enabled:
		errs = append(errs, c.validateStandalone()...)
	case c.Kubeconfig == "":
		errs = append(errs, field.Required(field.NewPath("kubeconfig"), "the agent needs a kubeconfig to reach the API server"))
	case c.BootstrapKubeconfig != "":
		// The kubeconfig may not exist yet: the bootstrap credentials will make it.
		errs = append(errs, validateKubeconfig(field.NewPath("bootstrapKubeconfig"), c.BootstrapKubeconfig)...)
	default:
		errs = append(errs, validateKubeconfig(field.NewPath("kubeconfig"), c.Kubeconfig)...)
	}
	if c.NodeIP != "" && net.ParseIP(c.NodeIP) == nil {
		errs = append(errs, field.Invalid(field.NewPath("nodeIP"), c.NodeIP, "not an IP address"))
	}
	if c.PodCIDR != "" {
		if _, _, err := net.ParseCIDR(c.PodCIDR); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("podCIDR"), c.PodCIDR, "not a CIDR (want e.g. 10.244.0.0/24)"))
		}
	}
	for i, ip := range c.ClusterDNS {
		if net.ParseIP(ip) == nil {
			errs = append(errs, field.Invalid(field.NewPath("clusterDNS").Index(i), ip, "not an IP address"))
		}
	}
	for i, pattern := range c.AllowedUnsafeSysctls {
		if star := strings.Index(pattern, "*"); pattern == "" || star >= 0 && star != len(pattern)-1 {
			errs = append(errs, field.Invalid(field.NewPath("allowedUnsafeSysctls").Index(i), pattern,
				"want a sysctl name, or a prefix ending in a single *"))
		}
	}
	if c.StaticPodPath != "" && !filepath.IsAbs(c.StaticPodPath) {
		errs = append(errs, field.Invalid(field.NewPath("staticPodPath"), c.StaticPodPath, "must be an absolute path"))
	}
	if c.FileCheckFrequency.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("fileCheckFrequency"), c.FileCheckFrequency.Duration.String(), "must be positive"))
	}
	if c.RuntimeRequestTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("runtimeRequestTimeout"), c.RuntimeRequestTimeout.Duration.String(), "must be positive"))
	}
	if q, err := resource.ParseQuantity(c.ContainerLogMaxSize); err != nil || q.Sign() <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("containerLogMaxSize"), c.ContainerLogMaxSize, "want a positive quantity such as 10Mi"))
	}
	if c.ContainerLogMaxFiles < 2 {
		errs = append(errs, field.Invalid(field.NewPath("containerLogMaxFiles"), c.ContainerLogMaxFiles, "must be at least 2"))
	}
	for _, p := range []struct {
		name  string
		value int32
	}{{"imageGCHighThresholdPercent", c.ImageGCHighThresholdPercent}, {"imageGCLowThresholdPercent", c.ImageGCLowThresholdPercent}} {
		if p.value < 0 || p.value > 100 {
			errs = append(errs, field.Invalid(field.NewPath(p.name), p.value, "must be between 0 and 100"))
		}
	}
	if c.ImageGCLowThresholdPercent >= c.ImageGCHighThresholdPercent {
		errs = append(errs, field.Invalid(field.NewPath("imageGCLowThresholdPercent"), c.ImageGCLowThresholdPercent,
			fmt.Sprintf("must be less than imageGCHighThresholdPercent (%d)", c.ImageGCHighThresholdPercent)))
	}
	if c.ImageMinimumGCAge.Duration < 0 {
		errs = append(errs, field.Invalid(field.NewPath("imageMinimumGCAge"), c.ImageMinimumGCAge.Duration.String(), "must not be negative"))
	}
	if c.ContainerLogMonitorInterval.Duration < time.Second {
		errs = append(errs, field.Invalid(field.NewPath("containerLogMonitorInterval"), c.ContainerLogMonitorInterval.Duration.String(), "must be at least 1s"))
	}
	if c.EvictionMaxPodGracePeriod < 0 {
		errs = append(errs, field.Invalid(field.NewPath("evictionMaxPodGracePeriod"), c.EvictionMaxPodGracePeriod, "must not be negative"))
	}
	if !strings.HasPrefix(c.CgroupRoot, "/") {
		errs = append(errs, field.Invalid(field.NewPath("cgroupRoot"), c.CgroupRoot, "must be an absolute cgroup path"))
	}
	if c.CNIBridge == "" || len(c.CNIBridge) > 15 || strings.ContainsAny(c.CNIBridge, "/ ") {
		errs = append(errs, field.Invalid(field.NewPath("cniBridge"), c.CNIBridge, "want a Linux interface name (1-15 characters, no '/' or space)"))
	}
	if c.MaxParallelSandboxCreations < 0 {
		errs = append(errs, field.Invalid(field.NewPath("maxParallelSandboxCreations"), c.MaxParallelSandboxCreations, "must not be negative"))
	}
	if c.MaxParallelImagePulls < 0 {
		errs = append(errs, field.Invalid(field.NewPath("maxParallelImagePulls"), c.MaxParallelImagePulls, "must not be negative"))
	}
	for _, f := range []struct {
		name  string
		value int32
	}{{"kubeAPIQPS", c.KubeAPIQPS}, {"kubeAPIBurst", c.KubeAPIBurst}, {"eventRecordQPS", c.EventRecordQPS}, {"eventBurst", c.EventBurst}} {
		if f.value < 0 {
			errs = append(errs, field.Invalid(field.NewPath(f.name), f.value, "must not be negative"))
		}
	}
	if c.KubeAPIQPS > 0 && c.KubeAPIBurst == 0 {
		errs = append(errs, field.Invalid(field.NewPath("kubeAPIBurst"), c.KubeAPIBurst, "must be at least 1 when kubeAPIQPS bounds the requests"))
	}
	if c.EventRecordQPS > 0 && c.EventBurst == 0 {
		errs = append(errs, field.Invalid(field.NewPath("eventBurst"), c.EventBurst, "must be at least 1 when eventRecordQPS bounds the Events"))
	}
	errs = append(errs, validateBindAddress(field.NewPath("metricsBindAddress"), c.MetricsBindAddress)...)
	errs = append(errs, c.Proxy.validate(field.NewPath("proxy"))...)
	errs = append(errs, c.DNS.validate(field.NewPath("dns"))...)
	errs = append(errs, c.Logs.validate(field.NewPath("logs"))...)
	if c.MaxPods <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("maxPods"), c.MaxPods, "must be greater than 0"))
	}
	if c.ContainerRuntimeEndpoint == "" {
		errs = append(errs, field.Required(field.NewPath("containerRuntimeEndpoint"), ""))
	}
	for _, d := range []struct {
		path  string
		value string
	}{{"rootDir", c.RootDir}, {"podLogsDir", c.PodLogsDir}, {"cniConfDir", c.CNIConfDir}} {
		if d.value == "" || d.value[0] != '/' {
			errs = append(errs, field.Invalid(field.NewPath(d.path), d.value, "must be an absolute path"))
		}
	}
	if d := c.ContainerLogLinksDir; d != "" && !filepath.IsAbs(d) {
		errs = append(errs, field.Invalid(field.NewPath("containerLogLinksDir"), d, "must be an absolute path or empty"))
	}
	if c.NodeStatusUpdateFrequency.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("nodeStatusUpdateFrequency"), c.NodeStatusUpdateFrequency.String(), "must be positive"))
	}
	if c.NodeStatusReportFrequency.Duration < c.NodeStatusUpdateFrequency.Duration {
		errs = append(errs, field.Invalid(field.NewPath("nodeStatusReportFrequency"), c.NodeStatusReportFrequency.String(), "must not be shorter than nodeStatusUpdateFrequency"))
	}
	if c.NodeLeaseDurationSeconds <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("nodeLeaseDurationSeconds"), c.NodeLeaseDurationSeconds, "must be greater than 0"))
	}
	if c.KubeletPort <= 0 || c.KubeletPort > 65535 {
		errs = append(errs, field.Invalid(field.NewPath("port"), c.KubeletPort, "must be a port number"))
	}
	if c.HealthzPort < 0 || c.HealthzPort > 65535 {
		errs = append(errs, field.Invalid(field.NewPath("healthzPort"), c.HealthzPort, "must be a port number, or 0 for none"))
	}
	if net.ParseIP(c.HealthzBindAddress) == nil {
		errs = append(errs, field.Invalid(field.NewPath("healthzBindAddress"), c.HealthzBindAddress, "not an IP address"))
	}
	if net.ParseIP(c.Address) == nil {
		errs = append(errs, field.Invalid(field.NewPath("address"), c.Address, "not an IP address"))
	}
	if (c.TLSCertFile == "") != (c.TLSPrivateKeyFile == "") {
		errs = append(errs, field.Invalid(field.NewPath("tlsCertFile"), c.TLSCertFile, "tlsCertFile and tlsPrivateKeyFile go together"))
	}
	if c.ReadOnlyPort != 0 {
		errs = append(errs, field.Invalid(field.NewPath("readOnlyPort"), c.ReadOnlyPort,
			"the unauthenticated read-only port is not served: read /pods, /stats and /metrics on port with a token (deploy/prometheus)"))
	}
	if m := c.Authorization.Mode; m != AuthorizationModeWebhook && m != AuthorizationModeAlwaysAllow {
		errs = append(errs, field.NotSupported(field.NewPath("authorization", "mode"), m,
			[]string{AuthorizationModeWebhook, AuthorizationModeAlwaysAllow}))
	}
	for _, ttl := range []struct {
		path *field.Path
		d    metav1.Duration
	}{
		{field.NewPath("authentication", "webhook", "cacheTTL"), c.Authentication.Webhook.CacheTTL},
		{field.NewPath("authorization", "webhook", "cacheAuthorizedTTL"), c.Authorization.Webhook.CacheAuthorizedTTL},
		{field.NewPath("authorization", "webhook", "cacheUnauthorizedTTL"), c.Authorization.Webhook.CacheUnauthorizedTTL},
	} {
		if ttl.d.Duration < 0 {
			errs = append(errs, field.Invalid(ttl.path, ttl.d.Duration.String(), "must not be negative (0 caches nothing)"))
		}
	}
	return errs
}

// NodeName is the name the node registers under.
func (c *Configuration) NodeName() (string, error) {
	if c.HostnameOverride != "" {
		return c.HostnameOverride, nil
	}
	return os.Hostname()
}

// ClusterCIDRs parses ClusterCIDR: none when it is empty, else one or two CIDRs, at most one per family.
func (p *ProxyConfiguration) ClusterCIDRs() ([]netip.Prefix, error) {
	if p.ClusterCIDR == "" {
		return nil, nil
	}
	var cidrs []netip.Prefix
	for _, c := range strings.Split(p.ClusterCIDR, ",") {
		prefix, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("not a CIDR: %q (want e.g. 10.244.0.0/16, or 10.244.0.0/16,fd00:10:244::/56)", c)
		}
		if slices.ContainsFunc(cidrs, func(o netip.Prefix) bool { return o.Addr().Is4() == prefix.Addr().Is4() }) {
			return nil, fmt.Errorf("two CIDRs of the same family (want at most one IPv4 and one IPv6)")
		}
		cidrs = append(cidrs, prefix.Masked())
	}
	return cidrs, nil
}

func (p *ProxyConfiguration) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, a := range p.NodePortAddresses {
		if a == "primary" && len(p.NodePortAddresses) == 1 {
			continue
		}
		if _, err := netip.ParsePrefix(a); err != nil {
			errs = append(errs, field.Invalid(path.Child("nodePortAddresses").Index(i), a, `want "primary" alone, or CIDRs`))
		}
	}
	if _, err := p.ClusterCIDRs(); err != nil {
		errs = append(errs, field.Invalid(path.Child("clusterCIDR"), p.ClusterCIDR, err.Error()))
	}
	if p.SyncPeriod.Duration < time.Second {
		errs = append(errs, field.Invalid(path.Child("syncPeriod"), p.SyncPeriod.Duration.String(), "must be at least 1s"))
	}
	return append(errs, validateBindAddress(path.Child("healthzBindAddress"), p.HealthzBindAddress)...)
}

func (d *DNSConfiguration) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if _, err := netip.ParseAddr(d.LocalAddress); err != nil {
		errs = append(errs, field.Invalid(path.Child("localAddress"), d.LocalAddress, "not an IP address"))
	}
	if d.Port < 1 || d.Port > 65535 {
		errs = append(errs, field.Invalid(path.Child("port"), d.Port, "must be 1-65535"))
	}
	for i, u := range d.Upstreams {
		if _, err := UpstreamAddress(u); err != nil {
			errs = append(errs, field.Invalid(path.Child("upstreams").Index(i), u, err.Error()))
		}
	}
	if d.CacheSize < 0 {
		errs = append(errs, field.Invalid(path.Child("cacheSize"), d.CacheSize, "must not be negative"))
	}
	return errs
}

func (l *LogsConfiguration) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if l.Enabled && len(l.Receivers) == 0 {
		errs = append(errs, field.Required(path.Child("receivers"), "log shipping needs at least one receiver (host:port)"))
	}
	for i, r := range l.Receivers {
		if host, port, err := net.SplitHostPort(r); err != nil || host == "" || port == "" {
			errs = append(errs, field.Invalid(path.Child("receivers").Index(i), r, `want host:port, e.g. "fluentd.logging:24224"`))
		}
	}
	for _, q := range []struct {
		name, value string
	}{{"chunkSize", l.ChunkSize}, {"bufferLimit", l.BufferLimit}} {
		if v, err := resource.ParseQuantity(q.value); err != nil || v.Sign() <= 0 {
			errs = append(errs, field.Invalid(path.Child(q.name), q.value, "want a positive quantity such as 1Mi"))
		}
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"flushInterval", l.FlushInterval.Duration}, {"timeout", l.Timeout.Duration}, {"retryMaxInterval", l.RetryMaxInterval.Duration}} {
		if d.value <= 0 {
			errs = append(errs, field.Invalid(path.Child(d.name), d.value.String(), "must be positive"))
		}
	}
	if l.Username != "" && l.PasswordFile == "" {
		errs = append(errs, field.Required(path.Child("passwordFile"), "username needs a password"))
	}
	if l.Username != "" && l.SharedKeyFile == "" {
		errs = append(errs, field.Required(path.Child("sharedKeyFile"), "user authentication is part of the shared-key handshake"))
	}
	if l.TLS != nil && (l.TLS.CertFile == "") != (l.TLS.KeyFile == "") {
		errs = append(errs, field.Invalid(path.Child("tls"), "certFile/keyFile", "a client certificate needs both certFile and keyFile"))
	}
	return errs
}

// UpstreamAddress is a resolver given as IP or IP:port as the host:port to ask, port 53 by default.
func UpstreamAddress(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", errors.New(`want an IP or IP:port, e.g. "10.0.0.2" or "[fd00::2]:5353"`)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

// validateBindAddress accepts "" (off) or host:port with an IP host ("" host: every address).
func validateBindAddress(path *field.Path, addr string) field.ErrorList {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host != "" {
		_, err = netip.ParseAddr(host)
	}
	if err == nil {
		var n uint64
		if n, err = strconv.ParseUint(port, 10, 16); err == nil && n == 0 {
			err = errors.New("port 0")
		}
	}
	if err != nil {
		return field.ErrorList{field.Invalid(path, addr, `want IP:port, e.g. "127.0.0.1:10249", or "" for off`)}
	}
	return nil
}

// validateStandalone refuses what needs an API server and checks the manifest directory and the range.
func (c *Configuration) validateStandalone() field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("standalone")
	if c.Standalone.ManifestDir == "" {
		errs = append(errs, field.Required(path.Child("manifestDir"), "standalone mode reads its objects from a directory (--manifests)"))
	} else if !filepath.IsAbs(c.Standalone.ManifestDir) {
		errs = append(errs, field.Invalid(path.Child("manifestDir"), c.Standalone.ManifestDir, "must be an absolute path"))
	}
	if p, err := netip.ParsePrefix(c.Standalone.ServiceCIDR); err != nil || p.Addr().BitLen()-p.Bits() < 8 {
		errs = append(errs, field.Invalid(path.Child("serviceCIDR"), c.Standalone.ServiceCIDR, "want a CIDR of at least 256 addresses, e.g. 10.96.0.0/12"))
	}
	if c.PodCIDR == "" {
		errs = append(errs, field.Required(field.NewPath("podCIDR"), "standalone mode has no API server to give the node a pod range (--pod-cidr, e.g. 10.244.0.0/24)"))
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"kubeconfig", c.Kubeconfig != ""}, {"bootstrapKubeconfig", c.BootstrapKubeconfig != ""},
		{"staticPodPath", c.StaticPodPath != ""}, {"serverTLSBootstrap", c.ServerTLSBootstrap}} {
		if f.set {
			errs = append(errs, field.Forbidden(field.NewPath(f.name), "standalone mode runs without an API server (put its pods in standalone.manifestDir)"))
		}
	}
	return errs
}
