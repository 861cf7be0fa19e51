package agent

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/nodeagent/nodeagent/pkg/dns"
	"github.com/nodeagent/nodeagent/pkg/logs"
	"github.com/nodeagent/nodeagent/pkg/podmanager"
	"github.com/nodeagent/nodeagent/pkg/proxy"
)

// PodDescription is one pod as every part of the node sees it (`nodeagent describe pod`, the node API's
// /describe/pods/{namespace}/{name}): what the kubelet, kube-proxy, CoreDNS and Fluent Bit each know of it.
type PodDescription struct {
	Namespace  string                 `json:"namespace"`
	Name       string                 `json:"name"`
	UID        types.UID              `json:"uid"`
	Phase      corev1.PodPhase        `json:"phase"`
	Reason     string                 `json:"reason,omitempty"`
	Message    string                 `json:"message,omitempty"`
	PodIPs     []string               `json:"podIPs,omitempty"`
	QOSClass   corev1.PodQOSClass     `json:"qosClass,omitempty"`
	Conditions []string               `json:"conditions,omitempty"`
	Containers []ContainerDescription `json:"containers"`
	Volumes    []VolumeDescription    `json:"volumes,omitempty"`
	Services   []ServiceDescription   `json:"services,omitempty"`
	DNSNames   []string               `json:"dnsNames,omitempty"`
	// Logs is nil when the node ships no logs.
	Logs   *LogsDescription   `json:"logs,omitempty"`
	Events []EventDescription `json:"events,omitempty"`
}

// ContainerDescription is a container's state as the runtime reports it, and its probes.
type ContainerDescription struct {
	Name            string   `json:"name"`
	Image           string   `json:"image"`
	ContainerID     string   `json:"containerID,omitempty"`
	State           string   `json:"state"`
	Ready           bool     `json:"ready"`
	Started         bool     `json:"started"`
	RestartCount    int32    `json:"restartCount"`
	LastTermination string   `json:"lastTermination,omitempty"`
	Probes          []string `json:"probes,omitempty"`
}

// VolumeDescription is a volume and, for those the node keeps in the pod's directory, where.
type VolumeDescription struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Path string `json:"path,omitempty"`
}

// ServiceDescription is a Service that selects the pod: its addresses and the proxy's chains for it.
type ServiceDescription struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	VIPs      []string `json:"vips"`
	Chains    []string `json:"chains,omitempty"`
}

// LogsDescription is the pod's log files as the shipper reads them, and the receiver's last acknowledgement.
type LogsDescription struct {
	Files   []logs.FileState `json:"files"`
	LastAck *time.Time       `json:"lastAck,omitempty"`
}

// EventDescription is an event the node recorded for the pod.
type EventDescription struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Count   int32     `json:"count"`
}

// describer assembles a PodDescription from the parts of the node that run; proxy and shipper are nil
// when the node runs without them.
type describer struct {
	pods          corelisters.PodLister
	services      corelisters.ServiceLister
	manager       *podmanager.Manager
	events        *recentEvents
	clusterDomain string
	proxyChains   bool
	shipper       *logs.Shipper
}

func (d *describer) describe(_ context.Context, namespace, name string) (any, error) {
	pod, err := d.pods.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("pod %s/%s is not on this node", namespace, name)
	}
	if err != nil {
		return nil, err
	}
	desc := &PodDescription{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, Phase: pod.Status.Phase,
		Reason: pod.Status.Reason, Message: pod.Status.Message, QOSClass: pod.Status.QOSClass}
	for _, ip := range pod.Status.PodIPs {
		desc.PodIPs = append(desc.PodIPs, ip.IP)
	}
	for _, c := range pod.Status.Conditions {
		desc.Conditions = append(desc.Conditions, fmt.Sprintf("%s=%s", c.Type, c.Status))
	}
	desc.Containers = describeContainers(pod)
	desc.Volumes = d.describeVolumes(pod)
	selecting := d.selecting(pod)
	for _, svc := range selecting {
		s := ServiceDescription{Namespace: svc.Namespace, Name: svc.Name, VIPs: vips(svc)}
		if d.proxyChains {
			s.Chains = proxy.ServiceChains(svc)
		}
		desc.Services = append(desc.Services, s)
	}
	desc.DNSNames = dns.NamesOf(pod, selecting, d.clusterDomain)
	if d.shipper != nil {
		desc.Logs = &LogsDescription{Files: d.shipper.Files(d.manager.PodLogDir(pod))}
		if at := d.shipper.LastAck(); !at.IsZero() {
			desc.Logs.LastAck = &at
		}
	}
	desc.Events = d.events.of(pod.UID)
	return desc, nil
}

func describeContainers(pod *corev1.Pod) []ContainerDescription {
	statuses := map[string]corev1.ContainerStatus{}
	for _, cs := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		statuses[cs.Name] = cs
	}
	var out []ContainerDescription
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		cs := statuses[c.Name]
		d := ContainerDescription{Name: c.Name, Image: c.Image, ContainerID: cs.ContainerID, Ready: cs.Ready,
			Started: cs.Started != nil && *cs.Started, RestartCount: cs.RestartCount, State: stateOf(cs.State)}
		if t := cs.LastTerminationState.Terminated; t != nil {
			d.LastTermination = fmt.Sprintf("%s (exit %d) at %s", t.Reason, t.ExitCode, t.FinishedAt.UTC().Format(time.RFC3339))
		}
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			state string
		}{{"startup", c.StartupProbe, passing(d.Started)}, {"readiness", c.ReadinessProbe, passing(d.Ready)},
			{"liveness", c.LivenessProbe, fmt.Sprintf("%d restarts", d.RestartCount)}} {
			if p.probe != nil {
				d.Probes = append(d.Probes, fmt.Sprintf("%s %s every %ds: %s", p.kind, probeHandler(p.probe), p.probe.PeriodSeconds, p.state))
			}
		}
		out = append(out, d)
	}
	return out
}

