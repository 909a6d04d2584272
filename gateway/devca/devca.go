package devca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// TrustDomain is the SPIFFE trust domain of every certificate this CA issues.
const TrustDomain = "coalition.local"

const (
	// caValidFor and leafValidFor are the lifetimes EnsureDir uses. Leaves are
	// short so that a stale checkout re-issues them on the next `coalition dev`.
	caValidFor   = 365 * 24 * time.Hour
	leafValidFor = 30 * 24 * time.Hour
	// minRemaining is how long an existing file must stay valid to be reused.
	minRemaining = 24 * time.Hour
	// backdate tolerates clock skew between the process that issues a
	// certificate and the one that verifies it.
	backdate = time.Minute
)

// segment is the shape of a role or name in a SPIFFE path issued by this CA;
// it matches what gateway/tlsconfig accepts for a name.
var segment = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// serialLimit bounds serial numbers to 128 random bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// CA is a local certificate authority.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// New creates a fresh self-signed CA (IsCA, KeyUsageCertSign, MaxPathLen 0)
// named commonName, valid from now for validFor.
func New(commonName string, now time.Time, validFor time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("devca: empty common name")
	}
	if validFor <= 0 {
		return nil, fmt.Errorf("devca: validity %v is not positive", validFor)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	cert, key, err := sign(tmpl, nil, nil)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, certPEM: encodeCert(cert.Raw)}, nil
}

// Load reads a CA from its PEM certificate and private key (PKCS#8 as
// KeyPEM writes it; SEC 1 is accepted too). It returns an error when the
// certificate is not a CA, the key is not ECDSA or the two do not match.
func Load(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("devca: load ca: %w", err)
	}
	if !pair.Leaf.IsCA || pair.Leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("devca: certificate is not a ca")
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("devca: ca key is %T, want *ecdsa.PrivateKey", pair.PrivateKey)
	}
	return &CA{cert: pair.Leaf, key: key, certPEM: encodeCert(pair.Leaf.Raw)}, nil
}

// CertPEM returns the CA certificate as a PEM "CERTIFICATE" block.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// KeyPEM returns the CA private key as a PKCS#8 PEM "PRIVATE KEY" block.
func (ca *CA) KeyPEM() ([]byte, error) { return encodeKey(ca.key) }

