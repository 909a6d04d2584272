package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

func newSettleCmd(e *env) *cobra.Command {
	var o clientOptions
	var cutoff, key string
	cmd := &cobra.Command{
		Use:   "settle --cutoff RFC3339 [--key K]",
		Short: "Close and settle the period ending at --cutoff (finance)",
		Long: `settle asks the gateway to close the period (previous cutoff, cutoff] and settle it.
A cutoff equal to a closed period's cutoff re-runs that period into a new run with identical
statements. The run's checks are printed; a run that fails a check is stored as failed.
With --key, the command is safe to repeat (after a lost connection, say): a key already used
prints the run it made instead of running again.`,
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
			resp, err := coalitionv1.NewSettlementServiceClient(conn).RunSettlement(ctx, &coalitionv1.RunSettlementRequest{Cutoff: timestamppb.New(at), IdempotencyKey: key})
			if err != nil {
				return err
			}
			if resp.GetReplayed() {
				fmt.Fprintf(e.stdout, "replayed: key %q made run %d earlier; nothing was run again\n", key, resp.GetRun().GetId())
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
	cmd.Flags().StringVar(&key, "key", "", "idempotency key: the same key runs once and then returns that run")
	_ = cmd.MarkFlagRequired("cutoff")
	cmd.AddCommand(newSettleModelCmd(e))
	return cmd
}

// settlementModels are the models `coalition settle model` accepts.
var settlementModels = map[string]coalitionv1.SettlementModel{
	"hub":       coalitionv1.SettlementModel_SETTLEMENT_MODEL_HUB,
	"bilateral": coalitionv1.SettlementModel_SETTLEMENT_MODEL_BILATERAL,
}

// newSettleModelCmd is `coalition settle model [hub|bilateral]`.
func newSettleModelCmd(e *env) *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "model [hub|bilateral]",
		Short: "Show or choose the settlement model of periods closed from now on (finance)",
		Long: `model prints the coalition's settlement model, or sets it. hub (the default): the operator is
the central counterparty, issuers pay for points issued and redeemers are reimbursed. bilateral:
each redeemed point is owed by its issuer to the redeemer at the redeemer's rate. The model
applies to periods closed from now on; a closed period keeps the model it was closed under, so
its re-runs stay identical.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var want coalitionv1.SettlementModel
			if len(args) == 1 {
				m, ok := settlementModels[args[0]]
				if !ok {
					return fmt.Errorf("settlement model %q: want hub or bilateral", args[0])
				}
				want = m
			}
			return o.with(func(conn *grpc.ClientConn) error {
				c := coalitionv1.NewSettlementServiceClient(conn)
				if len(args) == 0 {
					resp, err := c.GetSettlementModel(cmd.Context(), &coalitionv1.GetSettlementModelRequest{})
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "settlement model: %s\n", modelName(resp.GetModel()))
					return nil
				}
				resp, err := c.SetSettlementModel(cmd.Context(), &coalitionv1.SetSettlementModelRequest{Model: want})
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "settlement model: %s (was %s); periods closed from now on are settled under it, closed periods keep theirs\n",
					modelName(resp.GetModel()), modelName(resp.GetPrevious()))
				return nil
			})
		},
	}
	o.register(cmd, "finance")
	return cmd
}

func modelName(m coalitionv1.SettlementModel) string { return enumWord(m, "SETTLEMENT_MODEL_") }

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
