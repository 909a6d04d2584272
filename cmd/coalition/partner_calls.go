package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	"github.com/coalitionexchange/coalition/partners"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// outboundOptions configure calls to partner systems: our client certificate, breakers, the
// outbox dispatcher and the exchange resolver (issue 4).
type outboundOptions struct {
	clientCert, clientKey, partnerCA string
	// vaultCert, set by serve with Vault (not a flag), presents the gateway's Vault certificate.
	vaultCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	vaultCAs  func() (*x509.CertPool, error)
	// credentials, set by serve with Vault (not a flag), reads partners' call credentials.
	credentials partners.CredentialSource

	breakerFailures    uint32
	breakerOpenTimeout time.Duration
	breakerProbes      uint32
	outboxPoll         time.Duration
	outboxMaxAttempts  int
	outboxBackoffMax   time.Duration
	outboxLeaseTTL     time.Duration
	resolveInterval    time.Duration
}

func (o *outboundOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.clientCert, "partner-client-cert", "", "our client certificate for calls to partners (PEM; without Vault)")
	f.StringVar(&o.clientKey, "partner-client-key", "", "its private key (PEM)")
	f.StringVar(&o.partnerCA, "partner-ca", "", "CA bundle that verifies partners' server certificates (PEM; default with Vault: the PKI chain)")
	f.Uint32Var(&o.breakerFailures, "partner-breaker-failures", 5, "consecutive failures that open a partner's breaker")
	f.DurationVar(&o.breakerOpenTimeout, "partner-breaker-open-timeout", 30*time.Second, "how long an open breaker fails fast before probing")
	f.Uint32Var(&o.breakerProbes, "partner-breaker-probes", 1, "calls allowed through a half-open breaker")
	f.DurationVar(&o.outboxPoll, "outbox-poll-interval", 500*time.Millisecond, "how often partner outbox queues are looked at")
	f.IntVar(&o.outboxMaxAttempts, "outbox-max-attempts", 20, "failed deliveries after which an event is dead")
	f.DurationVar(&o.outboxBackoffMax, "outbox-backoff-max", 5*time.Minute, "longest wait between deliveries of a failing event")
	f.DurationVar(&o.outboxLeaseTTL, "outbox-lease-ttl", 30*time.Second, "a replica's lease on a partner's queue; a dead replica's lease lapses after it")
	f.DurationVar(&o.resolveInterval, "exchange-resolve-interval", time.Second, "how often PENDING exchanges are retried when due")
}

// useDevCerts points partner calls at the dev CA's gateway-client identity.
func (o *outboundOptions) useDevCerts(certDir string) {
	o.clientCert, o.clientKey = filepath.Join(certDir, "gateway-client.crt"), filepath.Join(certDir, "gateway-client.key")
	o.partnerCA = filepath.Join(certDir, "ca.crt")
}

// useVault presents the gateway's Vault certificate to partners (rt nil: file mode).
func (o *outboundOptions) useVault(rt *vaultRuntime) {
	if rt == nil {
		return
	}
	o.vaultCert, o.vaultCAs = rt.certs.GetClientCertificate, rt.certs.ClientCAs
	if rt.kv != nil {
		o.credentials = kvCredentials(rt.kv)
	}
}

