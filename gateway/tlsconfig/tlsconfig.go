package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CertSource supplies the gateway's certificate and the pool that verifies
// clients; both may change at run time (rotation without restart).
// Implementations must be safe for concurrent use: every handshake calls them.
type CertSource interface {
	// ServerCertificate returns the certificate to present now. Callers must
	// not modify it.
	ServerCertificate() (*tls.Certificate, error)
	// ClientCAs returns the pool that verifies client certificates now.
	ClientCAs() (*x509.CertPool, error)
}

// Server returns a TLS 1.3-only config with ClientAuth
// RequireAndVerifyClientCert. It uses GetConfigForClient so every handshake
// reads the current certificate and pool from src, with NextProtos ["h2"].
// A handshake fails when src returns an error, a nil certificate or a nil
// pool (a nil pool would mean the system roots).
func Server(src CertSource) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		ClientAuth:             tls.RequireAndVerifyClientCert,
		NextProtos:             []string{"h2"},
		SessionTicketsDisabled: true,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return serverConfig(src)
		},
	}
}

// serverConfig builds the config of one handshake from what src holds now.
func serverConfig(src CertSource) (*tls.Config, error) {
	cert, err := src.ServerCertificate()
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: server certificate: %w", err)
	}
	if cert == nil {
		return nil, errors.New("tlsconfig: cert source returned no server certificate")
	}
	pool, err := src.ClientCAs()
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: client cas: %w", err)
	}
	if pool == nil {
		return nil, errors.New("tlsconfig: cert source returned no client ca pool")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"h2"},
		// A resumed session skips verifying the client certificate against
		// the current pool, so a client dropped from the pool could come
		// back. gRPC connections are long-lived; full handshakes cost little.
		SessionTicketsDisabled: true,
	}, nil
}

// Client returns a TLS 1.3 client config presenting cert, trusting only
// caPool and verifying the server as serverName. caPool must not be nil: a
// nil pool would trust the system roots.
func Client(cert tls.Certificate, caPool *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      caPool,
		ServerName:   serverName,
		NextProtos:   []string{"h2"},
	}
}

// LoadClient reads <dir>/<name>.crt, <dir>/<name>.key and <dir>/ca.crt (like
// `cockroach sql --certs-dir`) and returns Client for them.
func LoadClient(dir, name, serverName string) (*tls.Config, error) {
	if name == "" || name != filepath.Base(name) {
		return nil, fmt.Errorf("tlsconfig: invalid certificate name %q", name)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: load client certificate: %w", err)
	}
	pool, err := loadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	return Client(cert, pool, serverName), nil
}

// loadPool reads a PEM bundle of CA certificates.
func loadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsconfig: no certificate in ca file %s", caFile)
	}
	return pool, nil
}

// reloadInterval is how often a FileSource looks at its files at most.
const reloadInterval = time.Second

// FileSource is a CertSource that reads a certificate, its key and a CA
// bundle from files and reloads them when a file's modification time or size
// changes. It looks at most once a second, under a lock, so it is
// safe for concurrent handshakes. When a reload fails (for example a key
// written before its certificate) it keeps serving the last good pair and
// retries at the next interval; ReloadErr reports the failure.
type FileSource struct {
	certFile, keyFile, caFile string
	now                       func() time.Time
	interval                  time.Duration

	mu        sync.Mutex
	checked   time.Time    // when the files were last looked at
	stamps    [3]fileStamp // of the files behind cert and pool
	cert      *tls.Certificate
	pool      *x509.CertPool
	reloadErr error
}

// fileStamp is what FileSource compares to notice that a file changed.
type fileStamp struct {
	modTime time.Time
	size    int64
}

// NewFileSource loads certFile, keyFile and caFile and returns a source that
// follows their changes. It returns an error when the initial load fails.
func NewFileSource(certFile, keyFile, caFile string) (*FileSource, error) {
	return newFileSource(certFile, keyFile, caFile, time.Now, reloadInterval)
}

func newFileSource(certFile, keyFile, caFile string, now func() time.Time, interval time.Duration) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile, caFile: caFile, now: now, interval: interval}
	s.checked = now()
	stamps, err := s.stat()
	if err != nil {
		return nil, err
	}
	if err := s.load(stamps); err != nil {
		return nil, err
	}
	return s, nil
}

// ServerCertificate returns the last good certificate; it never fails.
func (s *FileSource) ServerCertificate() (*tls.Certificate, error) {
	cert, _ := s.current()
	return cert, nil
}

// ClientCAs returns the last good CA pool; it never fails.
func (s *FileSource) ClientCAs() (*x509.CertPool, error) {
	_, pool := s.current()
	return pool, nil
}

// ReloadErr returns the error of the latest reload attempt, or nil when the
// files in use are the latest ones on disk.
func (s *FileSource) ReloadErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadErr
}

// current reloads the files if they changed and the interval has passed,
// then returns what is in use.
func (s *FileSource) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); now.Sub(s.checked) >= s.interval {
		s.checked = now
		s.reloadErr = s.reloadIfChanged()
	}
	return s.cert, s.pool
}

// reloadIfChanged loads the files when their stamps differ from the ones in
// use. A failed load leaves the stamps alone so the next check retries.
func (s *FileSource) reloadIfChanged() error {
	stamps, err := s.stat()
	if err != nil {
		return err
	}
	if stamps == s.stamps {
		return nil
	}
	return s.load(stamps)
}

func (s *FileSource) stat() ([3]fileStamp, error) {
	var stamps [3]fileStamp
	for i, name := range []string{s.certFile, s.keyFile, s.caFile} {
		info, err := os.Stat(name)
		if err != nil {
			return stamps, fmt.Errorf("tlsconfig: stat: %w", err)
		}
		stamps[i] = fileStamp{modTime: info.ModTime(), size: info.Size()}
	}
	return stamps, nil
}

// load reads all three files and, only if all are good, puts them in use.
func (s *FileSource) load(stamps [3]fileStamp) error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("tlsconfig: load server certificate: %w", err)
	}
	pool, err := loadPool(s.caFile)
	if err != nil {
		return err
	}
	s.cert, s.pool, s.stamps = &cert, pool, stamps
	return nil
}
