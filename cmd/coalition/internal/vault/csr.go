package vault

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Why CheckPartnerCSR refuses a CSR. Each error it returns wraps one of these.
var (
	ErrCSRMalformed     = errors.New("csr is not a PEM CERTIFICATE REQUEST")
	ErrCSRSignature     = errors.New("csr signature does not verify (the request was altered or not signed by its key)")
	ErrCSRForeignURI    = errors.New("csr asks for another identity's uri san")
	ErrCSRSeveralURIs   = errors.New("csr asks for several uri sans; a partner certificate carries exactly one")
	ErrCSRNames         = errors.New("csr asks for dns names, ip addresses or email addresses; a partner certificate carries only its uri san")
	ErrInvalidPartnerID = errors.New("invalid partner id")
)

// partnerIDPattern is the shape of a partner id: the <name> segment the
// gateway accepts in spiffe://<trust-domain>/partner/<name>.
var partnerIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CheckPartnerID returns an error wrapping ErrInvalidPartnerID unless id is
// a partner id the gateway accepts.
func CheckPartnerID(id string) error {
	if !partnerIDPattern.MatchString(id) {
		return fmt.Errorf("%w %q: want ^[a-z0-9][a-z0-9-]{0,62}$", ErrInvalidPartnerID, id)
	}
	return nil
}

// PartnerURI returns the SPIFFE ID of partner id in trustDomain.
func PartnerURI(trustDomain, id string) string {
	return (&url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/partner/" + id}).String()
}

// CheckPartnerCSR parses csrPEM and checks that it may be signed for partner
// id: its self-signature verifies, it asks for no URI SAN or exactly
// PartnerURI(trustDomain, id), and for no DNS name, IP or email address.
// The subject's common name is allowed but never copied into the
// certificate. It returns the parsed request, or an error wrapping
// ErrInvalidPartnerID, ErrCSRMalformed, ErrCSRSignature, ErrCSRForeignURI,
// ErrCSRSeveralURIs or ErrCSRNames.
func CheckPartnerCSR(csrPEM []byte, trustDomain, id string) (*x509.CertificateRequest, error) {
	if err := CheckPartnerID(id); err != nil {
		return nil, err
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, ErrCSRMalformed
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSRMalformed, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSRSignature, err)
	}
	want := PartnerURI(trustDomain, id)
	switch len(csr.URIs) {
	case 0:
	case 1:
		if got := csr.URIs[0].String(); got != want {
			return nil, fmt.Errorf("%w: got %s, want %s", ErrCSRForeignURI, got, want)
		}
	default:
		return nil, fmt.Errorf("%w: got %d (%v)", ErrCSRSeveralURIs, len(csr.URIs), csr.URIs)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: got dns %v, ip %v, email %v",
			ErrCSRNames, csr.DNSNames, csr.IPAddresses, csr.EmailAddresses)
	}
	return csr, nil
}

// SignPartnerCSRRequest is one partner certificate to sign.
type SignPartnerCSRRequest struct {
	PartnerID   string
	CSRPEM      []byte
	TrustDomain string // default "coalition.local"
	Mount       string // the PKI mount, required
	// Role is the PKI role to sign with; default "partner-<PartnerID>", a
	// role whose allowed_uri_sans is that partner's URI alone.
	Role string
	TTL  time.Duration // zero: the role's TTL
}

// SignPartnerCSR checks the CSR with CheckPartnerCSR and, only when it
// passes, has Vault sign it for the partner's URI SAN. The partner's private
// key never leaves the partner. The returned certificate is checked to carry
// exactly that URI SAN and the CSR's public key.
func (c *Client) SignPartnerCSR(ctx context.Context, req SignPartnerCSRRequest) (SignedCertificate, error) {
	if req.TrustDomain == "" {
		req.TrustDomain = "coalition.local"
	}
	if req.Mount == "" {
		return SignedCertificate{}, errors.New("vault: a pki mount is required")
	}
	csr, err := CheckPartnerCSR(req.CSRPEM, req.TrustDomain, req.PartnerID)
	if err != nil {
		return SignedCertificate{}, fmt.Errorf("vault: refusing csr for partner %s: %w", req.PartnerID, err)
	}
	if req.Role == "" {
		req.Role = "partner-" + req.PartnerID
	}
	uri := PartnerURI(req.TrustDomain, req.PartnerID)
	signed, err := c.sign(ctx, req.Mount, req.Role, req.CSRPEM, uri, req.TTL)
	if err != nil {
		return SignedCertificate{}, err
	}
	leaf := signed.Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != uri || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 {
		return SignedCertificate{}, fmt.Errorf("vault: signed certificate does not carry exactly the uri san %s: check role %s", uri, req.Role)
	}
	if !publicKeyEqual(leaf.PublicKey, csr.PublicKey) {
		return SignedCertificate{}, errors.New("vault: signed certificate does not carry the csr's public key")
	}
	return signed, nil
}

// publicKeyEqual compares two public keys of any standard type.
func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(x crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
