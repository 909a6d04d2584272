package partners

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	partnerv1 "github.com/coalitionexchange/coalition/proto/coalition/partner/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// EndpointSource reads partner endpoint configurations (settlement/sqlstore implements it).
type EndpointSource interface {
	// PartnerEndpoint returns a partner's configuration or settlement.ErrPartnerNotConfigured.
	PartnerEndpoint(ctx context.Context, partnerID string) (settlement.PartnerEndpoint, error)
}

// BreakerSettings configure every breaker a Registry builds. Zero values mean defaults.
type BreakerSettings struct {
	// FailureThreshold is how many consecutive failures open the breaker; default 5.
	FailureThreshold uint32
	// OpenTimeout is how long the breaker stays open before it lets probes through; default 30s.
	OpenTimeout time.Duration
	// HalfOpenProbes is how many calls may probe a half-open breaker at once; default 1.
	HalfOpenProbes uint32
	// Interval is the closed-state window after which counts reset; default 60s.
	Interval time.Duration
}

func (b BreakerSettings) withDefaults() BreakerSettings {
	if b.FailureThreshold == 0 {
		b.FailureThreshold = 5
	}
	if b.OpenTimeout <= 0 {
		b.OpenTimeout = 30 * time.Second
	}
	if b.HalfOpenProbes == 0 {
		b.HalfOpenProbes = 1
	}
	if b.Interval <= 0 {
		b.Interval = time.Minute
	}
	return b
}

// Config configures a Registry.
type Config struct {
	Endpoints EndpointSource // required
	// ClientCertificate presents our client certificate to partners (it may rotate); required.
	ClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// RootCAs verifies partners' server certificates; required.
	RootCAs *x509.CertPool
	Breaker BreakerSettings
	Retry   RetrySettings
	// RefreshInterval is how long an endpoint configuration is used before it is read again;
	// default 5s. A changed configuration gets a new client (and fresh breakers).
	RefreshInterval time.Duration
	Logger          *slog.Logger // default slog.Default()
	// Registerer receives coalition_partner_breaker_state and coalition_partner_calls_total;
	// nil leaves them unregistered.
	Registerer prometheus.Registerer
	Now        func() time.Time // default time.Now; paces refreshes (gobreaker keeps its own clock)
	// Credentials, when set, supplies per-partner call credentials (Vault KV in production).
	Credentials CredentialSource
}

// Registry builds and keeps one Client per partner from the partner registry.
type Registry struct {
	cfg    Config
	log    *slog.Logger
	state  *prometheus.GaugeVec
	calls  *prometheus.CounterVec
	mu     sync.Mutex
	byID   map[string]*cachedClient
	closed bool
}

type cachedClient struct {
	client  *Client
	checked time.Time
}

// New returns a Registry.
func New(cfg Config) (*Registry, error) {
	if cfg.Endpoints == nil || cfg.ClientCertificate == nil || cfg.RootCAs == nil {
		return nil, errors.New("partners: Config.Endpoints, ClientCertificate and RootCAs are required")
	}
	cfg.Breaker = cfg.Breaker.withDefaults()
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Registry{cfg: cfg, log: cfg.Logger, byID: map[string]*cachedClient{},
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "coalition_partner_breaker_state",
			Help: "Circuit breaker state per partner and operation: 0 closed, 1 half-open, 2 open.",
		}, []string{"partner", "operation"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coalition_partner_calls_total",
			Help: "Attempts of calls to partners by outcome class (success, rejected, failure, excluded).",
		}, []string{"partner", "operation", "class"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.state, r.calls} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Client returns the partner's client, built or rebuilt from its current configuration.
// Errors: settlement.ErrPartnerNotConfigured, or the endpoint source's error.
func (r *Registry) Client(ctx context.Context, partnerID string) (*Client, error) {
	now := r.cfg.Now()
	r.mu.Lock()
	var current *Client
	fresh := false
	if c := r.byID[partnerID]; c != nil {
		current, fresh = c.client, now.Sub(c.checked) < r.cfg.RefreshInterval
	}
	r.mu.Unlock()
	if fresh {
		return current, nil
	}
	ep, err := r.cfg.Endpoints.PartnerEndpoint(ctx, partnerID)
	if err != nil {
		if _, domain := settlement.AsError(err); !domain && current != nil {
			return current, nil // the database hiccuped: keep calling as configured
		}
		if domain := errors.Is(err, settlement.ErrPartnerNotConfigured); domain {
			r.drop(partnerID)
		}
		return nil, err
	}
	ep = ep.WithDefaults()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("partners: registry closed")
	}
	if c := r.byID[partnerID]; c != nil && sameEndpoint(c.client.endpoint, ep) {
		c.checked = now
		return c.client, nil
	}
	client, err := r.build(ep)
	if err != nil {
		return nil, err
	}
	if old := r.byID[partnerID]; old != nil {
		_ = old.client.conn.Close() // calls in flight on it fail as unknown outcomes
	}
	r.byID[partnerID] = &cachedClient{client: client, checked: now}
	return client, nil
}

