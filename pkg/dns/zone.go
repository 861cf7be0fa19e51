package dns

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/nodeagent/nodeagent/pkg/source"
)

// schemaVersion is the version of the Kubernetes DNS specification these records follow (kubernetes/dns
// docs/specification.md), served as the dns-version TXT record.
const schemaVersion = "1.1.0"

// Index names on the shared informers: PTR questions find Services and endpoints by address.
const (
	servicesByClusterIP = "dns-cluster-ip"
	slicesByAddress     = "dns-address"
)

// zone answers the names of the cluster domain from the informer cache. It holds no state of its own, so a
// change in the cache is in the next answer.
type zone struct {
	origin   string // the cluster domain, lower case and fully qualified: "cluster.local."
	ttl      uint32
	services cache.Indexer
	slices   cache.Indexer // for their addresses (slicesByAddress)
	// serviceSlices are the slices of each Service, from the slices informer like slices.
	serviceSlices *source.ServiceSlices
	soa           *dns.SOA
}

// result is what the zone says about one question.
type result struct {
	rcode  int
	answer []dns.RR
	extra  []dns.RR
	// notOurs means the zone holds no such name but another server may: a reverse name of an address
	// outside the cluster, to be forwarded.
	notOurs bool
}

func newZone(domain string, ttl uint32, services, slices cache.Indexer, serviceSlices *source.ServiceSlices) *zone {
	origin := dns.CanonicalName(domain)
	return &zone{
		origin: origin, ttl: ttl, services: services, slices: slices, serviceSlices: serviceSlices,
		soa: &dns.SOA{
			Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:  "ns.dns." + origin, Mbox: "hostmaster." + origin,
			Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl,
		},
	}
}

// contains reports whether name (lower case, fully qualified) is in the cluster domain.
func (z *zone) contains(name string) bool { return dns.IsSubDomain(z.origin, name) }

// lookup answers q, whose name the zone contains. Names are compared in lower case, as the specification
// asks; records carry the question's spelling as their owner.
func (z *zone) lookup(q dns.Question) result {
	name := strings.ToLower(q.Name)
	if name == z.origin {
		return z.apex(q)
	}
	labels := dns.SplitDomainName(strings.TrimSuffix(name, "."+z.origin))
	n := len(labels)
	switch {
	case n == 1 && labels[0] == "dns-version":
		return z.only(q, dns.TypeTXT, &dns.TXT{Hdr: z.hdr(q.Name, dns.TypeTXT), Txt: []string{schemaVersion}})
	case labels[n-1] == "svc":
		return z.service(q, labels[:n-1])
	case labels[n-1] == "pod":
		return z.pod(q, labels[:n-1])
	}
	return z.nxdomain()
}

func (z *zone) apex(q dns.Question) result {
	switch q.Qtype {
	case dns.TypeSOA:
		soa := dns.Copy(z.soa).(*dns.SOA)
		soa.Hdr.Name = q.Name
		return result{answer: []dns.RR{soa}}
	case dns.TypeNS:
		return result{answer: []dns.RR{&dns.NS{Hdr: z.hdr(q.Name, dns.TypeNS), Ns: z.soa.Ns}}}
	}
	return z.nodata()
}

// service answers the names under svc.<zone>; labels are what precedes "svc", left to right.
func (z *zone) service(q dns.Question, labels []string) result {
	switch len(labels) {
	case 0: // svc.<zone>
		return z.nodata()
	case 1: // <ns>.svc.<zone>: exists while the namespace has a Service
		if objs, err := z.services.ByIndex(cache.NamespaceIndex, labels[0]); err == nil && len(objs) > 0 {
			return z.nodata()
		}
		return z.nxdomain()
	}
	n := len(labels)
	svc := z.getService(labels[n-1], labels[n-2])
	if svc == nil {
		return z.nxdomain()
	}
	switch len(labels) {
	case 2: // <service>.<ns>.svc.<zone>
		return z.serviceName(q, svc)
	case 3:
		if strings.HasPrefix(labels[0], "_") { // _<proto>.<service>...: a name only for the SRV below it
			if hasPortWithProtocol(svc, labels[0]) {
				return z.nodata()
			}
			return z.nxdomain()
		}
		return z.endpointName(q, svc, labels[0])
	case 4: // _<port>._<proto>.<service>.<ns>.svc.<zone>
		if !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
			return z.nxdomain()
		}
		return z.srv(q, svc, labels[0][1:], labels[1][1:])
	}
	return z.nxdomain()
}

