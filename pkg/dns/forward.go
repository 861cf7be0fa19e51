package dns

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
	"k8s.io/klog/v2"
)

// upstreamBufferSize is the EDNS0 UDP size the forwarder offers upstream: large enough for most answers,
// small enough not to fragment (the DNS flag day 2020 value).
const upstreamBufferSize = 1232

// forwarder resolves names outside the cluster through the upstream resolvers, in the order given, and
// keeps their answers in the cache.
type forwarder struct {
	upstreams []string
	udp, tcp  *dns.Client
	cache     *answerCache
	metrics   *metrics
}

func newForwarder(upstreams []string, timeout time.Duration, c *answerCache, m *metrics) *forwarder {
	return &forwarder{
		upstreams: upstreams,
		udp:       &dns.Client{Net: "udp", Timeout: timeout, UDPSize: upstreamBufferSize},
		tcp:       &dns.Client{Net: "tcp", Timeout: timeout},
		cache:     c,
		metrics:   m,
	}
}

// errNotCached is forwarder.cached's answer when only an upstream could answer.
var errNotCached = errors.New("not in the cache")

// cached answers q from the cache only, so a caller that must not wait for the network can tell.
func (f *forwarder) cached(_ context.Context, q dns.Question, do bool) (*dns.Msg, error) {
	if msg, denial := f.cache.get(keyOf(q, do)); msg != nil {
		f.metrics.cacheHit(denial)
		return msg, nil
	}
	return nil, errNotCached
}

// resolve answers q from the cache or from the first upstream that answers. The returned message is the
// caller's to change. An error means no upstream answered.
func (f *forwarder) resolve(ctx context.Context, q dns.Question, do bool) (*dns.Msg, error) {
	if msg, err := f.cached(ctx, q, do); err == nil {
		return msg, nil
	}
	key := keyOf(q, do)
	f.metrics.cacheMiss()
	req := new(dns.Msg)
	req.Question = []dns.Question{q}
	req.RecursionDesired = true
	req.SetEdns0(upstreamBufferSize, do)
	var lastErr error
	for _, upstream := range f.upstreams {
		resp, err := f.exchange(ctx, req, upstream)
		if err != nil {
			klog.V(4).InfoS("Upstream did not answer", "upstream", upstream, "name", q.Name, "err", err)
			lastErr = err
			continue
		}
		f.cache.put(key, resp)
		return resp.Copy(), nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no upstream resolver configured")
	}
	return nil, lastErr
}

// exchange asks one upstream over UDP, and again over TCP when the answer did not fit.
func (f *forwarder) exchange(ctx context.Context, req *dns.Msg, upstream string) (*dns.Msg, error) {
	start := time.Now()
	req.Id = dns.Id()
	resp, _, err := f.udp.ExchangeContext(ctx, req, upstream)
	if err == nil && resp.Truncated {
		req.Id = dns.Id()
		resp, _, err = f.tcp.ExchangeContext(ctx, req, upstream)
	}
	if err != nil {
		f.metrics.upstream(upstream, "", time.Since(start))
		return nil, fmt.Errorf("asking %s: %w", upstream, err)
	}
	f.metrics.upstream(upstream, dns.RcodeToString[resp.Rcode], time.Since(start))
	// The OPT record was for this hop; the server adds its own for the client.
	resp.Extra = withoutOPT(resp.Extra)
	return resp, nil
}

func withoutOPT(rrs []dns.RR) []dns.RR {
	kept := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			kept = append(kept, rr)
		}
	}
	return kept
}
