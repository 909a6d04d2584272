package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/coalitionexchange/coalition/gateway/devca"
)

const trustDomain = devca.TrustDomain

// leafWithURIs returns a parsed-certificate stand-in carrying only URI SANs:
// FromVerifiedChains trusts that the chain was verified and reads the leaf.
func leafWithURIs(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	leaf := &x509.Certificate{}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", raw, err)
		}
		leaf.URIs = append(leaf.URIs, u)
	}
	return leaf
}

func chainOf(leaf *x509.Certificate) [][]*x509.Certificate {
	return [][]*x509.Certificate{{leaf}}
}

func TestFromVerifiedChains(t *testing.T) {
	tests := []struct {
		name    string
		chains  [][]*x509.Certificate
		want    Identity
		wantErr error
	}{{
		name:   "partner",
		chains: chainOf(leafWithURIs(t, "spiffe://coalition.local/partner/acme-air")),
		want:   Identity{Role: RolePartner, Name: "acme-air", URI: "spiffe://coalition.local/partner/acme-air"},
	}, {
		name:   "finance",
		chains: chainOf(leafWithURIs(t, "spiffe://coalition.local/finance/finance")),
		want:   Identity{Role: RoleFinance, Name: "finance", URI: "spiffe://coalition.local/finance/finance"},
	}, {
		name:   "operator",
		chains: chainOf(leafWithURIs(t, "spiffe://coalition.local/operator/alice")),
		want:   Identity{Role: RoleOperator, Name: "alice", URI: "spiffe://coalition.local/operator/alice"},
	}, {
		name:    "empty chains",
		chains:  nil,
		wantErr: ErrNoVerifiedChain,
	}, {
		name:    "empty first chain",
		chains:  [][]*x509.Certificate{{}},
		wantErr: ErrNoVerifiedChain,
	}, {
		name:    "zero uris",
		chains:  chainOf(leafWithURIs(t)),
		wantErr: ErrURISANCount,
	}, {
		name: "two uris",
		chains: chainOf(leafWithURIs(t,
			"spiffe://coalition.local/partner/acme-air", "spiffe://coalition.local/operator/alice")),
		wantErr: ErrURISANCount,
	}, {
		name:    "not spiffe",
		chains:  chainOf(leafWithURIs(t, "https://coalition.local/partner/acme-air")),
		wantErr: ErrNotSPIFFE,
	}, {
		name:    "query",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/partner/acme-air?x=1")),
		wantErr: ErrNotSPIFFE,
	}, {
		name:    "percent-encoded",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/partner/%61cme")),
		wantErr: ErrNotSPIFFE,
	}, {
		name:    "wrong domain",
		chains:  chainOf(leafWithURIs(t, "spiffe://evil.example/partner/acme-air")),
		wantErr: ErrTrustDomain,
	}, {
		name:    "domain with port",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local:8443/partner/acme-air")),
		wantErr: ErrTrustDomain,
	}, {
		name:    "unknown role",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/admin/root")),
		wantErr: ErrUnknownRole,
	}, {
		name:    "bad name",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/partner/Acme_Air")),
		wantErr: ErrBadName,
	}, {
		name:    "empty name",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/partner/")),
		wantErr: ErrBadName,
	}, {
		name:    "extra segment",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/partner/acme-air/extra")),
		wantErr: ErrBadPath,
	}, {
		name:    "role only",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/partner")),
		wantErr: ErrBadPath,
	}, {
		name:    "gateway id",
		chains:  chainOf(leafWithURIs(t, "spiffe://coalition.local/gateway")),
		wantErr: ErrBadPath,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromVerifiedChains(tt.chains, trustDomain)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got identity %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIdentityErrorsWrapErrNoIdentity(t *testing.T) {
	_, err := FromVerifiedChains(chainOf(leafWithURIs(t, "spiffe://evil.example/partner/a")), trustDomain)
	if !errors.Is(err, ErrNoIdentity) {
		t.Errorf("got %v, want an error wrapping ErrNoIdentity", err)
	}
}

func TestFromVerifiedChainsWithDevCACertificate(t *testing.T) {
	ca, err := devca.New("Test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	cert, err := ca.IssueClient("partner", "acme-air", time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	got, err := FromVerifiedChains(chainOf(cert.Leaf), trustDomain)
	if err != nil {
		t.Fatalf("FromVerifiedChains: %v", err)
	}
	want := Identity{Role: RolePartner, Name: "acme-air", URI: "spiffe://coalition.local/partner/acme-air"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestFromPeer(t *testing.T) {
	good := leafWithURIs(t, "spiffe://coalition.local/finance/finance")
	withState := func(state tls.ConnectionState) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}})
	}
	tests := []struct {
		name    string
		ctx     context.Context
		want    Identity
		wantErr error
	}{{
		name: "verified chain",
		ctx:  withState(tls.ConnectionState{VerifiedChains: chainOf(good)}),
		want: Identity{Role: RoleFinance, Name: "finance", URI: "spiffe://coalition.local/finance/finance"},
	}, {
		name:    "peer certificates only",
		ctx:     withState(tls.ConnectionState{PeerCertificates: []*x509.Certificate{good}}),
		wantErr: ErrNoVerifiedChain,
	}, {
		name:    "no peer",
		ctx:     context.Background(),
		wantErr: ErrNoVerifiedChain,
	}, {
		name:    "not tls",
		ctx:     peer.NewContext(context.Background(), &peer.Peer{}),
		wantErr: ErrNoVerifiedChain,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromPeer(tt.ctx, trustDomain)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got identity %+v, want %+v", got, tt.want)
			}
		})
	}
}
