package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// gatewayOptions are the flags shared by serve and dev.
type gatewayOptions struct {
	// certsReady, set by serve when certificates come from Vault (not a flag), joins readiness.
	certsReady func(context.Context) error

	grpcAddr          string
	httpAddr          string
	trustDomain       string
	reflection        bool
	shutdownTimeout   time.Duration
	holdSweepInterval time.Duration
	partnerCacheTTL   time.Duration
	rateLimit         gateway.RateLimit
	partnerRates      map[string]string // --partner-rate-limits, parsed into rateLimit.Partners
	maxConns          int32
	groupCommit       sqlstore.GroupCommitConfig
	logFormat         string
	safetyLag         time.Duration
	settleWorkers     int
	settleDuty        float64
	rollupInterval    time.Duration
	// expiry: lot lifetime and the expiry sweeper (expiry.go).
	expiry expiryOptions
	// signer signs published statements (set by the command, not a flag); nil: unsigned.
	signer settlement.StatementSigner
	// tracerProvider traces RPCs (set by the command, not a flag); nil means no tracing.
	tracerProvider trace.TracerProvider
	// collectors are extra /metrics collectors (set by the command, not flags), e.g. Vault's.
	collectors []prometheus.Collector
	// outbound configures calls to partner systems (partner_calls.go).
	outbound outboundOptions
}

func (o *gatewayOptions) register(cmd *cobra.Command, grpcAddr, httpAddr string, reflection bool) {
	f := cmd.Flags()
	f.StringVar(&o.grpcAddr, "grpc-addr", grpcAddr, "address of the partner gRPC API (mTLS)")
	f.StringVar(&o.httpAddr, "http-addr", httpAddr, "address of /healthz, /readyz and /metrics")
	f.StringVar(&o.trustDomain, "trust-domain", gateway.DefaultTrustDomain, "SPIFFE trust domain of caller certificates")
	f.BoolVar(&o.reflection, "reflection", reflection, "serve gRPC server reflection (for grpcurl)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long in-flight calls may finish on SIGTERM")
	f.DurationVar(&o.holdSweepInterval, "hold-sweep-interval", time.Second, "how often expired holds are released")
	f.DurationVar(&o.partnerCacheTTL, "partner-cache-ttl", time.Second, "how long a partner's status is cached")
	f.IntVar(&o.rateLimit.PerSecond, "partner-rate-limit", 0,
		"calls a second each partner may make to this replica; more are refused with RESOURCE_EXHAUSTED (RATE_LIMITED) and a retry delay (0: no limit)")
	f.IntVar(&o.rateLimit.Burst, "partner-rate-burst", 0, "calls a partner may make at once, over its rate, after being idle (0: the rate)")
	f.StringToStringVar(&o.partnerRates, "partner-rate-limits", nil,
		"per-partner rate limits that replace --partner-rate-limit for those partners: ID=RATE or ID=RATE:BURST, comma-separated (e.g. acme-air=500:1000,bean-coffee=50)")
	f.Int32Var(&o.maxConns, "db-max-conns", 32, "database connection pool size")
	f.IntVar(&o.groupCommit.MaxBatch, "group-commit-max-batch", sqlstore.DefaultGroupCommitMaxBatch,
		fmt.Sprintf("most ledger commands applied in one database transaction (1 turns group commit off, at most %d)", sqlstore.MaxGroupCommitBatch))
	f.DurationVar(&o.groupCommit.Window, "group-commit-window", 0,
		"how long a batch waits for more commands while another batch runs (0: never waits; at most 1s)")
	f.IntVar(&o.groupCommit.Committers, "group-commit-committers", 0,
		"group-commit batches running at once (database connections they use); 0: 1 on PostgreSQL, 4 on CockroachDB")
	f.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	f.DurationVar(&o.safetyLag, "settlement-safety-lag", 5*time.Minute, "how far in the past a settlement cutoff must be")
	registerSettleWorkers(f, &o.settleWorkers, &o.settleDuty)
	f.DurationVar(&o.rollupInterval, "rollup-interval", defaultRollupInterval,
		"how often the ledger's epochs are sealed and summed for settlement runs (0: only when a run starts, which then sums everything since the last)")
	o.expiry.register(f)
	o.outbound.register(f)
}

