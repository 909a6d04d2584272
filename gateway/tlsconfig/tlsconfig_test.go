package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/gateway/devca"
)

// ioTimeout bounds every network wait so a broken test fails instead of hanging.
const ioTimeout = 10 * time.Second

// handshake is what the server saw of one connection.
type handshake struct {
	state tls.ConnectionState
	err   error
}

// echoServer accepts TLS connections, reports each handshake and echoes bytes.
type echoServer struct {
	addr       string
	handshakes chan handshake
}

func startEchoServer(t *testing.T, cfg *tls.Config) *echoServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("tls.Listen: %v", err)
	}
	srv := &echoServer{addr: ln.Addr().String(), handshakes: make(chan handshake, 16)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() { srv.serve(conn.(*tls.Conn)) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return srv
}

func (s *echoServer) serve(conn *tls.Conn) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	err := conn.HandshakeContext(ctx)
	s.handshakes <- handshake{state: conn.ConnectionState(), err: err}
	if err == nil {
		io.Copy(conn, conn)
	}
}

// next returns the server's view of the next handshake.
func (s *echoServer) next(t *testing.T) handshake {
	t.Helper()
	select {
	case h := <-s.handshakes:
		return h
	case <-time.After(ioTimeout):
		t.Fatal("no handshake seen by the server")
		return handshake{}
	}
}

