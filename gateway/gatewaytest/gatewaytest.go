package gatewaytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

// The partners Start registers, all active.
const (
	AcmeAir    = "acme-air"
	BeanCoffee = "bean-coffee"
	CityFuel   = "city-fuel"
)

// ServerName is the name the gateway's certificate is issued for and clients verify.
const ServerName = "localhost"

// PartnerCacheTTL is the gateway's partner cache TTL under test: short, so a suspension
// takes effect quickly, but long enough that the cache is exercised.
const PartnerCacheTTL = 50 * time.Millisecond

const (
	certValidFor    = time.Hour
	dbMaxConns      = 8
	shutdownTimeout = 5 * time.Second
	setupTimeout    = 30 * time.Second
)

// Env is a running gateway stack. Everything it holds is stopped at the test's cleanup.
type Env struct {
	// Partner clients, one connection each, authenticated by certificates from CA.
	AcmeAir, BeanCoffee, CityFuel coalitionv1.PointsServiceClient
	// Finance and Operator are clients with finance and operator certificates; PointsService
	// must refuse them.
	Finance, Operator coalitionv1.PointsServiceClient

	Store       *sqlstore.Store
	CA          *devca.CA
	DatabaseURL string // the fresh database, for direct queries
	Addr        string // the gRPC listener, 127.0.0.1:<port>
	HTTPURL     string // base URL of /healthz, /readyz and /metrics

	ledger *CountingLedger
}

// Start builds the stack for t and returns it once it serves. Each configure function may
// change the gateway's configuration before the gateway is built (a rate limit, say).
func Start(t testing.TB, configure ...func(*gateway.Config)) *Env {
	t.Helper()
	logs := captureLogs(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	env := &Env{DatabaseURL: sqlstoretest.NewDatabase(t)}
	env.Store = openStore(ctx, t, env.DatabaseURL, logs)
	for _, id := range []string{AcmeAir, BeanCoffee, CityFuel} {
		if _, err := env.Store.EnsurePartner(ctx, settlement.Partner{ID: id, Name: id}); err != nil {
			t.Fatalf("gatewaytest: register partner %s: %v", id, err)
		}
	}
	ledger, err := settlement.New(settlement.Config{Store: env.Store, Logger: logs})
	if err != nil {
		t.Fatalf("gatewaytest: settlement.New: %v", err)
	}
	env.ledger = &CountingLedger{Next: ledger}
	env.CA, err = devca.New("gatewaytest CA", time.Now(), 2*certValidFor)
	if err != nil {
		t.Fatalf("gatewaytest: devca.New: %v", err)
	}
	env.serve(t, logs, configure)
	env.AcmeAir = env.Client(t, tlsconfig.RolePartner, AcmeAir)
	env.BeanCoffee = env.Client(t, tlsconfig.RolePartner, BeanCoffee)
	env.CityFuel = env.Client(t, tlsconfig.RolePartner, CityFuel)
	env.Finance = env.Client(t, tlsconfig.RoleFinance, "books")
	env.Operator = env.Client(t, tlsconfig.RoleOperator, "ops")
	return env
}

func openStore(ctx context.Context, t testing.TB, url string, log *slog.Logger) *sqlstore.Store {
	t.Helper()
	pool, err := sqlstore.Open(ctx, url, dbMaxConns)
	if err != nil {
		t.Fatalf("gatewaytest: open database: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlstore.Migrate(ctx, pool, log); err != nil {
		t.Fatalf("gatewaytest: migrate: %v", err)
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: log})
	if err != nil {
		t.Fatalf("gatewaytest: sqlstore.New: %v", err)
	}
	return store
}

// serve starts the gateway's gRPC listener and an HTTP server for its handler.
func (e *Env) serve(t testing.TB, log *slog.Logger, configure []func(*gateway.Config)) {
	t.Helper()
	serverCert, err := e.CA.IssueServer([]string{ServerName}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now(), certValidFor)
	if err != nil {
		t.Fatalf("gatewaytest: issue server certificate: %v", err)
	}
	cfg := gateway.Config{
		Ledger: e.ledger, Partners: e.Store, Certs: &StaticCerts{Cert: &serverCert, Pool: e.CA.Pool()},
		Ready: e.Store.Ping, Reflection: true, PartnerCacheTTL: PartnerCacheTTL, Logger: log,
	}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := gateway.New(cfg)
	if err != nil {
		t.Fatalf("gatewaytest: gateway.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gatewaytest: listen: %v", err)
	}
	e.Addr = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	httpSrv := httptest.NewServer(srv.HTTPHandler())
	e.HTTPURL = httpSrv.URL
	t.Cleanup(func() {
		httpSrv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("gatewaytest: Serve: %v", err)
		}
	})
}

