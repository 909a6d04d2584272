package tlsconfig

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is what kind of caller a certificate identifies, the first segment of
// its SPIFFE path.
type Role string

// The roles the gateway knows. Any other role is rejected.
const (
	RolePartner  Role = "partner"  // a coalition partner, Name is its partner id
	RoleFinance  Role = "finance"  // the finance back office
	RoleOperator Role = "operator" // a human or tool operating the exchange
)

// Identity is the caller proven by its verified client certificate.
type Identity struct {
	Role Role
	Name string
	URI  string // the SPIFFE ID, e.g. spiffe://coalition.local/partner/acme-air
}

// ErrNoIdentity is wrapped by every error FromVerifiedChains and FromPeer
// return, so that a caller can map them all to Unauthenticated at once.
var ErrNoIdentity = errors.New("no identity")

// Why a connection carries no identity; each wraps ErrNoIdentity.
var (
	ErrNoVerifiedChain = fmt.Errorf("%w: no verified certificate chain", ErrNoIdentity)
	ErrURISANCount     = fmt.Errorf("%w: want exactly one uri san", ErrNoIdentity)
	ErrNotSPIFFE       = fmt.Errorf("%w: uri san is not a spiffe id", ErrNoIdentity)
	ErrTrustDomain     = fmt.Errorf("%w: foreign trust domain", ErrNoIdentity)
	ErrBadPath         = fmt.Errorf("%w: spiffe path is not /<role>/<name>", ErrNoIdentity)
	ErrUnknownRole     = fmt.Errorf("%w: unknown role", ErrNoIdentity)
	ErrBadName         = fmt.Errorf("%w: invalid name", ErrNoIdentity)
)

// namePattern is the shape of the <name> segment: a DNS-label-like id.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// FromVerifiedChains extracts the identity from the leaf of the first
// verified chain. The leaf must carry exactly one URI SAN of the form
// spiffe://<trustDomain>/<role>/<name> with a known role and a name matching
// ^[a-z0-9][a-z0-9-]{0,62}$.
//
// It returns ErrNoVerifiedChain, ErrURISANCount, ErrNotSPIFFE (query,
// fragment, user info or percent-encoding), ErrTrustDomain, ErrBadPath,
// ErrUnknownRole or ErrBadName, each wrapping ErrNoIdentity.
func FromVerifiedChains(chains [][]*x509.Certificate, trustDomain string) (Identity, error) {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return Identity{}, ErrNoVerifiedChain
	}
	leaf := chains[0][0]
	if n := len(leaf.URIs); n != 1 {
		return Identity{}, fmt.Errorf("%w: got %d", ErrURISANCount, n)
	}
	return parseSPIFFE(leaf.URIs[0], trustDomain)
}

// parseSPIFFE checks u against the SPIFFE ID rules the gateway relies on.
func parseSPIFFE(u *url.URL, trustDomain string) (Identity, error) {
	if u.Scheme != "spiffe" || u.Opaque != "" || u.User != nil || u.RawPath != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return Identity{}, fmt.Errorf("%w: %q", ErrNotSPIFFE, u)
	}
	if u.Host != trustDomain {
		return Identity{}, fmt.Errorf("%w: got %q, want %q", ErrTrustDomain, u.Host, trustDomain)
	}
	segments := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if !strings.HasPrefix(u.Path, "/") || len(segments) != 2 {
		return Identity{}, fmt.Errorf("%w: got %q", ErrBadPath, u.Path)
	}
	role, name := Role(segments[0]), segments[1]
	switch role {
	case RolePartner, RoleFinance, RoleOperator:
	default:
		return Identity{}, fmt.Errorf("%w: %q", ErrUnknownRole, role)
	}
	if !namePattern.MatchString(name) {
		return Identity{}, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return Identity{Role: role, Name: name, URI: u.String()}, nil
}

// FromPeer reads the gRPC peer of ctx and returns the identity proven by its
// verified TLS chain (see FromVerifiedChains). It looks at nothing but
// State.VerifiedChains: unverified PeerCertificates never name a caller.
// A context without a TLS peer yields ErrNoVerifiedChain.
func FromPeer(ctx context.Context, trustDomain string) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, fmt.Errorf("%w: no grpc peer", ErrNoVerifiedChain)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, fmt.Errorf("%w: peer auth is %T, want credentials.TLSInfo", ErrNoVerifiedChain, p.AuthInfo)
	}
	return FromVerifiedChains(info.State.VerifiedChains, trustDomain)
}
