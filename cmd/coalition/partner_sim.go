package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/partners/partnersim"
)

// newPartnerSimCmd is `coalition partner-sim`: a simulated partner endpoint for tests and demos.
func newPartnerSimCmd(e *env) *cobra.Command {
	var cfg partnersim.Config
	var listen, certsDir string
	cmd := &cobra.Command{
		Use:   "partner-sim --partner ID --listen ADDR [--fail-rate F] [--latency D] [--hang-rate F]",
		Short: "Serve a simulated partner program (PartnerProgramService over mTLS, dev CA)",
		Long: `partner-sim serves coalition.partner.v1.PartnerProgramService on ADDR with a server certificate
it issues from the dev CA in --certs-dir (for localhost and 127.0.0.1), requiring client
certificates from that CA. It deduplicates credits by idempotency key and events by id, logs
what it applies, and can fail (UNAVAILABLE), slow down, or apply and then hang on demand.
Members whose id starts with NOACCT are refused (FAILED_PRECONDITION).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.PartnerID == "" || listen == "" {
				return errors.New("--partner and --listen are required")
			}
			cfg.Logger = newLogger(e.stderr, "text")
			sim, err := partnersim.New(cfg)
			if err != nil {
				return err
			}
			tlsCfg, err := simTLS(certsDir)
			if err != nil {
				return err
			}
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen %s: %w", listen, err)
			}
			srv := sim.NewServer(tlsCfg)
			go func() {
				<-cmd.Context().Done()
				srv.GracefulStop()
			}()
			fmt.Fprintf(e.stdout, "partner-sim %s listening on %s\n", cfg.PartnerID, lis.Addr())
			err = srv.Serve(lis)
			fmt.Fprintln(e.stdout, sim.Summary())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.PartnerID, "partner", "", "partner id it simulates")
	f.StringVar(&listen, "listen", "", "address to serve on, e.g. 127.0.0.1:9101")
	f.StringVar(&certsDir, "certs-dir", filepath.Join(os.TempDir(), "coalition-dev", "certs"), "dev CA directory (ca.crt, ca.key)")
	f.Float64Var(&cfg.FailRate, "fail-rate", 0, "share of calls answered UNAVAILABLE without effect (0-1)")
	f.Float64Var(&cfg.HangRate, "hang-rate", 0, "share of calls applied and then never answered (0-1)")
	f.DurationVar(&cfg.Latency, "latency", 0, "delay before every answer")
	return cmd
}

// simTLS issues the sim's server certificate from the dev CA in dir and requires clients
// with certificates from the same CA.
func simTLS(dir string) (*tls.Config, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("read dev ca: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, fmt.Errorf("read dev ca key: %w", err)
	}
	ca, err := devca.Load(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return partnersim.ServerTLS(ca, time.Now())
}
