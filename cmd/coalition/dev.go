package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/localsign"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/localpg"
)

// demoPartners are registered by `coalition dev`.
var demoPartners = []settlement.Partner{
	{ID: "acme-air", Name: "Acme Air"},
	{ID: "bean-coffee", Name: "Bean Coffee"},
	{ID: "city-fuel", Name: "City Fuel"},
}

// demoTerms are the README's worked example (EUR per point, no fees): issue price,
// reimbursement rate.
var demoTerms = map[string][2]string{
	"acme-air":    {"0.0100", "0.0080"},
	"bean-coffee": {"0.0120", "0.0090"},
	"city-fuel":   {"0.0110", "0.0085"},
}

// seedDemo registers the demo partners and, when they have none, their price terms.
func seedDemo(ctx context.Context, store *sqlstore.Store) error {
	for _, p := range demoPartners {
		if _, err := store.EnsurePartner(ctx, p); err != nil {
			return fmt.Errorf("register partner %s: %w", p.ID, err)
		}
		existing, err := store.ListPriceTerms(ctx, p.ID)
		if err != nil {
			return err
		}
		if len(existing) > 0 {
			continue
		}
		t := settlement.PriceTerms{PartnerID: p.ID, Currency: "EUR"}
		rates := demoTerms[p.ID]
		if t.IssuePrice, err = settlement.ParseDecimal("issue_price", rates[0]); err != nil {
			return err
		}
		if t.ReimbursementRate, err = settlement.ParseDecimal("reimbursement_rate", rates[1]); err != nil {
			return err
		}
		if _, err := store.SetPriceTerms(ctx, t, time.Now()); err != nil {
			return fmt.Errorf("price terms of %s: %w", p.ID, err)
		}
	}
	return nil
}

// devIdentities are the client certificates `coalition dev` writes.
func devIdentities() []devca.Identity {
	ids := []devca.Identity{{Role: "finance", Name: "finance", File: "finance"}, {Role: "operator", Name: "operator", File: "operator"},
		{Role: "operator", Name: "gateway-client", File: "gateway-client"}} // our identity in calls to partners
	for _, p := range demoPartners {
		ids = append(ids, devca.Identity{Role: "partner", Name: p.ID, File: "partner-" + p.ID})
	}
	return ids
}

type devOptions struct {
	gatewayOptions
	dataDir       string
	ephemeral     bool
	tour          bool
	exitAfterTour bool
	partnerSims   bool
}