func (z *zone) getService(namespace, name string) *corev1.Service {
	obj, ok, err := z.services.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return obj.(*corev1.Service)
}

func isHeadless(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName &&
		(svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "")
}

// serviceName answers <service>.<ns>.svc.<zone>: the ClusterIPs, a headless Service's ready endpoints, or an
// ExternalName's CNAME.
func (z *zone) serviceName(q dns.Question, svc *corev1.Service) result {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return result{answer: []dns.RR{&dns.CNAME{Hdr: z.hdr(q.Name, dns.TypeCNAME), Target: dns.Fqdn(strings.ToLower(svc.Spec.ExternalName))}}}
	}
	if isHeadless(svc) {
		eps := z.endpoints(svc)
		if len(eps) == 0 {
			return z.nxdomain() // the specification's answer for a headless Service with no ready endpoint
		}
		var addrs []netip.Addr
		for _, ep := range eps {
			addrs = append(addrs, ep.addr)
		}
		return z.addresses(q, addrs)
	}
	var addrs []netip.Addr
	for _, ip := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			addrs = append(addrs, a)
		}
	}
	return z.addresses(q, addrs)
}

// endpointName answers <hostname>.<service>.<ns>.svc.<zone> for the ready endpoints of a headless Service.
func (z *zone) endpointName(q dns.Question, svc *corev1.Service, hostname string) result {
	if !isHeadless(svc) {
		return z.nxdomain()
	}
	var addrs []netip.Addr
	for _, ep := range z.endpoints(svc) {
		if ep.hostname == hostname {
			addrs = append(addrs, ep.addr)
		}
	}
	if len(addrs) == 0 {
		return z.nxdomain()
	}
	return z.addresses(q, addrs)
}

// srv answers _<port>._<proto>.<service>.<ns>.svc.<zone>: one record for a Service with a ClusterIP, one per
// ready endpoint of a headless one, with the targets' addresses in the additional section.
func (z *zone) srv(q dns.Question, svc *corev1.Service, port, proto string) result {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return z.nxdomain()
	}
	var found *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Name != "" && p.Name == port && strings.EqualFold(string(p.Protocol), proto) {
			found = p
		}
	}
	if found == nil {
		return z.nxdomain()
	}
	if q.Qtype != dns.TypeSRV && q.Qtype != dns.TypeANY {
		return z.nodata()
	}
	svcName := serviceFQDN(svc, z.origin)
	if !isHeadless(svc) {
		srv := &dns.SRV{Hdr: z.hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(found.Port), Target: svcName}
		var extra []dns.RR
		for _, ip := range svc.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				extra = append(extra, z.addressRR(svcName, a))
			}
		}
		return result{answer: []dns.RR{srv}, extra: extra}
	}
	var answer, extra []dns.RR
	seen := map[string]bool{}
	for _, ep := range z.endpoints(svc) {
		if ep.ports[found.Name] == 0 {
			continue
		}
		target := ep.hostname + "." + svcName
		if !seen[target+"/"+ep.addr.String()] {
			seen[target+"/"+ep.addr.String()] = true
			answer = append(answer, &dns.SRV{Hdr: z.hdr(q.Name, dns.TypeSRV), Port: uint16(ep.ports[found.Name]), Target: target})
			extra = append(extra, z.addressRR(target, ep.addr))
		}
	}
	if len(answer) == 0 {
		return z.nxdomain()
	}
	for _, rr := range answer {
		rr.(*dns.SRV).Weight = uint16(100 / len(answer))
	}
	return result{answer: answer, extra: extra}
}

// pod answers the deprecated, still required <a>-<b>-<c>-<d>.<ns>.pod.<zone> (dashes for colons in IPv6),
// for any address, as CoreDNS's "pods insecure" does.
func (z *zone) pod(q dns.Question, labels []string) result {
	switch len(labels) {
	case 0, 1: // pod.<zone>, <ns>.pod.<zone>
		return z.nodata()
	case 2:
		if a, err := netip.ParseAddr(strings.ReplaceAll(labels[0], "-", dotsOrColons(labels[0]))); err == nil {
			return z.addresses(q, []netip.Addr{a})
		}
	}
	return z.nxdomain()
}

