package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// IssueRequest is what CertSource asks a PKI role for.
type IssueRequest struct {
	CommonName string
	DNSNames   []string
	IPs        []string
	URIs       []string
	TTL        time.Duration
}

// issue asks <mount>/issue/<role> for a new certificate and key and returns
// them as a tls.Certificate whose chain is the leaf and its issuing CAs.
func (c *Client) issue(ctx context.Context, mount, role string, req IssueRequest) (*tls.Certificate, error) {
	data := map[string]any{
		"common_name":          req.CommonName,
		"alt_names":            strings.Join(req.DNSNames, ","),
		"ip_sans":              strings.Join(req.IPs, ","),
		"uri_sans":             strings.Join(req.URIs, ","),
		"ttl":                  ttlString(req.TTL),
		"format":               "pem",
		"private_key_format":   "pkcs8",
		"exclude_cn_from_sans": true,
	}
	path := mount + "/issue/" + role
	s, err := c.write(ctx, path, data)
	if err != nil {
		return nil, fmt.Errorf("vault: issue certificate from %s: %w", path, err)
	}
	certPEM, err := stringField(s, "certificate")
	if err != nil {
		return nil, fmt.Errorf("vault: issue certificate from %s: %w", path, err)
	}
	keyPEM, err := stringField(s, "private_key")
	if err != nil {
		return nil, fmt.Errorf("vault: issue certificate from %s: %w", path, err)
	}
	chain := append([]byte(certPEM+"\n"), chainPEM(s)...)
	cert, err := tls.X509KeyPair(chain, []byte(keyPEM))
	if err != nil { // the error text of X509KeyPair never contains the key
		return nil, fmt.Errorf("vault: issue certificate from %s: %w", path, err)
	}
	return &cert, nil
}

// SignedCertificate is a certificate Vault signed from a CSR.
type SignedCertificate struct {
	Leaf *x509.Certificate
	// ChainPEM is the leaf then its issuing CAs (self-signed roots left out),
	// the file a partner presents.
	ChainPEM []byte
}

// sign asks <mount>/sign/<role> to sign csrPEM for exactly the URI SAN uri.
func (c *Client) sign(ctx context.Context, mount, role string, csrPEM []byte, uri string, ttl time.Duration) (SignedCertificate, error) {
	data := map[string]any{
		"csr":                  string(csrPEM),
		"uri_sans":             uri,
		"format":               "pem",
		"exclude_cn_from_sans": true,
	}
	if ttl > 0 {
		data["ttl"] = ttlString(ttl)
	}
	path := mount + "/sign/" + role
	s, err := c.write(ctx, path, data)
	if err != nil {
		return SignedCertificate{}, fmt.Errorf("vault: sign csr with %s: %w", path, err)
	}
	certPEM, err := stringField(s, "certificate")
	if err != nil {
		return SignedCertificate{}, fmt.Errorf("vault: sign csr with %s: %w", path, err)
	}
	leaves, err := parseCerts([]byte(certPEM))
	if err != nil || len(leaves) == 0 {
		return SignedCertificate{}, fmt.Errorf("vault: sign csr with %s: bad certificate in answer: %v", path, err)
	}
	out := []byte(strings.TrimSpace(certPEM) + "\n")
	cas, err := parseCerts(chainPEM(s))
	if err != nil {
		return SignedCertificate{}, fmt.Errorf("vault: sign csr with %s: %w", path, err)
	}
	for _, ca := range cas {
		if !selfSigned(ca) {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
		}
	}
	return SignedCertificate{Leaf: leaves[0], ChainPEM: out}, nil
}

// caChain reads <mount>/cert/ca_chain: the mount's issuing CA and its parents.
func (c *Client) caChain(ctx context.Context, mount string) ([]*x509.Certificate, error) {
	path := mount + "/cert/ca_chain"
	s, err := c.read(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("vault: read %s: %w", path, err)
	}
	raw, err := stringField(s, "certificate")
	if err == nil && strings.TrimSpace(raw) == "" {
		err = errors.New("empty ca chain")
	}
	if err != nil {
		return nil, fmt.Errorf("vault: read %s: %w", path, err)
	}
	certs, err := parseCerts([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("vault: read %s: %w", path, err)
	}
	return certs, nil
}

// chainPEM returns the issuing CAs of an issue or sign answer: ca_chain when
// the mount has one, else issuing_ca.
func chainPEM(s *vaultapi.Secret) []byte {
	var out []byte
	if list, ok := s.Data["ca_chain"].([]any); ok && len(list) > 0 {
		for _, v := range list {
			if p, ok := v.(string); ok {
				out = append(out, []byte(strings.TrimSpace(p)+"\n")...)
			}
		}
		return out
	}
	if p, ok := s.Data["issuing_ca"].(string); ok {
		out = []byte(strings.TrimSpace(p) + "\n")
	}
	return out
}

// stringField returns the non-empty string s.Data[name].
func stringField(s *vaultapi.Secret, name string) (string, error) {
	if s == nil || s.Data == nil {
		return "", errors.New("empty answer")
	}
	v, ok := s.Data[name].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("answer has no %q", name)
	}
	return v, nil
}

// parseCerts parses every CERTIFICATE block of a PEM bundle.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, cert)
	}
}

// ttlString formats d as Vault's duration in whole seconds, e.g. "86400s".
func ttlString(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }

func selfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil && string(c.RawIssuer) == string(c.RawSubject)
}