func (r *Registry) drop(partnerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.byID[partnerID]; old != nil {
		_ = old.client.conn.Close()
		delete(r.byID, partnerID)
	}
}

func sameEndpoint(a, b settlement.PartnerEndpoint) bool {
	return slices.Equal(a.Events, b.Events) && a.Endpoint == b.Endpoint && a.ServerName == b.ServerName &&
		a.CallTimeout == b.CallTimeout && a.ExchangeTimeout == b.ExchangeTimeout && a.MaxInFlight == b.MaxInFlight &&
		a.RatioUnits == b.RatioUnits && a.RatioPoints == b.RatioPoints
}

// build makes a partner's connection, breakers and bulkhead. gRPC's own retries are off: the
// Client is the one retry layer.
func (r *Registry) build(ep settlement.PartnerEndpoint) (*Client, error) {
	serverName := ep.ServerName
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(ep.Endpoint)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13, GetClientCertificate: r.cfg.ClientCertificate,
		RootCAs: r.cfg.RootCAs, ServerName: serverName, NextProtos: []string{"h2"}}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)), grpc.WithDisableRetry()}
	if r.cfg.Credentials != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(&perRPCCredentials{partnerID: ep.PartnerID, source: r.cfg.Credentials, now: r.cfg.Now}))
	}
	conn, err := grpc.NewClient(ep.Endpoint, opts...)
	if err != nil {
		return nil, err
	}
	c := &Client{partnerID: ep.PartnerID, endpoint: ep, conn: conn, stub: partnerv1.NewPartnerProgramServiceClient(conn),
		inFlight: make(chan struct{}, ep.MaxInFlight), retry: r.cfg.Retry,
		observe: func(op string, class Class) { r.calls.WithLabelValues(ep.PartnerID, op, class.String()).Inc() }}
	c.breakers = map[string]*breaker{
		OpCreditExchange: gobreaker.NewTwoStepCircuitBreaker[any](r.settings(ep.PartnerID, OpCreditExchange)),
		OpDeliverEvents:  gobreaker.NewTwoStepCircuitBreaker[any](r.settings(ep.PartnerID, OpDeliverEvents)),
	}
	r.state.WithLabelValues(ep.PartnerID, OpCreditExchange).Set(0)
	r.state.WithLabelValues(ep.PartnerID, OpDeliverEvents).Set(0)
	return c, nil
}

func (r *Registry) settings(partnerID, op string) gobreaker.Settings {
	b := r.cfg.Breaker
	return gobreaker.Settings{
		Name:        partnerID + "/" + op,
		MaxRequests: b.HalfOpenProbes,
		Interval:    b.Interval,
		Timeout:     b.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.FailureThreshold },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			r.state.WithLabelValues(partnerID, op).Set(float64(to))
			r.log.Warn("partner breaker state changed", "partner", partnerID, "operation", op, "from", from.String(), "to", to.String())
		},
		IsSuccessful: func(err error) bool { c := classOf(err); return c == ClassSuccess || c == ClassRejected },
		IsExcluded:   func(err error) bool { return classOf(err) == ClassExcluded },
	}
}

// State returns the breaker state of partnerID's op; closed when no client exists yet.
func (r *Registry) State(partnerID, op string) gobreaker.State {
	r.mu.Lock()
	cached := r.byID[partnerID]
	r.mu.Unlock()
	if cached == nil {
		return gobreaker.StateClosed
	}
	return cached.client.State(op)
}

// BreakerState is one breaker as AdminService shows it.
type BreakerState struct {
	PartnerID           string
	Operation           string
	State               string
	ConsecutiveFailures uint32
	InFlight            int
}

// Breakers returns every breaker of this replica, by partner and operation.
func (r *Registry) Breakers() []BreakerState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []BreakerState
	for id, c := range r.byID {
		for op, b := range c.client.breakers {
			out = append(out, BreakerState{PartnerID: id, Operation: op, State: b.State().String(),
				ConsecutiveFailures: b.Counts().ConsecutiveFailures, InFlight: c.client.InFlight()})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].PartnerID != out[j].PartnerID {
			return out[i].PartnerID < out[j].PartnerID
		}
		return out[i].Operation < out[j].Operation
	})
	return out
}

// Close closes every partner connection.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for id, c := range r.byID {
		errs = append(errs, c.client.conn.Close())
		delete(r.byID, id)
	}
	return errors.Join(errs...)
}
