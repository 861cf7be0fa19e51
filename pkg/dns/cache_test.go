package dns

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func answerWith(t *testing.T, rcode int, rrs ...string) *dns.Msg {
	m := new(dns.Msg)
	m.Rcode = rcode
	for _, s := range rrs {
		rr := mustRR(t, s)
		if rr.Header().Rrtype == dns.TypeSOA {
			m.Ns = append(m.Ns, rr)
		} else {
			m.Answer = append(m.Answer, rr)
		}
	}
	return m
}

func TestCacheKeepsAnswersForTheirTTLAndAgesThem(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newAnswerCache(10, func() time.Time { return now })
	q := dns.Question{Name: "a.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	c.put(keyOf(q, false), answerWith(t, dns.RcodeSuccess, "a.example.org. 30 IN A 192.0.2.1", "a.example.org. 60 IN A 192.0.2.2"))

	now = now.Add(10 * time.Second)
	got, denial := c.get(keyOf(q, false))
	if got == nil || denial {
		t.Fatalf("after 10 s: %v denial=%v, want the answer", got, denial)
	}
	if ttl := got.Answer[0].Header().Ttl; ttl != 20 {
		t.Errorf("TTL after 10 s in the cache: %d, want 20", ttl)
	}
	if got, _ := c.get(keyOf(q, true)); got != nil {
		t.Error("a DNSSEC question was answered from a plain answer")
	}
	now = now.Add(20 * time.Second) // the smallest TTL, 30 s, has passed
	if got, _ := c.get(keyOf(q, false)); got != nil {
		t.Errorf("answer kept past its smallest TTL: %v", got)
	}
}

func TestCacheKeepsDenialsForTheSOAMinimum(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newAnswerCache(10, func() time.Time { return now })
	q := dns.Question{Name: "nx.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	c.put(keyOf(q, false), answerWith(t, dns.RcodeNameError, "example.org. 3600 IN SOA ns. host. 1 2 3 4 60"))
	now = now.Add(59 * time.Second)
	if got, denial := c.get(keyOf(q, false)); got == nil || !denial || got.Rcode != dns.RcodeNameError {
		t.Fatalf("NXDOMAIN after 59 s: %v denial=%v", got, denial)
	}
	if success, denials := c.counts(); success != 0 || denials != 1 {
		t.Errorf("entries: %d success, %d denial; want 0 and 1", success, denials)
	}
	now = now.Add(time.Second)
	if got, _ := c.get(keyOf(q, false)); got != nil {
		t.Error("NXDOMAIN kept past the SOA minimum")
	}

	servfail := dns.Question{Name: "broken.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	c.put(keyOf(servfail, false), answerWith(t, dns.RcodeServerFailure))
	if got, _ := c.get(keyOf(servfail, false)); got != nil {
		t.Error("SERVFAIL was cached")
	}
}

func TestCacheStaysWithinItsSize(t *testing.T) {
	c := newAnswerCache(3, time.Now)
	for _, name := range []string{"a.", "b.", "c.", "d.", "e."} {
		c.put(keyOf(dns.Question{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET}, false),
			answerWith(t, dns.RcodeSuccess, name+" 300 IN A 192.0.2.1"))
	}
	if success, denials := c.counts(); success+denials != 3 {
		t.Errorf("%d entries in a cache of 3", success+denials)
	}
	last := keyOf(dns.Question{Name: "e.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, false)
	if got, _ := c.get(last); got == nil {
		t.Error("the entry just stored was dropped to make room")
	}
}
