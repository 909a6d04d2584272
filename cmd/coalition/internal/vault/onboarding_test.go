package vault_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault/vaulttest"
)

// csrFor returns a partner's key and a CSR for the given SANs.
func csrFor(t *testing.T, tmpl x509.CertificateRequest) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func uris(t *testing.T, raw ...string) []*url.URL {
	t.Helper()
	var out []*url.URL
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// operatorClient is a started client of srv authenticated by an operator token.
func operatorClient(t *testing.T, srv *vaulttest.Server) *vault.Client {
	t.Helper()
	c, err := vault.New(vault.Config{Address: srv.URL, HTTPClient: srv.HTTPClient, Token: srv.OperatorToken(time.Hour), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

// TestOnboardingByCSR: a CSR for dune-rail, signed through the partner's
// role, yields a certificate that works as dune-rail against the gateway;
// the partner's key never leaves the test's "partner".
func TestOnboardingByCSR(t *testing.T) {
	s := startStack(t)
	uri := vault.PartnerURI(trustDomain, duneRail)
	s.vault.AddRole("partner-"+duneRail, vaulttest.Role{AllowedURISANs: []string{uri}, TTL: 24 * time.Hour})
	key, csrPEM := csrFor(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: duneRail}, URIs: uris(t, uri)})

	signed, err := operatorClient(t, s.vault).SignPartnerCSR(context.Background(), vault.SignPartnerCSRRequest{
		PartnerID: duneRail, CSRPEM: csrPEM, Mount: "pki", TrustDomain: trustDomain,
	})
	if err != nil {
		t.Fatalf("SignPartnerCSR: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(signed.ChainPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("signed chain and the partner's key do not pair: %v", err)
	}
	if len(cert.Certificate) != 2 {
		t.Errorf("chain has %d certificates, want the leaf and the intermediate", len(cert.Certificate))
	}
	resp, err := award(s.dial(t, cert, &handshakes{}))
	if err != nil {
		t.Fatalf("Award as %s: %v", duneRail, err)
	}
	if got := resp.GetTransaction().GetPartnerId(); got != duneRail {
		t.Errorf("award recorded for partner %q, want %q", got, duneRail)
	}
}

// TestOnboardingRefusesBadCSRs: CSRs for another partner's URI SAN, several
// URI SANs, a DNS name, an IP or email, or with a broken signature are
// refused with the reason, before Vault is asked.
func TestOnboardingRefusesBadCSRs(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.Config{})
	client := operatorClient(t, srv)
	own := vault.PartnerURI(trustDomain, duneRail)
	other := vault.PartnerURI(trustDomain, acmeAir)
	_, good := csrFor(t, x509.CertificateRequest{URIs: uris(t, own)})
	tests := []struct {
		name    string
		csr     []byte
		wantErr error
		wantMsg string
	}{
		{"another partner's uri", pemOf(t, x509.CertificateRequest{URIs: uris(t, other)}), vault.ErrCSRForeignURI, other},
		{"several uris", pemOf(t, x509.CertificateRequest{URIs: uris(t, own, other)}), vault.ErrCSRSeveralURIs, "several uri sans"},
		{"dns name", pemOf(t, x509.CertificateRequest{URIs: uris(t, own), DNSNames: []string{"dune-rail.example"}}), vault.ErrCSRNames, "dune-rail.example"},
		{"ip address", pemOf(t, x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), vault.ErrCSRNames, "10.0.0.1"},
		{"email", pemOf(t, x509.CertificateRequest{EmailAddresses: []string{"ops@dune.example"}}), vault.ErrCSRNames, "ops@dune.example"},
		{"bad signature", tamper(t, good), vault.ErrCSRSignature, "signature"},
		{"not a csr", []byte("hello"), vault.ErrCSRMalformed, "CERTIFICATE REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.SignPartnerCSR(context.Background(), vault.SignPartnerCSRRequest{
				PartnerID: duneRail, CSRPEM: tt.csr, Mount: "pki", TrustDomain: trustDomain,
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), duneRail) {
				t.Errorf("error %q does not name %q and the partner", err, tt.wantMsg)
			}
		})
	}
	if n := srv.Count("sign"); n != 0 {
		t.Errorf("vault signed %d refused csrs", n)
	}
}

// TestVaultRoleRefusesForeignURI: were the local check bypassed, the
// partner's role in Vault still refuses another partner's URI SAN.
func TestVaultRoleRefusesForeignURI(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.Config{})
	srv.AddRole("partner-"+duneRail, vaulttest.Role{AllowedURISANs: []string{vault.PartnerURI(trustDomain, duneRail)}})
	_, err := operatorClient(t, srv).SignPartnerCSR(context.Background(), vault.SignPartnerCSRRequest{
		PartnerID: acmeAir, Role: "partner-" + duneRail, Mount: "pki", TrustDomain: trustDomain,
		CSRPEM: pemOf(t, x509.CertificateRequest{URIs: uris(t, vault.PartnerURI(trustDomain, acmeAir))}),
	})
	if err == nil || !strings.Contains(err.Error(), "not allowed by this role") {
		t.Fatalf("got %v, want the role's refusal", err)
	}
}

func pemOf(t *testing.T, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	_, p := csrFor(t, tmpl)
	return p
}

// tamper flips a byte of the CSR's signature.
func tamper(t *testing.T, csrPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(csrPEM)
	der := append([]byte(nil), block.Bytes...)
	der[len(der)-3] ^= 0xff
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
}
