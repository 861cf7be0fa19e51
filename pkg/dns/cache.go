package dns

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds on how long upstream answers are kept, CoreDNS's cache defaults: a record's own TTL rules below them.
const (
	maxSuccessTTL = time.Hour
	maxDenialTTL  = 30 * time.Minute
)

// cacheKey is what makes two forwarded questions the same: the name in lower case, the type and the class,
// and whether DNSSEC records were asked for.
type cacheKey struct {
	name  string
	qtype uint16
	class uint16
	do    bool
}

func keyOf(q dns.Question, do bool) cacheKey {
	return cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, class: q.Qclass, do: do}
}

type cacheEntry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
	denial  bool
}

// answerCache holds upstream answers for as long as their TTLs say, up to a number of entries. A full cache
// makes room by dropping an arbitrary entry, as CoreDNS's does: cheaper than keeping an order, and under a
// working set larger than the cache no order would do much better.
type answerCache struct {
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
	denials int // entries that are NXDOMAIN or NODATA, for the entries gauge
}

func newAnswerCache(size int, now func() time.Time) *answerCache {
	return &answerCache{size: size, now: now, entries: map[cacheKey]cacheEntry{}}
}

// get returns a copy of the stored answer with its TTLs lowered by the time it spent in the cache, and
// whether it is a denial; nil when there is none or it expired.
func (c *answerCache) get(k cacheKey) (*dns.Msg, bool) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	if ok && !now.Before(e.expires) {
		c.remove(k, e)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	msg := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, section := range [][]dns.RR{msg.Answer, msg.Ns, msg.Extra} {
		for _, rr := range section {
			h := rr.Header()
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return msg, e.denial
}

// put stores an upstream answer if it may be cached: NOERROR with records for the smallest TTL among them,
// NXDOMAIN and NODATA for the SOA's negative TTL (RFC 2308). Other answers (SERVFAIL, REFUSED, truncated
// ones) are not kept.
func (c *answerCache) put(k cacheKey, msg *dns.Msg) {
	ttl, denial, ok := cacheTTL(msg)
	if !ok || ttl <= 0 || c.size <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[k]; ok {
		c.remove(k, old)
	}
	for oldKey, old := range c.entries {
		if len(c.entries) < c.size {
			break
		}
		c.remove(oldKey, old)
	}
	c.entries[k] = cacheEntry{msg: msg, stored: now, expires: now.Add(ttl), denial: denial}
	if denial {
		c.denials++
	}
}

func (c *answerCache) remove(k cacheKey, e cacheEntry) {
	delete(c.entries, k)
	if e.denial {
		c.denials--
	}
}

// counts returns the number of positive and of denial entries.
func (c *answerCache) counts() (success, denial int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries) - c.denials, c.denials
}

func cacheTTL(msg *dns.Msg) (ttl time.Duration, denial, ok bool) {
	if msg.Truncated {
		return 0, false, false
	}
	switch {
	case msg.Rcode == dns.RcodeSuccess && len(msg.Answer) > 0:
		minTTL := uint32(maxSuccessTTL / time.Second)
		for _, rr := range msg.Answer {
			minTTL = min(minTTL, rr.Header().Ttl)
		}
		return time.Duration(minTTL) * time.Second, false, true
	case msg.Rcode == dns.RcodeSuccess || msg.Rcode == dns.RcodeNameError:
		for _, rr := range msg.Ns {
			if soa, isSOA := rr.(*dns.SOA); isSOA {
				negTTL := min(soa.Hdr.Ttl, soa.Minttl, uint32(maxDenialTTL/time.Second))
				return time.Duration(negTTL) * time.Second, true, true
			}
		}
	}
	return 0, false, false
}