// readyFunc is called once the listeners are bound, with their actual addresses.
type readyFunc func(ctx context.Context, grpcAddr, httpAddr string) error

// runGateway serves the gateway on pool until ctx ends, then drains: health NOT_SERVING,
// graceful stop bounded by shutdownTimeout, then a hard stop.
func runGateway(ctx context.Context, o gatewayOptions, pool *pgxpool.Pool, certs tlsconfig.CertSource, log *slog.Logger, onReady readyFunc) error {
	rates, err := parsePartnerRates(o.partnerRates)
	if err != nil {
		return err
	}
	o.rateLimit.Partners = rates
	if err := o.rateLimit.Validate(); err != nil {
		return fmt.Errorf("--partner-rate-limit, --partner-rate-burst, --partner-rate-limits: %w", err)
	}
	var metrics *gateway.Metrics
	gc := o.groupCommit
	gc.OnBatch = func(size int, split bool) {
		if metrics != nil {
			metrics.GroupCommitBatch.Observe(float64(size))
			if split {
				metrics.GroupCommitSplits.Inc()
			}
		}
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: log, LotLifetime: o.expiry.lotLifetime, GroupCommit: gc, SettleParallelWorkers: o.settleWorkers, SettleDutyCycle: o.settleDuty, Runner: sqlstore.RunnerConfig{
		OnRetry: func(int, error) {
			if metrics != nil {
				metrics.TxnRetries.Inc()
			}
		},
	}})
	if err != nil {
		return err
	}
	ledger, err := settlement.New(settlement.Config{Store: store, Logger: log})
	if err != nil {
		return err
	}
	calls, err := newPartnerCalls(o.outbound, store, ledger, log)
	if err != nil {
		return err
	}
	srv, err := gateway.New(gateway.Config{Registry: calls.metrics, Exchanges: calls.exchanges(), Outbound: store, Breakers: calls.breakers,
		Ledger: ledger, Partners: store, Certs: certs, Ready: ready(store.Ping, o.certsReady), Admin: store, Settlements: store, SettlementSafetyLag: o.safetyLag, Signer: o.signer,
		TrustDomain: o.trustDomain, Reflection: o.reflection, PartnerCacheTTL: o.partnerCacheTTL, RateLimit: o.rateLimit, Logger: log,
		TracerProvider: o.tracerProvider})
	if err != nil {
		return err
	}
	metrics = srv.Metrics
	for _, c := range append([]prometheus.Collector{newOutboxCollector(store)}, o.collectors...) {
		if err := srv.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	grpcLis, err := net.Listen("tcp", o.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.grpcAddr, err)
	}
	httpLis, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen %s: %w", o.httpAddr, err)
	}
	httpSrv := &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 5 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(grpcLis) })
	g.Go(func() error {
		if err := httpSrv.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { return ledger.RunHoldSweeper(gctx, o.holdSweepInterval) })
	g.Go(func() error { return runExpirySweeper(gctx, o.expiry, store, srv.Metrics, log) })
	g.Go(func() error { return runRollups(gctx, o.rollupInterval, store, log) })
	g.Go(func() error { return calls.run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "drain_timeout", o.shutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
		return httpSrv.Shutdown(sctx)
	})
	if onReady != nil {
		g.Go(func() error { return onReady(gctx, grpcLis.Addr().String(), httpLis.Addr().String()) })
	}
	return g.Wait()
}

