package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// DefaultTrustDomain is the SPIFFE trust domain of caller identities.
const DefaultTrustDomain = "coalition.local"

// Config configures a Server.
type Config struct {
	Ledger   Ledger               // required
	Partners PartnerDirectory     // required
	Certs    tlsconfig.CertSource // required: server certificate and client CA pool
	// Admin backs AdminService; nil leaves the service unregistered.
	Admin Registry
	// Settlements backs SettlementService; nil leaves the service unregistered.
	Settlements Settlements
	// Exchanges backs ExchangeService; nil leaves the service unregistered.
	Exchanges Exchanges
	// Outbound backs AdminService's partner endpoint and outbox RPCs; Breakers lists this
	// replica's partner breakers. Nil leaves those RPCs UNIMPLEMENTED.
	Outbound Outbound
	Breakers func() []PartnerBreaker
	// Signer signs published statements; nil leaves them unsigned.
	Signer settlement.StatementSigner
	// SettlementSafetyLag is how far in the past a cutoff must be; default 5 minutes.
	SettlementSafetyLag time.Duration
	// Holder names this replica in the settlement lease; default the host name.
	Holder string
	// Ready reports whether dependencies (the database) are usable; nil means always ready.
	Ready func(ctx context.Context) error
	// TrustDomain of caller SPIFFE ids; default DefaultTrustDomain.
	TrustDomain string
	// Reflection registers gRPC server reflection (for grpcurl); off by default in production.
	Reflection bool
	// PartnerCacheTTL bounds how long a partner's status is cached; default 1s.
	PartnerCacheTTL time.Duration
	// RateLimit bounds each partner's calls on this replica; the zero value sets no limit.
	RateLimit RateLimit
	Logger    *slog.Logger         // default slog.Default()
	Registry  *prometheus.Registry // default a new registry with Go and process collectors
	// TracerProvider traces every RPC (tracing.go); default none.
	TracerProvider trace.TracerProvider
}

// Server is the gRPC gateway plus its HTTP health and metrics endpoints.
type Server struct {
	grpc     *grpc.Server
	health   *health.Server
	registry *prometheus.Registry
	ready    func(ctx context.Context) error
	log      *slog.Logger
	draining atomic.Bool
	// Metrics are the gateway's collectors, exposed for wiring (transaction retries).
	Metrics *Metrics
}

// New builds the server: mTLS credentials, the interceptor chain and the services.
func New(cfg Config) (*Server, error) {
	if cfg.Ledger == nil || cfg.Partners == nil || cfg.Certs == nil {
		return nil, errors.New("gateway: Config.Ledger, Partners and Certs are required")
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = DefaultTrustDomain
	}
	if cfg.PartnerCacheTTL <= 0 {
		cfg.PartnerCacheTTL = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.Ready == nil {
		cfg.Ready = func(context.Context) error { return nil }
	}
	if err := cfg.RateLimit.Validate(); err != nil {
		return nil, err
	}
	metrics, err := NewMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	metrics.watchServerCertificate(cfg.Certs)
	ic := &interceptors{
		log: cfg.Logger, metrics: metrics, trustDomain: cfg.TrustDomain,
		partners: &partnerCache{dir: cfg.Partners, ttl: cfg.PartnerCacheTTL, now: time.Now, entries: map[string]cachedPartner{}},
		limiter:  newPartnerLimiter(cfg.RateLimit, time.Now),
	}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsconfig.Server(cfg.Certs))),
		grpc.StatsHandler(statsHandler(cfg.TracerProvider)),
		grpc.ChainUnaryInterceptor(ic.observeUnary, ic.recoverUnary, ic.authUnary),
		grpc.ChainStreamInterceptor(ic.observeStream, ic.recoverStream, ic.authStream),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(1<<20),
		// Calls run on a pool of goroutines whose stacks have grown already, instead of a new
		// goroutine each (whose stack grows again on every call: 6% of the gateway's CPU).
		grpc.NumStreamWorkers(uint32(max(64, 8*runtime.GOMAXPROCS(0)))),
	)
	hs := health.NewServer()
	coalitionv1.RegisterPointsServiceServer(gs, &pointsService{ledger: cfg.Ledger})
	if cfg.Admin != nil {
		coalitionv1.RegisterAdminServiceServer(gs, &adminService{registry: cfg.Admin, now: time.Now, changed: ic.partners.forget,
			outbound: outboundAdmin{store: cfg.Outbound, breakers: cfg.Breakers}})
	}
	if cfg.Exchanges != nil {
		coalitionv1.RegisterExchangeServiceServer(gs, &exchangeService{exchanges: cfg.Exchanges})
	}
	if cfg.Settlements != nil {
		if cfg.SettlementSafetyLag <= 0 {
			cfg.SettlementSafetyLag = 5 * time.Minute
		}
		if cfg.Holder == "" {
			cfg.Holder, _ = os.Hostname()
		}
		coalitionv1.RegisterSettlementServiceServer(gs, &settlementService{store: cfg.Settlements, signer: cfg.Signer,
			safetyLag: cfg.SettlementSafetyLag, holder: cfg.Holder, now: time.Now, log: cfg.Logger, metrics: metrics,
			ledger: cfg.Ledger, partners: cfg.Partners})
	}
	healthpb.RegisterHealthServer(gs, hs)
	if cfg.Reflection {
		reflection.Register(gs)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(coalitionv1.PointsService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return &Server{grpc: gs, health: hs, registry: cfg.Registry, ready: cfg.Ready, log: cfg.Logger, Metrics: metrics}, nil
}

// Serve accepts gRPC connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown reports NOT_SERVING, lets in-flight RPCs finish until ctx ends, then stops hard.
func (s *Server) Shutdown(ctx context.Context) {
	s.draining.Store(true)
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("graceful stop timed out; closing remaining connections")
		s.grpc.Stop()
		<-done
	}
}

// HTTPHandler serves /healthz (the process is up), /readyz (dependencies answer within 2s)
// and /metrics (Prometheus).
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	return mux
}

// Register adds a collector to the server's /metrics registry (wiring: outbox, Vault).
func (s *Server) Register(c prometheus.Collector) error { return s.registry.Register(c) }
