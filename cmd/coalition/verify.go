package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

func newVerifyCmd(e *env) *cobra.Command {
	var url string
	var maxShown int
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every ledger invariant (DESIGN.md §4) on one consistent snapshot of a database",
		Long: `verify runs the ledger's invariant checks in one SERIALIZABLE transaction and prints each
check with its result. It exits non-zero when any check finds a violation. It reads the whole
ledger: run it against a replica or off-peak in production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return errors.New("--database-url (or COALITION_DATABASE_URL) is required")
			}
			rep, err := verifyDatabase(cmd.Context(), url)
			if err != nil {
				return err
			}
			rep.print(e.stdout, maxShown)
			if n := len(rep.violations); n > 0 {
				return fmt.Errorf("%d invariant violations", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "database-url", "", "PostgreSQL/CockroachDB connection URL")
	cmd.Flags().IntVar(&maxShown, "show", 20, "violations to print per check")
	return cmd
}

// verifyReport is the outcome of one Store.Verify.
type verifyReport struct {
	checks     []string
	violations []sqlstore.Violation
}

func (r verifyReport) passed() int {
	failed := map[string]bool{}
	for _, v := range r.violations {
		failed[v.Check] = true
	}
	return len(r.checks) - len(failed)
}

func (r verifyReport) print(w io.Writer, maxShown int) {
	by := map[string][]sqlstore.Violation{}
	for _, v := range r.violations {
		by[v.Check] = append(by[v.Check], v)
	}
	for _, c := range r.checks {
		vs := by[c]
		if len(vs) == 0 {
			fmt.Fprintf(w, "ok    %s\n", c)
			continue
		}
		fmt.Fprintf(w, "FAIL  %s: %d violations\n", c, len(vs))
		for i, v := range vs {
			if i == maxShown {
				fmt.Fprintf(w, "        ... %d more\n", len(vs)-i)
				break
			}
			fmt.Fprintf(w, "        %s\n", v.Detail)
		}
	}
	fmt.Fprintf(w, "%d of %d checks passed, %d violations\n", r.passed(), len(r.checks), len(r.violations))
}

// verifyDatabase runs Store.Verify against the database at url.
func verifyDatabase(ctx context.Context, url string) (verifyReport, error) {
	pool, err := sqlstore.Open(ctx, url, 2)
	if err != nil {
		return verifyReport{}, err
	}
	defer pool.Close()
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return verifyReport{}, err
	}
	vs, err := store.Verify(ctx)
	if err != nil {
		return verifyReport{}, fmt.Errorf("verify: %w", err)
	}
	return verifyReport{checks: sqlstore.InvariantChecks(), violations: vs}, nil
}
