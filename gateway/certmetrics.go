package gateway

import (
	"crypto/x509"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
)

// CertificateServer is the certificate label of the certificate the gateway presents to callers.
const CertificateServer = "server"

// certExpiry is the collector of coalition_certificate_expiry_seconds{certificate}: seconds until
// each certificate's NotAfter, computed at scrape time so the value falls between rotations
// and an alert fires even when nothing rotates. The server certificate is read from the
// CertSource on every scrape (whatever rotated it, files or Vault); other certificates, or
// a server certificate a source announces on rotation, are recorded with Observe.
type certExpiry struct {
	desc   *prometheus.Desc
	now    func() time.Time
	mu     sync.Mutex
	source tlsconfig.CertSource
	leaves map[string]*x509.Certificate // observed, by label; wins over source for "server"
}

func newCertExpiry(now func() time.Time) *certExpiry {
	return &certExpiry{
		desc: prometheus.NewDesc("coalition_certificate_expiry_seconds",
			"Seconds until the certificate expires (negative once expired), by certificate.",
			[]string{"certificate"}, nil),
		now:    now,
		leaves: map[string]*x509.Certificate{},
	}
}

// Describe implements prometheus.Collector.
func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	leaves := make(map[string]*x509.Certificate, len(c.leaves)+1)
	for name, leaf := range c.leaves {
		leaves[name] = leaf
	}
	src := c.source
	c.mu.Unlock()
	if _, observed := leaves[CertificateServer]; !observed && src != nil {
		if leaf := serverLeaf(src); leaf != nil {
			leaves[CertificateServer] = leaf
		}
	}
	names := make([]string, 0, len(leaves))
	for name := range leaves {
		names = append(names, name)
	}
	sort.Strings(names)
	now := c.now()
	for _, name := range names {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, leaves[name].NotAfter.Sub(now).Seconds(), name)
	}
}

// serverLeaf returns the parsed leaf of the source's current certificate, nil when there is none.
func serverLeaf(src tlsconfig.CertSource) *x509.Certificate {
	cert, err := src.ServerCertificate()
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return nil
	}
	if cert.Leaf != nil {
		return cert.Leaf
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// ObserveCertificate records leaf as the current certificate called name in
// coalition_certificate_expiry_seconds. It is the hook for certificate sources that rotate on
// their own (Vault PKI: pass it as the rotation callback with CertificateServer) and for
// certificates the gateway does not serve, such as its outbound client certificate. A nil leaf
// forgets name. Safe for concurrent use.
func (m *Metrics) ObserveCertificate(name string, leaf *x509.Certificate) {
	m.certs.mu.Lock()
	defer m.certs.mu.Unlock()
	if leaf == nil {
		delete(m.certs.leaves, name)
		return
	}
	m.certs.leaves[name] = leaf
}

// watchServerCertificate makes the collector read the server certificate from src at scrape time.
func (m *Metrics) watchServerCertificate(src tlsconfig.CertSource) {
	m.certs.mu.Lock()
	defer m.certs.mu.Unlock()
	m.certs.source = src
}
