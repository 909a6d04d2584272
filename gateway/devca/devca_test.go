package devca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := New("Test CA", testNow, 48*time.Hour)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return ca
}

func TestIssueClientVerifiesAgainstPool(t *testing.T) {
	ca := newCA(t)
	cert, err := ca.IssueClient("partner", "acme-air", testNow, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: testNow,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatalf("Verify client leaf: %v", err)
	}
	if got := len(cert.Leaf.URIs); got != 1 {
		t.Fatalf("got %d URI SANs, want 1", got)
	}
	if got, want := cert.Leaf.URIs[0].String(), "spiffe://coalition.local/partner/acme-air"; got != want {
		t.Errorf("got URI SAN %q, want %q", got, want)
	}
	if got, want := cert.Leaf.Subject.CommonName, "acme-air"; got != want {
		t.Errorf("got CN %q, want %q", got, want)
	}
	if got := len(cert.Certificate); got != 1 {
		t.Errorf("got chain of %d certificates, want 1 (leaf only)", got)
	}
	if got := cert.Leaf.SerialNumber.BitLen(); got > 128 {
		t.Errorf("got %d-bit serial, want at most 128", got)
	}
}

func TestIssueClientIsNotAServerCertificate(t *testing.T) {
	ca := newCA(t)
	cert, err := ca.IssueClient("finance", "finance", testNow, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: testNow,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err == nil {
		t.Fatal("client leaf verified for server auth, want error")
	}
}

func TestIssueServer(t *testing.T) {
	ca := newCA(t)
	cert, err := ca.IssueServer([]string{"localhost"}, []net.IP{net.IPv6loopback}, testNow, time.Hour)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: testNow,
		DNSName:     "localhost",
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatalf("Verify server leaf: %v", err)
	}
	if err := cert.Leaf.VerifyHostname("::1"); err != nil {
		t.Errorf("VerifyHostname(::1): %v", err)
	}
	if got, want := cert.Leaf.URIs[0].String(), "spiffe://coalition.local/gateway"; got != want {
		t.Errorf("got URI SAN %q, want %q", got, want)
	}
}

func TestLeafFromAnotherCADoesNotVerify(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	cert, err := other.IssueClient("partner", "acme-air", testNow, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: testNow,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		t.Fatal("leaf of another CA verified, want error")
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca := newCA(t)
	cert, err := ca.IssueClient("operator", "alice", testNow, 365*24*time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	if got, want := cert.Leaf.NotAfter, testNow.Add(48*time.Hour); !got.Equal(want) {
		t.Errorf("got NotAfter %v, want %v", got, want)
	}
}

func TestIssueClientRejectsBadSegments(t *testing.T) {
	ca := newCA(t)
	tests := []struct{ role, name string }{
		{"", "acme"},
		{"partner", ""},
		{"partner", "Acme"},
		{"partner", "acme/air"},
		{"partner", "-acme"},
		{"part ner", "acme"},
	}
	for _, tt := range tests {
		if _, err := ca.IssueClient(tt.role, tt.name, testNow, time.Hour); err == nil {
			t.Errorf("IssueClient(%q, %q): got nil error, want error", tt.role, tt.name)
		}
	}
}

func TestLoadRoundTrip(t *testing.T) {
	ca := newCA(t)
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatalf("KeyPEM: %v", err)
	}
	loaded, err := Load(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cert, err := loaded.IssueClient("partner", "acme-air", testNow, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: testNow,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatalf("leaf of loaded CA does not verify against original pool: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	otherKey, err := other.KeyPEM()
	if err != nil {
		t.Fatalf("KeyPEM: %v", err)
	}
	leaf, err := ca.IssueClient("partner", "acme-air", testNow, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	leafCert, leafKey, err := EncodePEM(leaf)
	if err != nil {
		t.Fatalf("EncodePEM: %v", err)
	}
	tests := map[string]struct{ cert, key []byte }{
		"mismatched key": {ca.CertPEM(), otherKey},
		"leaf as ca":     {leafCert, leafKey},
		"garbage cert":   {[]byte("not pem"), otherKey},
		"garbage key":    {ca.CertPEM(), []byte("not pem")},
	}
	for name, tt := range tests {
		if _, err := Load(tt.cert, tt.key); err == nil {
			t.Errorf("%s: got nil error, want error", name)
		}
	}
}

var testIdentities = []Identity{
	{Role: "partner", Name: "acme-air", File: "partner-acme-air"},
	{Role: "finance", Name: "finance", File: "finance"},
}

// snapshot records the content and modification time of every file in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	files := make(map[string]string, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("ReadFile: %v", err)
		}
		files[e.Name()] = info.ModTime().String() + "\n" + string(data)
	}
	return files
}

func TestEnsureDirWritesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	first, err := EnsureDir(dir, testIdentities, testNow)
	if err != nil {
		t.Fatalf("EnsureDir: %v", err)
	}
	before := snapshot(t, dir)
	if got, want := len(before), 8; got != want {
		t.Fatalf("got %d files, want %d: %v", got, want, before)
	}
	second, err := EnsureDir(dir, testIdentities, testNow.Add(time.Hour))
	if err != nil {
		t.Fatalf("second EnsureDir: %v", err)
	}
	if !bytes.Equal(first.CertPEM(), second.CertPEM()) {
		t.Error("second EnsureDir returned a different CA")
	}
	after := snapshot(t, dir)
	for name, was := range before {
		if after[name] != was {
			t.Errorf("%s was rewritten", name)
		}
	}
}

func TestEnsureDirPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := EnsureDir(dir, testIdentities, testNow); err != nil {
		t.Fatalf("EnsureDir: %v", err)
	}
	want := map[string]os.FileMode{
		".": 0o700, "ca.key": 0o600, "gateway.key": 0o600, "partner-acme-air.key": 0o600, "finance.key": 0o600,
	}
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if got := info.Mode().Perm(); got != mode {
			t.Errorf("%s: got mode %v, want %v", name, got, mode)
		}
	}
}

