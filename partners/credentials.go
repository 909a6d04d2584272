package partners

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// CredentialSource returns the credentials we present to a partner on every call, as gRPC
// metadata (e.g. {"authorization": "Bearer …"}); nil or empty means none. In production it reads
// the partner's secret in Vault KV v2. Values are never logged.
type CredentialSource func(ctx context.Context, partnerID string) (map[string]string, error)

// credentialsRefresh is how long a partner's credentials are reused before they are read again.
const credentialsRefresh = time.Minute

// perRPCCredentials attaches a partner's credentials to each call, caching them for
// credentialsRefresh and keeping the last good ones when a refresh fails (the secret store
// being briefly unreachable must not fail partner calls).
type perRPCCredentials struct {
	partnerID string
	source    CredentialSource
	now       func() time.Time

	mu      sync.Mutex
	values  map[string]string
	fetched time.Time
	ok      bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (p *perRPCCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ok && p.now().Sub(p.fetched) < credentialsRefresh {
		return p.values, nil
	}
	values, err := p.source(ctx, p.partnerID)
	if err != nil {
		if p.ok {
			return p.values, nil // keep calling with the last good credentials
		}
		return nil, fmt.Errorf("credentials for partner %s: %w", p.partnerID, err)
	}
	p.values, p.fetched, p.ok = values, p.now(), true
	return values, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: only over mTLS.
func (p *perRPCCredentials) RequireTransportSecurity() bool { return true }