func newDevCmd(e *env) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a complete local coalition: database, dev CA, demo partners, gateway",
		Long: `dev starts a local PostgreSQL (or CockroachDB when a cockroach binary is on PATH) in
DIR/db, creates a dev CA and certificates in DIR/certs, registers the demo partners acme-air,
bean-coffee and city-fuel, and serves the gateway until SIGINT/SIGTERM. Data is kept across
restarts unless --ephemeral.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), e, o) },
	}
	o.register(cmd, "127.0.0.1:7443", "127.0.0.1:7080", true)
	// Locally a period can be settled seconds after its cutoff.
	o.safetyLag = 10 * time.Second
	cmd.Flags().Lookup("settlement-safety-lag").DefValue = o.safetyLag.String()
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", filepath.Join(os.TempDir(), "coalition-dev"), "directory for the database and certificates")
	f.BoolVar(&o.ephemeral, "ephemeral", false, "use a fresh temporary directory and delete it on exit")
	f.BoolVar(&o.tour, "tour", false, "run the scripted tour against the gateway once it is up")
	f.BoolVar(&o.exitAfterTour, "exit-after-tour", false, "with --tour: stop after the tour instead of serving on")
	f.BoolVar(&o.partnerSims, "partner-sims", false, "run a simulated program for every demo partner and register it as its endpoint")
	return cmd
}

func runDev(ctx context.Context, e *env, o devOptions) error {
	log := newLogger(e.stderr, o.logFormat)
	dir := o.dataDir
	if o.ephemeral {
		tmp, err := os.MkdirTemp("", "coalition-dev-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the database runs as an unprivileged user when we are root
		return err
	}
	fmt.Fprintf(e.stdout, "coalition dev: data in %s\n", dir)
	fmt.Fprintln(e.stdout, "  starting the local database ...")
	db, err := localpg.Start(ctx, localpg.Config{Dir: filepath.Join(dir, "db"), Durable: true, PreferCockroach: true, Logger: log})
	if err != nil {
		return fmt.Errorf("start database: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := db.Stop(sctx); err != nil {
			log.Error("stop database", "err", err)
		}
	}()
	err = serveDev(ctx, e, o, dir, db, log)
	if errors.Is(err, errTourDone) {
		return nil
	}
	return err
}

func serveDev(ctx context.Context, e *env, o devOptions, dir string, db *localpg.Server, log *slog.Logger) error {
	if err := db.CreateDatabase(ctx, "coalition"); err != nil {
		return err
	}
	pool, err := sqlstore.Open(ctx, db.URL("coalition"), o.maxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := sqlstore.Migrate(ctx, pool, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "  database %s ready (%s), %d new migrations\n", db.Engine(), db.URL("coalition"), n)
	certDir := filepath.Join(dir, "certs")
	ca, err := devca.EnsureDir(certDir, devIdentities(), time.Now())
	if err != nil {
		return fmt.Errorf("dev certificates: %w", err)
	}
	certs, err := tlsconfig.NewFileSource(filepath.Join(certDir, "gateway.crt"), filepath.Join(certDir, "gateway.key"), filepath.Join(certDir, "ca.crt"))
	if err != nil {
		return err
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: log})
	if err != nil {
		return err
	}
	if err := seedDemo(ctx, store); err != nil {
		return err
	}
	signer, err := localsign.Open(filepath.Join(dir, "statement-signing.key"))
	if err != nil {
		return fmt.Errorf("statement signing key: %w", err)
	}
	o.signer = signer
	o.outbound.useDevCerts(certDir)
	var sims demoSims
	if o.partnerSims {
		if sims, err = startDemoSims(ctx, e.stdout, ca, store, log); err != nil {
			return err
		}
	}
	return runGateway(ctx, o.gatewayOptions, pool, certs, log, func(ctx context.Context, grpcAddr, httpAddr string) error {
		printReady(e.stdout, grpcAddr, httpAddr, certDir)
		if !o.tour {
			return nil
		}
		tc := tourConfig{addr: grpcAddr, certsDir: certDir}
		if sims != nil {
			tc.credited = sims.credited
		}
		err := runTour(ctx, e.stdout, tc)
		if err != nil {
			return fmt.Errorf("tour: %w", err)
		}
		if o.exitAfterTour {
			return errTourDone
		}
		fmt.Fprintln(e.stdout, "\nThe coalition keeps running. Press Ctrl-C to stop.")
		return nil
	})
}

// errTourDone ends `dev --tour --exit-after-tour` cleanly.
var errTourDone = errors.New("tour done")

func printReady(w io.Writer, grpcAddr, httpAddr, certDir string) {
	fmt.Fprintf(w, `
coalition dev is ready
  gRPC (mTLS)  %[1]s
  HTTP         http://%[2]s/healthz  /readyz  /metrics
  certificates %[3]s  (ca.crt, partner-acme-air, partner-bean-coffee, partner-city-fuel, finance, operator)

Try it with grpcurl (go run github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3 works too):
  grpcurl -cacert %[3]s/ca.crt -cert %[3]s/partner-acme-air.crt -key %[3]s/partner-acme-air.key \
    -d '{"idempotency_key":"award-1","member_id":"M-1001","points":500,"reference":"receipt-1"}' \
    %[1]s coalition.v1.PointsService/Award
  grpcurl -cacert %[3]s/ca.crt -cert %[3]s/partner-bean-coffee.crt -key %[3]s/partner-bean-coffee.key \
    -d '{"idempotency_key":"redeem-1","member_id":"M-1001","points":200,"reference":"order-9"}' \
    %[1]s coalition.v1.PointsService/Redeem
  grpcurl -cacert %[3]s/ca.crt -cert %[3]s/partner-bean-coffee.crt -key %[3]s/partner-bean-coffee.key \
    -d '{"member_id":"M-1001"}' %[1]s coalition.v1.PointsService/GetBalance
`, grpcAddr, httpAddr, certDir)
}