func dotsOrColons(dashed string) string {
	if strings.Count(dashed, "-") == 3 && !strings.Contains(dashed, "--") {
		return "."
	}
	return ":"
}

// reverse answers a PTR question for an address: a Service's ClusterIP or a headless Service's ready
// endpoint. An address the cluster does not know is not ours, so it can be forwarded.
func (z *zone) reverse(q dns.Question, addr netip.Addr) result {
	var answer []dns.RR
	ip := addr.String()
	if objs, err := z.services.ByIndex(servicesByClusterIP, clusterIPBucket(addr)); err == nil {
		for _, obj := range objs {
			svc := obj.(*corev1.Service)
			if hasClusterIP(svc, addr) {
				answer = append(answer, &dns.PTR{Hdr: z.hdr(q.Name, dns.TypePTR), Ptr: serviceFQDN(svc, z.origin)})
			}
		}
	}
	if objs, err := z.slices.ByIndex(slicesByAddress, ip); err == nil {
		for _, obj := range objs {
			slice := obj.(*discoveryv1.EndpointSlice)
			svc := z.getService(slice.Namespace, slice.Labels[discoveryv1.LabelServiceName])
			if svc == nil || !isHeadless(svc) {
				continue
			}
			for _, ep := range sliceEndpoints(svc, slice) {
				if ep.addr == addr {
					answer = append(answer, &dns.PTR{Hdr: z.hdr(q.Name, dns.TypePTR), Ptr: ep.hostname + "." + serviceFQDN(svc, z.origin)})
				}
			}
		}
	}
	if len(answer) == 0 {
		return result{notOurs: true}
	}
	if q.Qtype != dns.TypePTR && q.Qtype != dns.TypeANY {
		return z.nodata()
	}
	return result{answer: answer}
}

// addresses answers q with the addresses of its family: A for IPv4, AAAA for IPv6; NODATA for the other types.
func (z *zone) addresses(q dns.Question, addrs []netip.Addr) result {
	var answer []dns.RR
	for _, a := range addrs {
		if q.Qtype == dns.TypeANY || q.Qtype == dns.TypeA && a.Is4() || q.Qtype == dns.TypeAAAA && a.Is6() {
			answer = append(answer, z.addressRR(q.Name, a))
		}
	}
	if len(answer) == 0 {
		return z.nodata()
	}
	return result{answer: answer}
}

func (z *zone) addressRR(name string, a netip.Addr) dns.RR {
	if a.Is4() {
		return &dns.A{Hdr: z.hdr(name, dns.TypeA), A: a.AsSlice()}
	}
	return &dns.AAAA{Hdr: z.hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()}
}

// only answers with rr when q asks for its type, NODATA otherwise.
func (z *zone) only(q dns.Question, typ uint16, rr dns.RR) result {
	if q.Qtype == typ || q.Qtype == dns.TypeANY {
		return result{answer: []dns.RR{rr}}
	}
	return z.nodata()
}

func (z *zone) hdr(name string, typ uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: z.ttl}
}

func (z *zone) nodata() result   { return result{rcode: dns.RcodeSuccess} }
func (z *zone) nxdomain() result { return result{rcode: dns.RcodeNameError} }

func serviceFQDN(svc *corev1.Service, origin string) string {
	return svc.Name + "." + svc.Namespace + ".svc." + origin
}

func hasPortWithProtocol(svc *corev1.Service, proto string) bool {
	for _, p := range svc.Spec.Ports {
		if p.Name != "" && "_"+strings.ToLower(string(p.Protocol)) == proto {
			return true
		}
	}
	return false
}

// endpoint is one address of a headless Service as DNS names it.
type endpoint struct {
	addr     netip.Addr
	hostname string           // the endpoint's hostname, or its address with dashes
	ports    map[string]int32 // the slice's named ports
}

// endpoints are the Service's endpoints that DNS publishes: the ready ones, or all of them when the Service
// publishes not-ready addresses.
func (z *zone) endpoints(svc *corev1.Service) []endpoint {
	var eps []endpoint
	for _, slice := range z.serviceSlices.Of(svc.Namespace, svc.Name) {
		eps = append(eps, sliceEndpoints(svc, slice)...)
	}
	return eps
}