// Client returns a PointsService client authenticated as spiffe://coalition.local/<role>/<name>
// by a certificate from e.CA. The role need not be one the gateway knows.
func (e *Env) Client(t testing.TB, role tlsconfig.Role, name string) coalitionv1.PointsServiceClient {
	t.Helper()
	return e.Dial(t, e.IdentityTLS(t, role, name))
}

// IdentityTLS returns the TLS config of a client that presents a certificate from e.CA for
// spiffe://coalition.local/<role>/<name>.
func (e *Env) IdentityTLS(t testing.TB, role tlsconfig.Role, name string) *tls.Config {
	t.Helper()
	cert, err := e.CA.IssueClient(string(role), name, time.Now(), certValidFor)
	if err != nil {
		t.Fatalf("gatewaytest: issue %s/%s certificate: %v", role, name, err)
	}
	return tlsconfig.Client(cert, e.CA.Pool(), ServerName)
}

// ClientTLS returns the TLS config of a client that trusts e.CA and presents certs (none when
// certs is empty), for tests of callers the gateway must refuse at the handshake.
func (e *Env) ClientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: certs,
		RootCAs:      e.CA.Pool(),
		ServerName:   ServerName,
		NextProtos:   []string{"h2"},
	}
}

// Dial returns a PointsService client on a new connection to the gateway with cfg.
func (e *Env) Dial(t testing.TB, cfg *tls.Config) coalitionv1.PointsServiceClient {
	t.Helper()
	return coalitionv1.NewPointsServiceClient(e.Conn(t, cfg))
}

// Conn returns a new connection to the gateway with cfg, for clients of its other services
// (health, reflection). It is closed at the test's cleanup.
func (e *Env) Conn(t testing.TB, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+e.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatalf("gatewaytest: grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// LedgerCalls returns how many calls the gateway's handlers have made to the ledger.
func (e *Env) LedgerCalls() int64 { return e.ledger.Calls() }

// Verify fails t when the ledger's invariants do not hold.
func (e *Env) Verify(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	violations, err := e.Store.Verify(ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, v := range violations {
		t.Errorf("ledger invariant broken: %s: %s", v.Check, v.Detail)
	}
}

// CountingLedger is a gateway.Ledger that counts the calls it passes on to Next.
type CountingLedger struct {
	Next  gateway.Ledger
	calls atomic.Int64
}

// Apply implements gateway.Ledger.
func (l *CountingLedger) Apply(ctx context.Context, cmd settlement.Command) (settlement.Outcome, error) {
	l.calls.Add(1)
	return l.Next.Apply(ctx, cmd)
}

// Balance implements gateway.Ledger.
func (l *CountingLedger) Balance(ctx context.Context, memberID string) (settlement.Balance, error) {
	l.calls.Add(1)
	return l.Next.Balance(ctx, memberID)
}

// ListTransactions implements gateway.Ledger.
func (l *CountingLedger) ListTransactions(ctx context.Context, partnerID, memberID string, pageSize int, after *settlement.Page) ([]settlement.Transaction, *settlement.Page, error) {
	l.calls.Add(1)
	return l.Next.ListTransactions(ctx, partnerID, memberID, pageSize, after)
}

// Calls returns how many calls have been made so far.
func (l *CountingLedger) Calls() int64 { return l.calls.Load() }

// StaticCerts is an in-memory tlsconfig.CertSource that never rotates.
type StaticCerts struct {
	Cert *tls.Certificate
	Pool *x509.CertPool
}

// ServerCertificate implements tlsconfig.CertSource.
func (s *StaticCerts) ServerCertificate() (*tls.Certificate, error) { return s.Cert, nil }

// ClientCAs implements tlsconfig.CertSource.
func (s *StaticCerts) ClientCAs() (*x509.CertPool, error) { return s.Pool, nil }

// captureLogs returns a logger (warnings and errors) whose output is shown only if t fails.
// The cleanup that shows it is registered first, so it runs last, after the server stops.
func captureLogs(t testing.TB) *slog.Logger {
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() && buf.Len() > 0 {
			t.Logf("gateway logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
