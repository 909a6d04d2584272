package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault/vaulttest"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
)

// writeCSR writes a CSR asking for the given URI SANs and DNS names and
// returns its path.
func writeCSR(t *testing.T, dir string, uris []string, dnsNames []string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{DNSNames: dnsNames}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "*.csr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func TestPartnerSignCSR(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.Config{PKIMount: "pki_int"})
	const own = "spiffe://coalition.local/partner/dune-rail"
	srv.AddRole("partner-dune-rail", vaulttest.Role{AllowedURISANs: []string{own}})
	getenv := func(name string) string {
		return map[string]string{"VAULT_TOKEN": srv.OperatorToken(time.Hour), "COALITION_VAULT_ADDR": srv.URL}[name]
	}
	dir := t.TempDir()
	signCSR := func(csr string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		out := filepath.Join(dir, "dune-rail.crt")
		err := run(context.Background(), []string{"partner", "sign-csr", "--partner", "dune-rail", "--csr", csr, "--out", out},
			getenv, &stdout, &stderr)
		return out, stdout.String(), err
	}

	out, stdout, err := signCSR(writeCSR(t, dir, []string{own}, nil))
	if err != nil {
		t.Fatalf("sign-csr: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("output is not a certificate: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != own || !strings.Contains(stdout, own) {
		t.Errorf("got URIs %v and output %q, want exactly %s", leaf.URIs, stdout, own)
	}

	refusals := map[string]struct {
		csr, want string
	}{
		"foreign uri": {writeCSR(t, dir, []string{"spiffe://coalition.local/partner/acme-air"}, nil), "another identity's uri san"},
		"two uris":    {writeCSR(t, dir, []string{own, "spiffe://coalition.local/partner/acme-air"}, nil), "several uri sans"},
		"dns name":    {writeCSR(t, dir, []string{own}, []string{"dune.example"}), "dns names"},
	}
	for name, tt := range refusals {
		if _, _, err := signCSR(tt.csr); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "refusing csr") {
			t.Errorf("%s: got %v, want a refusal naming %q", name, err, tt.want)
		}
	}
	if n := srv.Count("sign"); n != 1 {
		t.Errorf("vault signed %d csrs, want only the good one", n)
	}
}

func TestPartnerIssueCertDev(t *testing.T) {
	dir := t.TempDir()
	ca, err := devca.EnsureDir(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	err = run(context.Background(), []string{"partner", "issue-cert", "--partner", "dune-rail", "--certs-dir", dir},
		func(string) string { return "" }, &stdout, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("issue-cert: %v", err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "partner-dune-rail.crt"), filepath.Join(dir, "partner-dune-rail.key"))
	if err != nil {
		t.Fatalf("load issued pair: %v", err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify against the dev ca: %v", err)
	}
	id, err := tlsconfig.FromVerifiedChains([][]*x509.Certificate{{pair.Leaf}}, devca.TrustDomain)
	if err != nil || id.Role != tlsconfig.RolePartner || id.Name != "dune-rail" {
		t.Errorf("got identity %+v (%v), want partner dune-rail", id, err)
	}
	err = run(context.Background(), []string{"partner", "issue-cert", "--partner", "Bad_ID", "--certs-dir", dir},
		func(string) string { return "" }, &stdout, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "invalid partner id") {
		t.Errorf("bad id: got %v, want invalid partner id", err)
	}
}

// TestServeCertsFromVault: with --vault-addr, serve's certificates come from
// the PKI role over AppRole, and the database URL carries the Vault user.
func TestServeCertsFromVault(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.Config{PKIMount: "pki_int"})
	srv.AddRole("gateway", vaulttest.Role{AllowAnyName: true})
	secret := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secret, []byte("gateway-secret-id"), 0o600); err != nil {
		t.Fatal(err)
	}
	var v vaultOptions
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	v.registerServe(fs)
	err := fs.Parse([]string{"--vault-addr", srv.URL, "--vault-approle-role-id", "gateway-role-id",
		"--vault-approle-secret-id-file", secret, "--vault-cert-names", "gateway.coalition.example", "--vault-database-role", "coalition"})
	if err != nil {
		t.Fatal(err)
	}
	o := gatewayOptions{trustDomain: "coalition.local"}

	ctx := context.Background()
	e := &env{getenv: func(string) string { return "" }, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	certs, rt, err := serveCerts(ctx, e, o, v, "postgres://db.internal/coalition", "", "", "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("serveCerts: %v", err)
	}
	cert, err := certs.ServerCertificate()
	if err != nil || cert.Leaf.Subject.CommonName != "gateway.coalition.example" || cert.Leaf.URIs[0].String() != "spiffe://coalition.local/gateway" {
		t.Fatalf("got certificate %v (%v), want one for gateway.coalition.example", cert.Leaf.Subject, err)
	}
	if ttl := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); ttl < 24*time.Hour || ttl > 25*time.Hour {
		t.Errorf("certificate life %v, want the 24h default", ttl)
	}
	if err := rt.readyFunc()(ctx); err != nil {
		t.Errorf("not ready with a fresh certificate: %v", err)
	}
	dbURL, err := rt.databaseURL("postgres://db.internal/coalition")
	if err != nil || !strings.Contains(dbURL, "v-approle-coalition-") || !strings.HasSuffix(dbURL, "@db.internal/coalition") {
		t.Errorf("got database url (redacted check) %v, want the Vault user", err)
	}
	if _, _, err := serveCerts(ctx, e, o, vaultOptions{}, "postgres://x", "", "", "", slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "unless --vault-addr") {
		t.Errorf("file mode without files: got %v", err)
	}
}