func sliceEndpoints(svc *corev1.Service, slice *discoveryv1.EndpointSlice) []endpoint {
	if slice.AddressType == discoveryv1.AddressTypeFQDN {
		return nil
	}
	ports := map[string]int32{}
	for _, p := range slice.Ports {
		if p.Name != nil && p.Port != nil {
			ports[*p.Name] = *p.Port
		}
	}
	var eps []endpoint
	for _, e := range slice.Endpoints {
		ready := e.Conditions.Ready == nil || *e.Conditions.Ready
		if !ready && !svc.Spec.PublishNotReadyAddresses {
			continue
		}
		for _, ip := range e.Addresses {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				continue
			}
			host := strings.ReplaceAll(strings.ReplaceAll(a.String(), ".", "-"), ":", "-")
			if e.Hostname != nil && *e.Hostname != "" {
				host = *e.Hostname
			}
			eps = append(eps, endpoint{addr: a, hostname: host, ports: ports})
		}
	}
	return eps
}

// clusterIPs indexes Services by the bucket of each of their ClusterIPs (clusterIPBucket), for PTR answers.
func clusterIPs(obj any) ([]string, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	var buckets []string
	for _, ip := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			buckets = append(buckets, clusterIPBucket(a))
		}
	}
	return buckets, nil
}

// clusterIPBucket is the address with its last byte zeroed: an IPv4 /24, an IPv6 /120. client-go keeps a
// set of keys per index value, some 400 bytes even for one key: at 10,000 Services an index by address was
// 4 MB of sets of one; by bucket it holds a few dozen sets of up to 256 Services, which a PTR answer reads
// through for the exact address.
func clusterIPBucket(a netip.Addr) string {
	a = a.Unmap()
	b := a.AsSlice()
	b[len(b)-1] = 0
	bucket, _ := netip.AddrFromSlice(b)
	return bucket.String()
}

// hasClusterIP reports whether addr is one of the Service's ClusterIPs.
func hasClusterIP(svc *corev1.Service, addr netip.Addr) bool {
	for _, ip := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil && a.Unmap() == addr.Unmap() {
			return true
		}
	}
	return false
}

// sliceAddresses indexes only the slices of headless Services, which the EndpointSlice controller labels so:
// only their endpoints have PTR records. At 10,000 Services of 10 endpoints, an index of every address was
// 34 MB of the agent's heap, a set per address.
func sliceAddresses(obj any) ([]string, error) {
	slice, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	if _, headless := slice.Labels[corev1.IsHeadlessService]; !headless {
		return nil, nil
	}
	var ips []string
	for _, e := range slice.Endpoints {
		for _, ip := range e.Addresses {
			if a, err := netip.ParseAddr(ip); err == nil {
				ips = append(ips, a.String())
			}
		}
	}
	return ips, nil
}

// reverseAddr is the address a reverse name (in-addr.arpa or ip6.arpa) stands for; ok is false for other
// names and for partial reverse names.
func reverseAddr(name string) (netip.Addr, bool) {
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		labels := dns.SplitDomainName(strings.TrimSuffix(name, ".in-addr.arpa."))
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(labels[3] + "." + labels[2] + "." + labels[1] + "." + labels[0])
		return a, err == nil
	case strings.HasSuffix(name, ".ip6.arpa."):
		nibbles := dns.SplitDomainName(strings.TrimSuffix(name, ".ip6.arpa."))
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		var b strings.Builder
		for i := 31; i >= 0; i-- {
			b.WriteString(nibbles[i])
			if i%4 == 0 && i > 0 {
				b.WriteByte(':')
			}
		}
		a, err := netip.ParseAddr(b.String())
		return a, err == nil && a.Is6()
	}
	return netip.Addr{}, false
}

// NamesOf are the names cluster DNS answers with pod's address: its pod name (<a-b-c-d>.<ns>.pod.<domain>),
// each Service of services that selects it (<service>.<ns>.svc.<domain>) and, for a headless Service named
// by its subdomain, its hostname under the Service.
func NamesOf(pod *corev1.Pod, services []*corev1.Service, domain string) []string {
	var out []string
	for _, ip := range pod.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			dashed := strings.NewReplacer(".", "-", ":", "-").Replace(a.String())
			out = append(out, dashed+"."+pod.Namespace+".pod."+domain)
		}
	}
	for _, svc := range services {
		out = append(out, serviceFQDN(svc, domain))
		if isHeadless(svc) && pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name {
			out = append(out, pod.Spec.Hostname+"."+serviceFQDN(svc, domain))
		}
	}
	return out
}
