package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

// partnerCache remembers partner lookups for ttl, so the registry costs no database round trip
// per request while a suspension still takes effect within ttl, without a restart.
type partnerCache struct {
	dir PartnerDirectory
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]cachedPartner
}

type cachedPartner struct {
	p       settlement.Partner
	err     error
	expires time.Time
}

// maxCachedPartners bounds the cache; unknown ids from bad certificates cannot grow it forever.
const maxCachedPartners = 10_000

func (c *partnerCache) get(ctx context.Context, id string) (settlement.Partner, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.p, e.err
	}
	p, err := c.dir.Partner(ctx, id)
	if err != nil {
		if _, domain := settlement.AsError(err); !domain {
			return p, err // a database problem: do not cache
		}
	}
	c.mu.Lock()
	if len(c.entries) >= maxCachedPartners {
		clear(c.entries)
	}
	c.entries[id] = cachedPartner{p: p, err: err, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return p, err
}

// forget drops a cached partner, so a change made through this replica applies to its next
// call at once; other replicas see it within their ttl.
func (c *partnerCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
