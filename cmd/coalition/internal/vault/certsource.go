package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// CertSourceConfig configures a CertSource.
type CertSourceConfig struct {
	Client *Client // required, started
	// Mount is the PKI mount that issues the gateway certificate and whose
	// CA chain verifies partner certificates, e.g. "pki_int". Required.
	Mount string
	// Role is the PKI role the certificate is issued from. Required.
	Role string
	// CommonName and DNSNames are the names clients verify; IPs are IP SANs.
	// At least CommonName is required. The common name is not repeated in
	// the SANs unless listed in DNSNames.
	CommonName string
	DNSNames   []string
	IPs        []string
	// URI is the certificate's single URI SAN, e.g.
	// spiffe://coalition.local/gateway; empty for none.
	URI string
	// TTL of each certificate; default 24h. It is re-issued at 2/3 of its life.
	TTL time.Duration
	// CARefresh is how often the CA chain is re-read; default 1h. It is also
	// re-read after every rotation.
	CARefresh time.Duration
	// ReadyMargin: Ready fails once the certificate in use has less than this
	// left; default a sixth of its life (half the slack a rotation at 2/3
	// leaves).
	ReadyMargin time.Duration
	// MinBackoff and MaxBackoff bound the waits between failed attempts;
	// defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// OnRotate, when set, is called after each new certificate is put in use.
	OnRotate func(leaf *x509.Certificate)
	Logger   *slog.Logger // default the client's
	Clock    Clock        // default the client's
}

// CertSource is a tlsconfig.CertSource backed by Vault PKI. Handshakes read
// the certificate and pool through atomic pointers, so a rotation never
// blocks or breaks them; connections already open keep the certificate they
// were made with. The same certificate is presented on outbound calls
// through GetClientCertificate (the role sets both server and client
// usages). It is safe for concurrent use.
type CertSource struct {
	cfg  CertSourceConfig
	cert atomic.Pointer[tls.Certificate]
	pool atomic.Pointer[x509.CertPool]
}

// NewCertSource checks cfg, issues the first certificate and reads the CA
// chain. It fails when Vault cannot do either: a gateway must not start
// without a certificate. Call Run to keep both fresh.
func NewCertSource(ctx context.Context, cfg CertSourceConfig) (*CertSource, error) {
	if cfg.Client == nil || cfg.Mount == "" || cfg.Role == "" || cfg.CommonName == "" {
		return nil, errors.New("vault: CertSourceConfig.Client, Mount, Role and CommonName are required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.CARefresh <= 0 {
		cfg.CARefresh = time.Hour
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Minute, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Client.log
	}
	if cfg.Clock == nil {
		cfg.Clock = cfg.Client.clock
	}
	s := &CertSource{cfg: cfg}
	if err := s.rotate(ctx); err != nil {
		return nil, err
	}
	if err := s.refreshCA(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ServerCertificate implements tlsconfig.CertSource.
func (s *CertSource) ServerCertificate() (*tls.Certificate, error) { return s.cert.Load(), nil }

// ClientCAs implements tlsconfig.CertSource: the mount's CA chain.
func (s *CertSource) ClientCAs() (*x509.CertPool, error) { return s.pool.Load(), nil }

// GetClientCertificate is for tls.Config.GetClientCertificate on outbound
// calls: it presents the current certificate.
func (s *CertSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.cert.Load(), nil
}

// Leaf returns the certificate in use, parsed.
func (s *CertSource) Leaf() *x509.Certificate { return s.cert.Load().Leaf }

// Run re-issues the certificate at 2/3 of its life and re-reads the CA chain
// every CARefresh, until ctx ends; it then returns nil. A failed attempt
// keeps the certificate in use and is retried with bounded backoff.
func (s *CertSource) Run(ctx context.Context) error {
	clock := s.cfg.Clock
	issueBackoff := newBackoff(s.cfg.MinBackoff, s.cfg.MaxBackoff)
	caBackoff := newBackoff(s.cfg.MinBackoff, s.cfg.MaxBackoff)
	nextIssue := renewAt(s.Leaf())
	nextCA := clock.Now().Add(s.cfg.CARefresh)
	for {
		now := clock.Now()
		if wait := min(nextIssue.Sub(now), nextCA.Sub(now)); wait > 0 {
			if sleep(ctx, clock, wait) != nil {
				return nil
			}
			continue
		}
		if !now.Before(nextIssue) {
			if err := s.rotate(ctx); err != nil {
				nextIssue = now.Add(issueBackoff.wait())
				s.cfg.Logger.Warn("vault: certificate not re-issued; keeping the current one",
					"err", err, "expires", s.Leaf().NotAfter, "retry_at", nextIssue)
			} else {
				issueBackoff.reset()
				nextIssue, nextCA = renewAt(s.Leaf()), now
			}
		}
		if !now.Before(nextCA) {
			if err := s.refreshCA(ctx); err != nil {
				nextCA = now.Add(caBackoff.wait())
				s.cfg.Logger.Warn("vault: ca chain not refreshed; keeping the current one", "err", err)
			} else {
				caBackoff.reset()
				nextCA = now.Add(s.cfg.CARefresh)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Ready reports nil while the certificate in use has more than the ready
// margin left. With Vault answering, that always holds (the certificate is
// re-issued at 2/3 of its life); it fails once Vault has been unreachable
// for longer than the remaining life allows, so that traffic moves to a
// replica that still has a valid certificate.
func (s *CertSource) Ready(context.Context) error {
	leaf := s.Leaf()
	margin := s.cfg.ReadyMargin
	if margin <= 0 {
		margin = leaf.NotAfter.Sub(leaf.NotBefore) / 6
	}
	left := leaf.NotAfter.Sub(s.cfg.Clock.Now())
	if left > margin {
		return nil
	}
	st := s.cfg.Client.Status()
	if st.FailingSince.IsZero() {
		return fmt.Errorf("vault: server certificate expires in %s and has not been re-issued", left.Round(time.Second))
	}
	return fmt.Errorf("vault: server certificate expires in %s; vault unreachable since %s: %w",
		left.Round(time.Second), st.FailingSince.UTC().Format(time.RFC3339), st.LastError)
}

// rotate issues a new certificate and puts it in use.
func (s *CertSource) rotate(ctx context.Context) error {
	cert, err := s.cfg.Client.issue(ctx, s.cfg.Mount, s.cfg.Role, IssueRequest{
		CommonName: s.cfg.CommonName, DNSNames: s.cfg.DNSNames, IPs: s.cfg.IPs,
		URIs: nonEmpty(s.cfg.URI), TTL: s.cfg.TTL,
	})
	if err != nil {
		return err
	}
	s.cert.Store(cert)
	s.cfg.Logger.Info("vault: certificate issued", "serial", cert.Leaf.SerialNumber.Text(16),
		"not_after", cert.Leaf.NotAfter)
	if s.cfg.OnRotate != nil {
		s.cfg.OnRotate(cert.Leaf)
	}
	return nil
}

// refreshCA reads the mount's CA chain into a new pool and puts it in use.
func (s *CertSource) refreshCA(ctx context.Context) error {
	certs, err := s.cfg.Client.caChain(ctx, s.cfg.Mount)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	s.pool.Store(pool)
	return nil
}

// renewAt is when a certificate is due for re-issue: at 2/3 of its life.
func renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life * 2 / 3)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