// Pool returns a new pool holding only this CA, for verifying its leaves.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// IssueServer issues a server leaf (ExtKeyUsageServerAuth) for the DNS names
// and IPs given, plus the SPIFFE URI SAN spiffe://<TrustDomain>/gateway.
// The chain holds the leaf only; clients trust the CA through Pool.
func (ca *CA) IssueServer(dnsNames []string, ips []net.IP, now time.Time, validFor time.Duration) (tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return tls.Certificate{}, errors.New("devca: server certificate needs a dns name or ip")
	}
	commonName := "gateway"
	if len(dnsNames) > 0 {
		commonName = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		URIs:        []*url.URL{spiffeID("gateway")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	return ca.issue(tmpl, now, validFor)
}

// IssueClient issues a client leaf (ExtKeyUsageClientAuth) with exactly one
// URI SAN spiffe://<TrustDomain>/<role>/<name> and common name name. Role and
// name must match ^[a-z0-9][a-z0-9-]{0,62}$; whether the role is known is
// for the verifier to decide.
func (ca *CA) IssueClient(role, name string, now time.Time, validFor time.Duration) (tls.Certificate, error) {
	if !segment.MatchString(role) {
		return tls.Certificate{}, fmt.Errorf("devca: invalid role %q", role)
	}
	if !segment.MatchString(name) {
		return tls.Certificate{}, fmt.Errorf("devca: invalid name %q", name)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		URIs:        []*url.URL{spiffeID(role, name)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, now, validFor)
}

// issue completes tmpl with a fresh key, serial and validity, and signs it.
// A leaf never outlives its CA.
func (ca *CA) issue(tmpl *x509.Certificate, now time.Time, validFor time.Duration) (tls.Certificate, error) {
	if validFor <= 0 {
		return tls.Certificate{}, fmt.Errorf("devca: validity %v is not positive", validFor)
	}
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validFor)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	leaf, key, err := sign(tmpl, ca.cert, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// sign gives tmpl a fresh P-256 key and a random 128-bit serial and signs it
// with parentKey, or with the new key itself when parent is nil.
func sign(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devca: generate key: %w", err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, serialLimit); err != nil {
		return nil, nil, fmt.Errorf("devca: generate serial: %w", err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("devca: sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("devca: parse certificate: %w", err)
	}
	return cert, key, nil
}

// EncodePEM returns the chain of cert as "CERTIFICATE" blocks and its ECDSA
// key as a PKCS#8 "PRIVATE KEY" block, the layout tls.X509KeyPair reads.
func EncodePEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	if len(cert.Certificate) == 0 {
		return nil, nil, errors.New("devca: certificate has no chain")
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("devca: private key is %T, want *ecdsa.PrivateKey", cert.PrivateKey)
	}
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, encodeCert(der)...)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// Identity names a client certificate EnsureDir keeps: the SPIFFE role and
// name it carries and the base name of its files in the directory.
type Identity struct {
	Role string // e.g. "partner"
	Name string // e.g. "acme-air"
	File string // e.g. "partner-acme-air", written as <File>.crt and <File>.key
}

// EnsureDir creates, or reuses when already present and valid for at least
// another day, in dir: ca.crt, ca.key, gateway.crt and gateway.key (for
// localhost, 127.0.0.1 and ::1), and <File>.crt and <File>.key for every
// identity. Keys are written 0600 and a created dir is 0700. A new CA
// re-issues every leaf. An existing CA that cannot be read is an error, not
// replaced: other copies of its certificate may be trusted elsewhere.
func EnsureDir(dir string, identities []Identity, now time.Time) (*CA, error) {
	if err := checkIdentities(identities); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devca: create dir: %w", err)
	}
	ca, err := ensureCA(dir, now)
	if err != nil {
		return nil, err
	}
	gateway := leafSpec{
		file: "gateway", uri: spiffeID("gateway").String(), usage: x509.ExtKeyUsageServerAuth,
		issue: func() (tls.Certificate, error) {
			return ca.IssueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, now, leafValidFor)
		},
	}
	if err := ca.ensureLeaf(dir, gateway, now); err != nil {
		return nil, err
	}
	for _, id := range identities {
		spec := leafSpec{
			file: id.File, uri: spiffeID(id.Role, id.Name).String(), usage: x509.ExtKeyUsageClientAuth,
			issue: func() (tls.Certificate, error) { return ca.IssueClient(id.Role, id.Name, now, leafValidFor) },
		}
		if err := ca.ensureLeaf(dir, spec, now); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// checkIdentities rejects file names that would escape dir, collide with the
// CA or gateway files, or repeat.
func checkIdentities(identities []Identity) error {
	seen := map[string]bool{"ca": true, "gateway": true}
	for _, id := range identities {
		if id.File == "" || id.File != filepath.Base(id.File) || id.File == "." || id.File == ".." {
			return fmt.Errorf("devca: identity %s/%s: invalid file name %q", id.Role, id.Name, id.File)
		}
		if seen[id.File] {
			return fmt.Errorf("devca: identity %s/%s: file name %q used twice or reserved", id.Role, id.Name, id.File)
		}
		seen[id.File] = true
	}
	return nil
}

// ensureCA loads dir/ca.crt and dir/ca.key, or writes a new CA when either
// is missing or the CA expires within minRemaining.
func ensureCA(dir string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := Load(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("devca: existing ca in %s: %w", dir, err)
		}
		if validThrough(ca.cert, now) {
			return ca, nil
		}
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, fmt.Errorf("devca: read ca certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, fmt.Errorf("devca: read ca key: %w", keyErr)
	}
	ca, err := New("Coalition Dev CA", now, caValidFor)
	if err != nil {
		return nil, err
	}
	keyPEM, err = ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := writePair(certPath, keyPath, ca.certPEM, keyPEM); err != nil {
		return nil, err
	}
	return ca, nil
}

// leafSpec describes one leaf EnsureDir keeps and how to issue it afresh.
type leafSpec struct {
	file  string
	uri   string
	usage x509.ExtKeyUsage
	issue func() (tls.Certificate, error)
}

// ensureLeaf keeps dir/<file>.crt and .key when they form a pair that ca
// verifies for spec.usage, carries spec.uri and lasts another minRemaining;
// otherwise it issues and writes a new pair. Leaves are derived data, so an
// unreadable pair is replaced rather than reported.
func (ca *CA) ensureLeaf(dir string, spec leafSpec, now time.Time) error {
	certPath := filepath.Join(dir, spec.file+".crt")
	keyPath := filepath.Join(dir, spec.file+".key")
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && ca.reusable(pair.Leaf, spec, now) {
		return nil
	}
	cert, err := spec.issue()
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := EncodePEM(cert)
	if err != nil {
		return err
	}
	return writePair(certPath, keyPath, certPEM, keyPEM)
}

// reusable reports whether leaf was issued by ca for spec and stays valid.
func (ca *CA) reusable(leaf *x509.Certificate, spec leafSpec, now time.Time) bool {
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spec.uri || !validThrough(leaf, now) {
		return false
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{spec.usage},
	})
	return err == nil
}

// validThrough reports whether cert is valid now and for minRemaining more.
func validThrough(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(cert.NotBefore) && now.Add(minRemaining).Before(cert.NotAfter)
}

// writePair writes the key (0600) before the certificate (0644): a crash in
// between leaves a pair that does not match, which the next run replaces.
func writePair(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certPath, certPEM, 0o644)
}

// writeFile replaces path through a rename so a reader never sees half a
// file; a leftover temporary file from a crash is removed first so that perm
// applies.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	return nil
}

// spiffeID returns spiffe://<TrustDomain>/<segments...>.
func spiffeID(segments ...string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + strings.Join(segments, "/")}
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("devca: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