func newServeCmd(e *env) *cobra.Command {
	var o gatewayOptions
	var url, certFile, keyFile, caFile string
	var migrate bool
	var signingKey string
	var v vaultOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway against a database with certificates from Vault PKI or files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(e.stderr, o.logFormat)
			certs, rt, err := serveCerts(cmd.Context(), e, o, v, url, certFile, keyFile, caFile, log)
			if err != nil {
				return err
			}
			if url, err = rt.databaseURL(url); err != nil {
				return err
			}
			o.certsReady = rt.readyFunc()
			if rt != nil {
				o.collectors = append(o.collectors, newVaultTokenCollector(rt.client))
			}
			o.outbound.useVault(rt)
			if o.signer, err = statementSigner(rt, signingKey); err != nil {
				return err
			}
			ctx, stopVault := rt.start(cmd.Context())
			defer stopVault(nil) // on early returns; the error of a normal end is returned below
			tp, stopTracing, err := startTracing(cmd.Context(), e.getenv, log)
			if err != nil {
				return err
			}
			defer stopTracing()
			o.tracerProvider = tp
			pool, err := openPool(cmd.Context(), url, o.maxConns, tp)
			if err != nil {
				return err
			}
			defer pool.Close()
			if migrate {
				if _, err := sqlstore.Migrate(cmd.Context(), pool, log); err != nil {
					return err
				}
			}
			return stopVault(runGateway(ctx, o, pool, certs, log, func(_ context.Context, grpcAddr, httpAddr string) error {
				log.Info("serving", "grpc", grpcAddr, "http", httpAddr)
				return nil
			}))
		},
	}
	o.register(cmd, ":7443", ":7080", false)
	f := cmd.Flags()
	f.StringVar(&url, "database-url", "", "PostgreSQL/CockroachDB connection URL")
	f.StringVar(&certFile, "tls-cert", "", "server certificate (PEM); reloaded when the file changes")
	f.StringVar(&keyFile, "tls-key", "", "server private key (PEM)")
	f.StringVar(&caFile, "tls-client-ca", "", "CA bundle that verifies client certificates (PEM)")
	f.BoolVar(&migrate, "migrate", false, "apply schema migrations before serving")
	f.StringVar(&signingKey, "statement-signing-key", "", "without Vault: ed25519 key file that signs settlement statements (created if missing)")
	v.registerServe(f)
	return cmd
}

// defaultSettleDutyCycle is --settlement-duty-cycle's default: a run's statements take at most
// a third of its time. At half (the default until the awards got faster), awards on a 2-core
// machine ran at 0.72-0.77x their rate beside back-to-back runs; at a third, 0.87x, and a run
// over 10M entries still takes 0.26x PostgreSQL's own GROUP BY (docs/BENCHMARKS.md).
const defaultSettleDutyCycle = 0.33

// registerSettleWorkers registers --settlement-parallel-workers and --settlement-duty-cycle
// (sqlstore.Config.SettleParallelWorkers, SettleDutyCycle).
func registerSettleWorkers(f *pflag.FlagSet, workers *int, duty *float64) {
	f.IntVar(workers, "settlement-parallel-workers", 0, fmt.Sprintf(
		"parallel workers PostgreSQL may give each aggregation of a settlement run (0: one backend, leaving the other cores to live traffic; %d: the database's max_parallel_workers_per_gather)",
		sqlstore.SettleParallelWorkersDatabase))
	f.Float64Var(duty, "settlement-duty-cycle", defaultSettleDutyCycle,
		"fraction of a settlement run's time its heavy statements may take; it pauses for the rest, like autovacuum's cost delay (1: full speed)")
}

// parsePartnerRates parses --partner-rate-limits: ID=RATE or ID=RATE:BURST per partner.
func parsePartnerRates(flag map[string]string) (map[string]gateway.PartnerRate, error) {
	if len(flag) == 0 {
		return nil, nil
	}
	rates := make(map[string]gateway.PartnerRate, len(flag))
	for id, v := range flag {
		rate, burst, hasBurst := strings.Cut(v, ":")
		var pr gateway.PartnerRate
		var err error
		if pr.PerSecond, err = strconv.Atoi(rate); err == nil && hasBurst {
			pr.Burst, err = strconv.Atoi(burst)
		}
		if err != nil || pr.PerSecond < 1 || pr.Burst < 0 {
			return nil, fmt.Errorf("--partner-rate-limits %s=%s: want ID=RATE or ID=RATE:BURST, RATE 1 or more calls a second, BURST 0 or more", id, v)
		}
		rates[id] = pr
	}
	return rates, nil
}
