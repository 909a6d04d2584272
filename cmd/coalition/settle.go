package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

func newSettleCmd(e *env) *cobra.Command {
	var o clientOptions
	var cutoff string
	cmd := &cobra.Command{
		Use:   "settle --cutoff RFC3339",
		Short: "Close and settle the period ending at --cutoff (finance)",
		Long: `settle asks the gateway to close the period (previous cutoff, cutoff] and settle it.
A cutoff equal to a closed period's cutoff re-runs that period into a new run with identical
statements. The run's checks are printed; a run that fails a check is stored as failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			at, err := time.Parse(time.RFC3339, cutoff)
			if err != nil {
				return fmt.Errorf("--cutoff %q is not an RFC 3339 time (like 2026-11-01T00:00:00Z): %w", cutoff, err)
			}
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			fmt.Fprintf(e.stderr, "settling (…, %s] at %s ...\n", at.UTC().Format(time.RFC3339), o.addr)
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Minute)
			defer cancel()
			resp, err := coalitionv1.NewSettlementServiceClient(conn).RunSettlement(ctx, &coalitionv1.RunSettlementRequest{Cutoff: timestamppb.New(at)})
			if err != nil {
				return err
			}
			printRun(e.stdout, resp.GetRun())
			if resp.GetRun().GetStatus() != coalitionv1.RunStatus_RUN_STATUS_PUBLISHED {
				return fmt.Errorf("run %d failed its checks; nothing was published", resp.GetRun().GetId())
			}
			return nil
		},
	}
	o.register(cmd, "finance")
	cmd.Flags().StringVar(&cutoff, "cutoff", "", "end of the period, RFC 3339 (required)")
	_ = cmd.MarkFlagRequired("cutoff")
	return cmd
}

func printRun(w io.Writer, r *coalitionv1.Run) {
	fmt.Fprintf(w, "run %d: period %d (%s, %s], model %s, %s\n", r.GetId(), r.GetPeriod(),
		r.GetPreviousCutoff().AsTime().Format(time.RFC3339), r.GetCutoff().AsTime().Format(time.RFC3339),
		r.GetModel(), r.GetStatus())
	fmt.Fprintf(w, "  transactions %d (late %d); operator revenue %s %s; gross %s, netted %s\n",
		r.GetTransactions(), r.GetLateTransactions(), r.GetOperatorRevenue(), r.GetCurrency(), r.GetGrossTotal(), r.GetNettedTotal())
	for _, c := range r.GetChecks() {
		mark := "ok  "
		if !c.GetPassed() {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, c.GetName(), c.GetDetail())
	}
}
