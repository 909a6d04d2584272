package partnerstest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	"github.com/coalitionexchange/coalition/partners"
	"github.com/coalitionexchange/coalition/partners/partnersim"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

// Options tune the stack; zero values mean the package defaults.
type Options struct {
	Breaker    partners.BreakerSettings
	Retry      partners.RetrySettings
	Dispatcher partners.DispatcherConfig // Store, Partners and Logger are filled in
	Exchanger  partners.ExchangerConfig  // Ledger, Store, Partners and Logger are filled in
	// NoDispatcher and NoResolver leave those loops off; the test drives them.
	NoDispatcher, NoResolver bool
	// Credentials is passed to the Registry (per-partner call credentials).
	Credentials partners.CredentialSource
}

// Env is a running stack.
type Env struct {
	Store      *sqlstore.Store
	CA         *devca.CA
	Registry   *partners.Registry
	Exchanger  *partners.Exchanger
	Dispatcher *partners.Dispatcher
	Metrics    *prometheus.Registry
	// Operator calls ExchangeService and AdminService as spiffe://coalition.local/operator/ops.
	Exchange coalitionv1.ExchangeServiceClient
	Admin    coalitionv1.AdminServiceClient
	gw       *gatewaytest.Env
	addr     string
}

// Partners the stack registers.
const (
	AcmeAir    = gatewaytest.AcmeAir
	BeanCoffee = gatewaytest.BeanCoffee
	CityFuel   = gatewaytest.CityFuel
)

// Start builds the stack for t.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := sqlstore.Open(ctx, sqlstoretest.NewDatabase(t), 16)
	if err != nil {
		t.Fatalf("partnerstest: open: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlstore.Migrate(ctx, pool, log); err != nil {
		t.Fatalf("partnerstest: migrate: %v", err)
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{AcmeAir, BeanCoffee, CityFuel} {
		if _, err := store.EnsurePartner(ctx, settlement.Partner{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	ledger, err := settlement.New(settlement.Config{Store: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Store: store, Metrics: prometheus.NewRegistry()}
	if e.CA, err = devca.New("partnerstest CA", time.Now(), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	e.build(t, ledger, opts, log)
	e.serve(t, ledger, log)
	e.loops(t, opts)
	return e
}

func (e *Env) build(t testing.TB, ledger *settlement.Ledger, opts Options, log *slog.Logger) {
	t.Helper()
	ours, err := e.CA.IssueClient("operator", "gateway-client", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.Registry, err = partners.New(partners.Config{Endpoints: e.Store, RootCAs: e.CA.Pool(), Logger: log, Registerer: e.Metrics,
		ClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &ours, nil },
		Breaker:           opts.Breaker, Retry: opts.Retry, RefreshInterval: 50 * time.Millisecond, Credentials: opts.Credentials})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Registry.Close() })
	dc := opts.Dispatcher
	dc.Store, dc.Partners, dc.Logger = e.Store, e.Registry, log
	if e.Dispatcher, err = partners.NewDispatcher(dc); err != nil {
		t.Fatal(err)
	}
	xc := opts.Exchanger
	xc.Ledger, xc.Store, xc.Partners, xc.Logger = ledger, e.Store, e.Registry, log
	if e.Exchanger, err = partners.NewExchanger(xc); err != nil {
		t.Fatal(err)
	}
}

// serve starts the gateway with ExchangeService and AdminService and the operator clients.
func (e *Env) serve(t testing.TB, ledger *settlement.Ledger, log *slog.Logger) {
	t.Helper()
	cert, err := e.CA.IssueServer([]string{gatewaytest.ServerName}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Config{Ledger: ledger, Partners: e.Store, Admin: e.Store, Outbound: e.Store,
		Exchanges: e.Exchanger, Breakers: e.breakers, Certs: &gatewaytest.StaticCerts{Cert: &cert, Pool: e.CA.Pool()},
		PartnerCacheTTL: gatewaytest.PartnerCacheTTL, Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	conn := e.Conn(t, tlsconfig.RoleOperator, "ops")
	e.Exchange, e.Admin = coalitionv1.NewExchangeServiceClient(conn), coalitionv1.NewAdminServiceClient(conn)
}

func (e *Env) breakers() []gateway.PartnerBreaker {
	var out []gateway.PartnerBreaker
	for _, b := range e.Registry.Breakers() {
		out = append(out, gateway.PartnerBreaker{PartnerID: b.PartnerID, Operation: b.Operation, State: b.State,
			ConsecutiveFailures: b.ConsecutiveFailures, InFlight: b.InFlight})
	}
	return out
}

// loops runs the dispatcher and the resolver until cleanup, unless opts turns them off.
func (e *Env) loops(t testing.TB, opts Options) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	n := 0
	if !opts.NoDispatcher {
		n++
		go func() { _ = e.Dispatcher.Run(ctx); done <- struct{}{} }()
	}
	if !opts.NoResolver {
		n++
		go func() { _ = e.Exchanger.RunResolver(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range n {
			<-done
		}
	})
}

// Conn returns a connection to the gateway as spiffe://coalition.local/<role>/<name>.
func (e *Env) Conn(t testing.TB, role tlsconfig.Role, name string) *grpc.ClientConn {
	t.Helper()
	cert, err := e.CA.IssueClient(string(role), name, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+e.addr, grpc.WithTransportCredentials(
		credentials.NewTLS(tlsconfig.Client(cert, e.CA.Pool(), gatewaytest.ServerName))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Points returns a PointsService client for partner.
func (e *Env) Points(t testing.TB, partner string) coalitionv1.PointsServiceClient {
	return coalitionv1.NewPointsServiceClient(e.Conn(t, tlsconfig.RolePartner, partner))
}

// StartSim serves a partner-sim for partnerID over mTLS (certificates from e.CA) and
// configures the partner's endpoint to it with ep's other fields.
func (e *Env) StartSim(t testing.TB, ep settlement.PartnerEndpoint, cfg partnersim.Config) *partnersim.Sim {
	t.Helper()
	cfg.PartnerID, cfg.Logger = ep.PartnerID, slog.New(slog.DiscardHandler)
	sim, err := partnersim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := partnersim.ServerTLS(e.CA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := sim.NewServer(tlsCfg)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	ep.Endpoint = lis.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Store.SetPartnerEndpoint(ctx, ep.WithDefaults(), time.Now()); err != nil {
		t.Fatalf("partnerstest: configure %s: %v", ep.PartnerID, err)
	}
	return sim
}
