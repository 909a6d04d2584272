package vault_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault/vaulttest"
	"github.com/coalitionexchange/coalition/gateway"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

func TestMain(m *testing.M) { os.Exit(sqlstoretest.Main(m)) }

const (
	trustDomain = "coalition.local"
	serverName  = "localhost"
	certTTL     = time.Hour
)

// The partners the stack registers.
const (
	acmeAir  = "acme-air"
	duneRail = "dune-rail"
)

// stack is a gateway on a real database whose certificates come from a fake
// Vault through CertSource, with one fake clock for Vault, CertSource and
// the clients' certificate checks.
type stack struct {
	addr    string
	vault   *vaulttest.Server
	clock   *vaulttest.Clock
	client  *vault.Client
	certs   *vault.CertSource
	rotated chan *x509.Certificate // every certificate CertSource puts in use
}

func startStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{clock: vaulttest.NewClock(time.Now()), rotated: make(chan *x509.Certificate, 64)}
	// The token outlives the test: its renewal is TestTokenRenewalAndRelogin's
	// subject, and the watcher runs on real time.
	s.vault = vaulttest.Start(t, vaulttest.Config{Now: s.clock.Now, TokenTTL: 7 * 24 * time.Hour, TokenMaxTTL: 30 * 24 * time.Hour})
	s.vault.AddRole("gateway", vaulttest.Role{AllowAnyName: true, TTL: certTTL, MaxTTL: certTTL})
	s.client = appRoleClient(t, s.vault, s.clock, nil)
	var err error
	s.certs, err = vault.NewCertSource(context.Background(), vault.CertSourceConfig{
		Client: s.client, Mount: "pki", Role: "gateway", CommonName: serverName, DNSNames: []string{serverName},
		IPs: []string{"127.0.0.1"}, URI: "spiffe://" + trustDomain + "/gateway", TTL: certTTL,
		MinBackoff: time.Minute, MaxBackoff: 2 * time.Minute, Logger: slog.New(slog.DiscardHandler),
		OnRotate: func(leaf *x509.Certificate) { s.rotated <- leaf },
	})
	if err != nil {
		t.Fatalf("NewCertSource: %v", err)
	}
	<-s.rotated // the first certificate
	runInBackground(t, s.certs.Run)
	s.addr = serveGateway(t, s.certs)
	return s
}

// serveGateway runs gateway.New with certs and a real ledger on a fresh
// database, with acme-air and dune-rail registered.
func serveGateway(t *testing.T, certs *vault.CertSource) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	pool, err := sqlstore.Open(ctx, sqlstoretest.NewDatabase(t), 8)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlstore.Migrate(ctx, pool, log); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: log})
	if err != nil {
		t.Fatalf("sqlstore.New: %v", err)
	}
	for _, id := range []string{acmeAir, duneRail} {
		if _, err := store.EnsurePartner(ctx, settlement.Partner{ID: id, Name: id}); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	ledger, err := settlement.New(settlement.Config{Store: store, Logger: log})
	if err != nil {
		t.Fatalf("settlement.New: %v", err)
	}
	srv, err := gateway.New(gateway.Config{Ledger: ledger, Partners: store, Certs: certs, Ready: certs.Ready, Logger: log})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// handshakes records the serial of every server certificate a client saw.
type handshakes struct {
	mu      sync.Mutex
	serials []string
}

func (h *handshakes) record(cs tls.ConnectionState) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serials = append(h.serials, cs.PeerCertificates[0].SerialNumber.String())
	return nil
}

func (h *handshakes) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.serials...)
}

// dial returns a partner client presenting cert; it trusts the fake Vault's
// root and checks validity at the fake clock's time. Handshakes are logged in h.
func (s *stack) dial(t *testing.T, cert tls.Certificate, h *handshakes) coalitionv1.PointsServiceClient {
	t.Helper()
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: s.vault.RootPool(),
		ServerName: serverName, NextProtos: []string{"h2"}, Time: s.clock.Now, VerifyConnection: h.record,
	}
	conn, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return coalitionv1.NewPointsServiceClient(conn)
}

// partnerCert is a client certificate for partner id from the fake Vault.
func (s *stack) partnerCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	cert, err := s.vault.IssueClient(vault.PartnerURI(trustDomain, id), 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueClient: %v", err)
	}
	return cert
}

var keySeq atomic.Int64

// award makes one Award call with a fresh idempotency key.
func award(client coalitionv1.PointsServiceClient) (*coalitionv1.AwardResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := keySeq.Add(1)
	return client.Award(ctx, &coalitionv1.AwardRequest{
		IdempotencyKey: fmt.Sprintf("k-%d", n), MemberId: "M-1", Points: 10, Reference: fmt.Sprintf("r-%d", n),
	})
}