// dial connects and proves the connection works with one round trip. In TLS
// 1.3 the client finishes before the server has checked its certificate, so
// a rejection shows up on the round trip, not on the dial.
func dial(addr string, cfg *tls.Config) (*tls.Conn, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := ping(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func ping(conn *tls.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo mismatch")
	}
	return nil
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ unixNanos atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.unixNanos.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.unixNanos.Add(int64(d)) }

// devDir is a certs dir written by devca.EnsureDir with a FileSource on it.
type devDir struct {
	dir   string
	ca    *devca.CA
	clock *fakeClock
	src   *FileSource
}

func newDevDir(t *testing.T) *devDir {
	t.Helper()
	dir := t.TempDir()
	ids := []devca.Identity{{Role: "partner", Name: "acme-air", File: "partner-acme-air"}}
	ca, err := devca.EnsureDir(dir, ids, time.Now())
	if err != nil {
		t.Fatalf("EnsureDir: %v", err)
	}
	clock := &fakeClock{}
	clock.unixNanos.Store(time.Now().UnixNano())
	src, err := newFileSource(inDir(dir, "gateway.crt"), inDir(dir, "gateway.key"), inDir(dir, "ca.crt"), clock.Now, time.Second)
	if err != nil {
		t.Fatalf("newFileSource: %v", err)
	}
	return &devDir{dir: dir, ca: ca, clock: clock, src: src}
}

func inDir(dir, name string) string { return filepath.Join(dir, name) }

// rotate writes a new gateway pair and moves its modification time forward,
// as a rename by a rotation agent would.
func (dd *devDir) rotate(t *testing.T, certPEM, keyPEM []byte, mtime time.Time) {
	t.Helper()
	for name, data := range map[string][]byte{"gateway.crt": certPEM, "gateway.key": keyPEM} {
		if err := os.WriteFile(inDir(dd.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(inDir(dd.dir, name), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func (dd *devDir) newServerPEM(t *testing.T) (certPEM, keyPEM []byte, serial *big.Int) {
	t.Helper()
	cert, err := dd.ca.IssueServer([]string{"localhost"}, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	certPEM, keyPEM, err = devca.EncodePEM(cert)
	if err != nil {
		t.Fatalf("EncodePEM: %v", err)
	}
	return certPEM, keyPEM, cert.Leaf.SerialNumber
}

func (dd *devDir) client(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := LoadClient(dd.dir, "partner-acme-air", "localhost")
	if err != nil {
		t.Fatalf("LoadClient: %v", err)
	}
	return cfg
}

func TestHandshakeClientFromCA(t *testing.T) {
	dd := newDevDir(t)
	srv := startEchoServer(t, Server(dd.src))
	conn, err := dial(srv.addr, dd.client(t))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	h := srv.next(t)
	if h.err != nil {
		t.Fatalf("server handshake: %v", h.err)
	}
	if got := h.state.Version; got != tls.VersionTLS13 {
		t.Errorf("got version %x, want TLS 1.3", got)
	}
	if got := h.state.NegotiatedProtocol; got != "h2" {
		t.Errorf("got ALPN %q, want h2", got)
	}
	got, err := FromVerifiedChains(h.state.VerifiedChains, devca.TrustDomain)
	if err != nil {
		t.Fatalf("FromVerifiedChains: %v", err)
	}
	want := Identity{Role: RolePartner, Name: "acme-air", URI: "spiffe://coalition.local/partner/acme-air"}
	if got != want {
		t.Errorf("got identity %+v, want %+v", got, want)
	}
}

func TestHandshakeRejects(t *testing.T) {
	dd := newDevDir(t)
	srv := startEchoServer(t, Server(dd.src))
	other, err := devca.New("Other CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	foreign, err := other.IssueClient("partner", "acme-air", time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	serverCert, err := tls.LoadX509KeyPair(inDir(dd.dir, "gateway.crt"), inDir(dd.dir, "gateway.key"))
	if err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	tests := map[string]func(cfg *tls.Config){
		"no certificate":        func(cfg *tls.Config) { cfg.Certificates = nil },
		"another ca":            func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{foreign} },
		"another ca, forced":    func(cfg *tls.Config) { cfg.GetClientCertificate = present(foreign) },
		"server-only key usage": func(cfg *tls.Config) { cfg.GetClientCertificate = present(serverCert) },
		"tls 1.2 only":          func(cfg *tls.Config) { cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := dd.client(t)
			mutate(cfg)
			conn, err := dial(srv.addr, cfg)
			if err == nil {
				conn.Close()
				t.Fatal("client connected, want failure")
			}
			h := srv.next(t)
			if h.err == nil {
				t.Fatal("server handshake succeeded, want error")
			}
			t.Logf("client: %v; server: %v", err, h.err)
		})
	}
}

// present makes a client send cert even when its issuer is not among the
// CAs the server asks for, so that the server's verification is what rejects it.
func present(cert tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

func TestFileSourceRotation(t *testing.T) {
	dd := newDevDir(t)
	srv := startEchoServer(t, Server(dd.src))
	old, err := dial(srv.addr, dd.client(t))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer old.Close()
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber

	certPEM, keyPEM, newSerial := dd.newServerPEM(t)
	dd.rotate(t, certPEM, keyPEM, time.Now().Add(time.Hour))

	// Within the interval the source does not look at the files.
	assertServerSerial(t, srv.addr, dd.client(t), oldSerial)
	dd.clock.Advance(time.Second)
	assertServerSerial(t, srv.addr, dd.client(t), newSerial)

	if err := ping(old); err != nil {
		t.Errorf("connection opened before rotation: %v", err)
	}
}

func assertServerSerial(t *testing.T, addr string, cfg *tls.Config, want *big.Int) {
	t.Helper()
	conn, err := dial(addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("got server serial %v, want %v", got, want)
	}
}

func TestFileSourceKeepsLastGoodPairOnError(t *testing.T) {
	dd := newDevDir(t)
	first, err := dd.src.ServerCertificate()
	if err != nil {
		t.Fatalf("ServerCertificate: %v", err)
	}
	certPEM, keyPEM, newSerial := dd.newServerPEM(t)
	dd.rotate(t, certPEM, []byte("not a key"), time.Now().Add(time.Hour))
	dd.clock.Advance(time.Second)

	got, err := dd.src.ServerCertificate()
	if err != nil {
		t.Fatalf("ServerCertificate after bad reload: %v", err)
	}
	if got.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Errorf("got serial %v, want last good %v", got.Leaf.SerialNumber, first.Leaf.SerialNumber)
	}
	if dd.src.ReloadErr() == nil {
		t.Error("got nil ReloadErr, want the reload failure")
	}

	dd.rotate(t, certPEM, keyPEM, time.Now().Add(2*time.Hour))
	dd.clock.Advance(time.Second)
	if got, _ = dd.src.ServerCertificate(); got.Leaf.SerialNumber.Cmp(newSerial) != 0 {
		t.Errorf("got serial %v, want %v after the files were fixed", got.Leaf.SerialNumber, newSerial)
	}
	if err := dd.src.ReloadErr(); err != nil {
		t.Errorf("got ReloadErr %v, want nil", err)
	}
}

func TestFileSourceConcurrentUse(t *testing.T) {
	dd := newDevDir(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if cert, _ := dd.src.ServerCertificate(); cert == nil {
					t.Error("got nil certificate")
				}
				if pool, _ := dd.src.ClientCAs(); pool == nil {
					t.Error("got nil pool")
				}
			}
		})
	}
	for i := range 20 {
		certPEM, keyPEM, _ := dd.newServerPEM(t)
		dd.rotate(t, certPEM, keyPEM, time.Now().Add(time.Duration(i+1)*time.Hour))
		dd.clock.Advance(time.Second)
	}
	wg.Wait()
}

// stubSource returns fixed values, to exercise serverConfig's checks.
type stubSource struct {
	cert    *tls.Certificate
	pool    *x509.CertPool
	certErr error
	poolErr error
}

func (s stubSource) ServerCertificate() (*tls.Certificate, error) { return s.cert, s.certErr }
func (s stubSource) ClientCAs() (*x509.CertPool, error)           { return s.pool, s.poolErr }

func TestServerConfigRejectsIncompleteSource(t *testing.T) {
	cert, pool := &tls.Certificate{}, x509.NewCertPool()
	boom := errors.New("boom")
	tests := map[string]stubSource{
		"cert error": {cert: cert, pool: pool, certErr: boom},
		"pool error": {cert: cert, pool: pool, poolErr: boom},
		"nil cert":   {pool: pool},
		"nil pool":   {cert: cert},
	}
	for name, src := range tests {
		if _, err := serverConfig(src); err == nil {
			t.Errorf("%s: got nil error, want error", name)
		}
	}
}

func TestLoadClientErrors(t *testing.T) {
	dd := newDevDir(t)
	tests := map[string]string{
		"missing":     "nobody",
		"escapes dir": "../partner-acme-air",
		"empty":       "",
	}
	for name, file := range tests {
		if _, err := LoadClient(dd.dir, file, "localhost"); err == nil {
			t.Errorf("%s: got nil error, want error", name)
		}
	}
}