func TestEnsureDirLeavesVerify(t *testing.T) {
	dir := t.TempDir()
	ca, err := EnsureDir(dir, testIdentities, testNow)
	if err != nil {
		t.Fatalf("EnsureDir: %v", err)
	}
	tests := []struct {
		file, uri string
		usage     x509.ExtKeyUsage
	}{
		{"gateway", "spiffe://coalition.local/gateway", x509.ExtKeyUsageServerAuth},
		{"partner-acme-air", "spiffe://coalition.local/partner/acme-air", x509.ExtKeyUsageClientAuth},
		{"finance", "spiffe://coalition.local/finance/finance", x509.ExtKeyUsageClientAuth},
	}
	for _, tt := range tests {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, tt.file+".crt"), filepath.Join(dir, tt.file+".key"))
		if err != nil {
			t.Fatalf("%s: LoadX509KeyPair: %v", tt.file, err)
		}
		opts := x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{tt.usage}}
		if _, err := pair.Leaf.Verify(opts); err != nil {
			t.Errorf("%s: Verify: %v", tt.file, err)
		}
		if got := pair.Leaf.URIs[0].String(); got != tt.uri {
			t.Errorf("%s: got URI SAN %q, want %q", tt.file, got, tt.uri)
		}
	}
}

func TestEnsureDirRenewsExpiringCA(t *testing.T) {
	dir := t.TempDir()
	first, err := EnsureDir(dir, testIdentities, testNow)
	if err != nil {
		t.Fatalf("EnsureDir: %v", err)
	}
	later := testNow.Add(caValidFor - 12*time.Hour)
	second, err := EnsureDir(dir, testIdentities, later)
	if err != nil {
		t.Fatalf("second EnsureDir: %v", err)
	}
	if bytes.Equal(first.CertPEM(), second.CertPEM()) {
		t.Fatal("expiring CA was reused, want a new one")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "finance.crt"), filepath.Join(dir, "finance.key"))
	if err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	opts := x509.VerifyOptions{Roots: second.Pool(), CurrentTime: later, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := pair.Leaf.Verify(opts); err != nil {
		t.Errorf("leaf was not re-issued by the new CA: %v", err)
	}
}

func TestEnsureDirRejectsUnreadableCA(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureDir(dir, nil, testNow); err == nil {
		t.Fatal("got nil error, want error for an unreadable CA")
	}
}

func TestEnsureDirRejectsBadFileNames(t *testing.T) {
	tests := map[string][]Identity{
		"escapes dir": {{Role: "partner", Name: "acme", File: "../acme"}},
		"empty":       {{Role: "partner", Name: "acme", File: ""}},
		"reserved":    {{Role: "partner", Name: "acme", File: "gateway"}},
		"duplicate": {
			{Role: "partner", Name: "acme", File: "x"},
			{Role: "partner", Name: "beta", File: "x"},
		},
	}
	for name, ids := range tests {
		if _, err := EnsureDir(t.TempDir(), ids, testNow); err == nil {
			t.Errorf("%s: got nil error, want error", name)
		}
	}
}