func passing(ok bool) string {
	if ok {
		return "passing"
	}
	return "not passing"
}

func stateOf(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "Running since " + s.Running.StartedAt.UTC().Format(time.RFC3339)
	case s.Terminated != nil:
		return fmt.Sprintf("Terminated: %s (exit %d)", s.Terminated.Reason, s.Terminated.ExitCode)
	case s.Waiting != nil:
		return "Waiting: " + s.Waiting.Reason
	}
	return "Unknown"
}

func probeHandler(p *corev1.Probe) string {
	switch h := p.ProbeHandler; {
	case h.HTTPGet != nil:
		return fmt.Sprintf("http-get :%s%s", h.HTTPGet.Port.String(), h.HTTPGet.Path)
	case h.TCPSocket != nil:
		return "tcp-socket :" + h.TCPSocket.Port.String()
	case h.GRPC != nil:
		return "grpc :" + strconv.Itoa(int(h.GRPC.Port))
	case h.Exec != nil:
		return fmt.Sprintf("exec %q", h.Exec.Command)
	}
	return "?"
}

func (d *describer) describeVolumes(pod *corev1.Pod) []VolumeDescription {
	paths := map[string]string{}
	for _, v := range d.manager.LocalVolumes(pod) {
		paths[v.Name] = v.Path
	}
	var out []VolumeDescription
	for _, v := range pod.Spec.Volumes {
		out = append(out, VolumeDescription{Name: v.Name, Kind: volumeKind(v.VolumeSource), Path: paths[v.Name]})
	}
	return out
}

// volumeKind is the name of the volume's source, as the YAML has it (emptyDir, configMap, ...).
func volumeKind(src corev1.VolumeSource) string {
	v := reflect.ValueOf(src)
	for i := range v.NumField() {
		if !v.Field(i).IsNil() {
			tag := v.Type().Field(i).Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			return name
		}
	}
	return "unknown"
}

// selecting are the Services of the pod's namespace whose selector matches its labels.
func (d *describer) selecting(pod *corev1.Pod) []*corev1.Service {
	services, err := d.services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*corev1.Service
	for _, svc := range services {
		if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			out = append(out, svc)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Service) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// vips are the addresses a Service answers on: cluster IPs, node ports, external and load balancer addresses.
func vips(svc *corev1.Service) []string {
	var out []string
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		for _, ip := range svc.Spec.ClusterIPs {
			if ip != corev1.ClusterIPNone {
				out = append(out, net.JoinHostPort(ip, strconv.Itoa(int(p.Port)))+"/"+proto)
			}
		}
		if p.NodePort != 0 {
			out = append(out, fmt.Sprintf("<node>:%d/%s", p.NodePort, proto))
		}
		for _, ip := range svc.Spec.ExternalIPs {
			out = append(out, net.JoinHostPort(ip, strconv.Itoa(int(p.Port)))+"/"+proto)
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				out = append(out, net.JoinHostPort(in.IP, strconv.Itoa(int(p.Port)))+"/"+proto)
			}
		}
	}
	return out
}

// recentEvents keeps the last events the node recorded for each pod, for describe: in standalone mode
// no API server keeps them, and with one, describe need not ask it.
type recentEvents struct {
	mu    sync.Mutex
	byPod map[types.UID][]EventDescription
}

// eventsPerPod bounds what is kept of one pod; maxPodsWithEvents bounds the pods (the oldest go first).
const (
	eventsPerPod      = 20
	maxPodsWithEvents = 1000
)

func newRecentEvents() *recentEvents { return &recentEvents{byPod: map[types.UID][]EventDescription{}} }

func (r *recentEvents) add(e *corev1.Event) {
	if e.InvolvedObject.Kind != "Pod" || e.InvolvedObject.UID == "" {
		return
	}
	at := e.LastTimestamp.Time
	if at.IsZero() {
		at = e.EventTime.Time
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	uid := e.InvolvedObject.UID
	if _, ok := r.byPod[uid]; !ok && len(r.byPod) >= maxPodsWithEvents {
		r.forgetOldest()
	}
	list := r.byPod[uid]
	if n := len(list); n > 0 && list[n-1].Reason == e.Reason && list[n-1].Message == e.Message {
		list[n-1].Count, list[n-1].Time = e.Count, at // the recorder's aggregation of a repeated event
		return
	}
	list = append(list, EventDescription{Time: at, Type: e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count})
	if len(list) > eventsPerPod {
		list = list[len(list)-eventsPerPod:]
	}
	r.byPod[uid] = list
}

func (r *recentEvents) forgetOldest() {
	var oldest types.UID
	var at time.Time
	for uid, list := range r.byPod {
		if last := list[len(list)-1].Time; oldest == "" || last.Before(at) {
			oldest, at = uid, last
		}
	}
	delete(r.byPod, oldest)
}

func (r *recentEvents) of(uid types.UID) []EventDescription {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.byPod[uid])
}
