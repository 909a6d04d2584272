package vaulttest

import (
	"crypto"
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
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// notBeforeSkew backdates every leaf, as Vault's not_before_duration does.
const notBeforeSkew = 30 * time.Second

// Role is a PKI role: which names it may put in a certificate and for how long.
type Role struct {
	// AllowAnyName lets the role issue any DNS name, IP and URI (the
	// gateway's role). Without it, only AllowedURISANs may appear.
	AllowAnyName bool
	// AllowedURISANs are the exact URI SANs the role allows.
	AllowedURISANs []string
	TTL            time.Duration // default 24h
	MaxTTL         time.Duration // default 72h
}

// AddRole creates or replaces the PKI role name.
func (s *Server) AddRole(name string, r Role) {
	if r.TTL <= 0 {
		r.TTL = 24 * time.Hour
	}
	if r.MaxTTL <= 0 {
		r.MaxTTL = 72 * time.Hour
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[name] = r
}

// pki is a root CA and the intermediate that issues every leaf.
type pki struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newPKI(now time.Time) (*pki, error) {
	p := &pki{}
	var err error
	if p.root, p.rootKey, err = newCA("vaulttest root", now, nil, nil); err != nil {
		return nil, err
	}
	if p.inter, p.interKey, err = newCA("vaulttest intermediate", now, p.root, p.rootKey); err != nil {
		return nil, err
	}
	return p, nil
}

func newCA(name string, now time.Time, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// RootPool returns a pool holding the root CA, for clients of the gateway.
func (s *Server) RootPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.root)
	return pool
}

// IssueClient returns a client certificate for uri (and its chain to the
// intermediate) valid for ttl, without going through the API or a role:
// for tests that need a caller, not an onboarding.
func (s *Server) IssueClient(uri string, ttl time.Duration) (tls.Certificate, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := s.ca.leaf(&x509.Certificate{URIs: []*url.URL{u}}, key.Public(), s.cfg.Now(), ttl)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, s.ca.inter.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// leaf signs tmpl's names for pub with the intermediate.
func (p *pki) leaf(tmpl *x509.Certificate, pub crypto.PublicKey, now time.Time, ttl time.Duration) (*x509.Certificate, error) {
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-notBeforeSkew), now.Add(ttl)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, pub, p.interKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// issue answers <pki>/issue/<role>: a new key and certificate.
func (s *Server) issue(roleName string, body map[string]any) (int, any) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return http.StatusInternalServerError, errorsBody(err.Error())
	}
	tmpl, err := namesFromBody(body)
	if err != nil {
		return http.StatusBadRequest, errorsBody(err.Error())
	}
	leaf, status, resp := s.signLocked(roleName, tmpl, key.Public(), body)
	if leaf == nil {
		return status, resp
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return http.StatusInternalServerError, errorsBody(err.Error())
	}
	data := resp["data"].(map[string]any)
	data["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	data["private_key_type"] = "ec"
	return http.StatusOK, resp
}

// sign answers <pki>/sign/<role>: the CSR's SANs plus the request's, as with
// Vault's default use_csr_sans=true, all checked against the role.
func (s *Server) sign(roleName string, body map[string]any) (int, any) {
	block, _ := pem.Decode([]byte(str(body, "csr")))
	if block == nil {
		return http.StatusBadRequest, errorsBody("csr contains no data")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		return http.StatusBadRequest, errorsBody("certificate request could not be parsed or its signature is invalid")
	}
	tmpl, err := namesFromBody(body)
	if err != nil {
		return http.StatusBadRequest, errorsBody(err.Error())
	}
	tmpl.DNSNames = append(tmpl.DNSNames, csr.DNSNames...)
	tmpl.IPAddresses = append(tmpl.IPAddresses, csr.IPAddresses...)
	tmpl.EmailAddresses = append(tmpl.EmailAddresses, csr.EmailAddresses...)
	for _, u := range csr.URIs {
		if !slices.ContainsFunc(tmpl.URIs, func(x *url.URL) bool { return x.String() == u.String() }) {
			tmpl.URIs = append(tmpl.URIs, u)
		}
	}
	_, status, resp := s.signLocked(roleName, tmpl, csr.PublicKey, body)
	return status, resp
}

// signLocked checks tmpl against the role and signs it; on refusal the
// certificate is nil and status/resp hold Vault's error answer.
func (s *Server) signLocked(roleName string, tmpl *x509.Certificate, pub crypto.PublicKey, body map[string]any) (*x509.Certificate, int, map[string]any) {
	role, ok := s.roles[roleName]
	if !ok {
		return nil, http.StatusBadRequest, errorsBody("unknown role: " + roleName)
	}
	if err := role.check(tmpl); err != nil {
		return nil, http.StatusBadRequest, errorsBody(err.Error())
	}
	ttl, ok := parseTTL(body["ttl"])
	if !ok {
		return nil, http.StatusBadRequest, errorsBody("invalid ttl")
	}
	if ttl <= 0 {
		ttl = role.TTL
	}
	leaf, err := s.ca.leaf(tmpl, pub, s.cfg.Now(), min(ttl, role.MaxTTL))
	if err != nil {
		return nil, http.StatusInternalServerError, errorsBody(err.Error())
	}
	pemOf := func(c *x509.Certificate) string {
		return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return leaf, http.StatusOK, map[string]any{
		"lease_id": "", "renewable": false, "lease_duration": 0,
		"data": map[string]any{
			"certificate": pemOf(leaf), "issuing_ca": pemOf(s.ca.inter),
			"ca_chain":      []string{pemOf(s.ca.inter), pemOf(s.ca.root)},
			"serial_number": colonHex(leaf.SerialNumber), "expiration": leaf.NotAfter.Unix(),
		},
	}
}

// check refuses names the role does not allow, in Vault's words.
func (r Role) check(tmpl *x509.Certificate) error {
	if r.AllowAnyName {
		return nil
	}
	for _, n := range tmpl.DNSNames {
		return fmt.Errorf("subject alternate name %s not allowed by this role", n)
	}
	if len(tmpl.IPAddresses) > 0 || len(tmpl.EmailAddresses) > 0 {
		return errors.New("IP Subject Alternative Names are not allowed in this role")
	}
	if tmpl.Subject.CommonName != "" {
		return fmt.Errorf("common name %s not allowed by this role", tmpl.Subject.CommonName)
	}
	for _, u := range tmpl.URIs {
		if !slices.Contains(r.AllowedURISANs, u.String()) {
			return fmt.Errorf("URI Subject Alternative Name %s not allowed by this role", u)
		}
	}
	return nil
}

// caChain answers <pki>/cert/ca_chain.
func (s *Server) caChain(*http.Request, map[string]any) (int, any) {
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ca.inter.Raw})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ca.root.Raw})...)
	return http.StatusOK, map[string]any{
		"lease_id": "", "renewable": false, "lease_duration": 0,
		"data": map[string]any{"certificate": string(chain), "ca_chain": string(chain)},
	}
}

// namesFromBody reads common_name, alt_names, ip_sans and uri_sans.
func namesFromBody(body map[string]any) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: str(body, "common_name")}}
	for _, n := range splitList(str(body, "alt_names")) {
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	for _, n := range splitList(str(body, "ip_sans")) {
		ip := net.ParseIP(n)
		if ip == nil {
			return nil, fmt.Errorf("invalid ip address %q", n)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	for _, n := range splitList(str(body, "uri_sans")) {
		u, err := url.Parse(n)
		if err != nil {
			return nil, fmt.Errorf("invalid uri %q", n)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return tmpl, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, serialLimit)
	return n
}

// colonHex formats a serial as Vault does: "3b:12:...".
func colonHex(n *big.Int) string {
	b := n.Bytes()
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}