// kvCredentials reads a partner's call credentials from its Vault KV v2 secret
// (<mount>/coalition/partners/<id>): an "api_key" field is sent as a bearer token. A partner
// without a secret gets no credentials.
func kvCredentials(kv vault.PartnerSecrets) partners.CredentialSource {
	return func(ctx context.Context, partnerID string) (map[string]string, error) {
		secret, err := kv.PartnerSecret(ctx, partnerID)
		if errors.Is(err, vault.ErrPartnerSecretNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if key := secret.Data["api_key"]; key != "" {
			return map[string]string{"authorization": "Bearer " + key}, nil
		}
		return nil, nil
	}
}

// tlsMaterial returns our client certificate function and the pool verifying partners, or
// nil when partner calls are not configured.
func (o *outboundOptions) tlsMaterial() (func(*tls.CertificateRequestInfo) (*tls.Certificate, error), *x509.CertPool, error) {
	if o.vaultCert != nil && o.partnerCA == "" {
		pool, err := o.vaultCAs()
		return o.vaultCert, pool, err
	}
	if o.clientCert == "" && o.vaultCert == nil {
		return nil, nil, nil
	}
	if o.partnerCA == "" {
		return nil, nil, errors.New("--partner-ca is required with --partner-client-cert")
	}
	certFile, keyFile := o.clientCert, o.clientKey
	src, err := tlsconfig.NewFileSource(certFile, keyFile, o.partnerCA) // reloads on rotation
	if err != nil {
		return nil, nil, err
	}
	pool, err := src.ClientCAs()
	if err != nil {
		return nil, nil, err
	}
	getCert := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return src.ServerCertificate() }
	if o.vaultCert != nil {
		getCert = o.vaultCert
	}
	return getCert, pool, nil
}

// partnerCalls is the running side of partner calls inside serve/dev.
type partnerCalls struct {
	metrics    *prometheus.Registry
	registry   *partners.Registry // nil when not configured
	dispatcher *partners.Dispatcher
	exchanger  *partners.Exchanger
	log        *slog.Logger
}

// newPartnerCalls builds the registry, dispatcher and exchanger on store and ledger, and the
// Prometheus registry the gateway serves (so coalition_partner_* sit beside its metrics).
func newPartnerCalls(o outboundOptions, store *sqlstore.Store, ledger *settlement.Ledger, log *slog.Logger) (*partnerCalls, error) {
	pc := &partnerCalls{metrics: prometheus.NewRegistry(), log: log}
	pc.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	getCert, pool, err := o.tlsMaterial()
	if err != nil || getCert == nil {
		return pc, err
	}
	pc.registry, err = partners.New(partners.Config{Endpoints: store, ClientCertificate: getCert, RootCAs: pool, Logger: log,
		Credentials: o.credentials,
		Registerer:  pc.metrics, Breaker: partners.BreakerSettings{FailureThreshold: o.breakerFailures,
			OpenTimeout: o.breakerOpenTimeout, HalfOpenProbes: o.breakerProbes}})
	if err != nil {
		return nil, err
	}
	pc.dispatcher, err = partners.NewDispatcher(partners.DispatcherConfig{Store: store, Partners: pc.registry, Logger: log,
		PollInterval: o.outboxPoll, MaxAttempts: o.outboxMaxAttempts, BackoffMax: o.outboxBackoffMax, LeaseTTL: o.outboxLeaseTTL})
	if err != nil {
		return nil, err
	}
	pc.exchanger, err = partners.NewExchanger(partners.ExchangerConfig{Ledger: ledger, Store: store, Partners: pc.registry,
		Logger: log, ResolveInterval: o.resolveInterval})
	return pc, err
}

// exchanges is the gateway's ExchangeService backend, nil when partner calls are off.
func (pc *partnerCalls) exchanges() gateway.Exchanges {
	if pc.exchanger == nil {
		return nil
	}
	return pc.exchanger
}

// breakers lists the registry's breakers for AdminService.
func (pc *partnerCalls) breakers() []gateway.PartnerBreaker {
	if pc.registry == nil {
		return nil
	}
	var out []gateway.PartnerBreaker
	for _, b := range pc.registry.Breakers() {
		out = append(out, gateway.PartnerBreaker{PartnerID: b.PartnerID, Operation: b.Operation, State: b.State,
			ConsecutiveFailures: b.ConsecutiveFailures, InFlight: b.InFlight})
	}
	return out
}

// run drives the dispatcher and the resolver until ctx ends, then closes partner connections.
func (pc *partnerCalls) run(ctx context.Context) error {
	if pc.registry == nil {
		pc.log.Info("partner calls disabled: no client certificate for partners (--partner-client-cert or Vault)")
		return nil
	}
	defer pc.registry.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pc.dispatcher.Run(gctx) })
	g.Go(func() error { return pc.exchanger.RunResolver(gctx) })
	return g.Wait()
}
