package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// newOutboxCmd is `coalition outbox list|replay|breakers`: what ops see of partner calls.
func newOutboxCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Partner event outbox: list events, replay dead ones (operator or finance), show breakers (operator)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newOutboxListCmd(e), newOutboxReplayCmd(e), newOutboxBreakersCmd(e))
	return cmd
}

func newOutboxListCmd(e *env) *cobra.Command {
	var o clientOptions
	var req coalitionv1.ListOutboxEventsRequest
	cmd := &cobra.Command{
		Use:   "list [--partner P] [--state dead|pending|delivered]",
		Short: "List outbox events, oldest first (CSV; dead ones by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			resp, err := coalitionv1.NewAdminServiceClient(conn).ListOutboxEvents(cmd.Context(), &req)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "id,partner,type,member,points,transaction,state,attempts,created_at,last_error")
			for _, ev := range resp.GetEvents() {
				fmt.Fprintf(e.stdout, "%s,%s,%s,%s,%d,%s,%s,%d,%s,%q\n", ev.GetId(), ev.GetPartnerId(), ev.GetType(), ev.GetMemberId(),
					ev.GetPoints(), ev.GetTransactionId(), ev.GetState(), ev.GetAttempts(),
					ev.GetCreatedAt().AsTime().Format(time.RFC3339Nano), ev.GetLastError())
			}
			return nil
		},
	}
	o.register(cmd, "operator")
	cmd.Flags().StringVar(&req.PartnerId, "partner", "", "one partner (default all)")
	cmd.Flags().StringVar(&req.State, "state", "dead", "pending, delivered or dead")
	cmd.Flags().Int32Var(&req.Limit, "limit", 100, "at most this many (up to 1000)")
	return cmd
}

func newOutboxReplayCmd(e *env) *cobra.Command {
	var o clientOptions
	var req coalitionv1.ReplayOutboxEventsRequest
	cmd := &cobra.Command{
		Use:   "replay --partner P [--id ID ...]",
		Short: "Put a partner's dead events (all, or the given ids) back in its queue",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			resp, err := coalitionv1.NewAdminServiceClient(conn).ReplayOutboxEvents(cmd.Context(), &req)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "replayed %d events of %s\n", resp.GetReplayed(), req.GetPartnerId())
			return err
		},
	}
	o.register(cmd, "operator")
	cmd.Flags().StringVar(&req.PartnerId, "partner", "", "partner id (required)")
	cmd.Flags().StringSliceVar(&req.Ids, "id", nil, "only these event ids")
	_ = cmd.MarkFlagRequired("partner")
	return cmd
}

func newOutboxBreakersCmd(e *env) *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "breakers",
		Short: "Show the answering gateway's partner circuit breakers (CSV)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			resp, err := coalitionv1.NewAdminServiceClient(conn).ListPartnerBreakers(cmd.Context(), &coalitionv1.ListPartnerBreakersRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "partner,operation,state,consecutive_failures,in_flight")
			for _, b := range resp.GetBreakers() {
				fmt.Fprintf(e.stdout, "%s,%s,%s,%d,%d\n", b.GetPartnerId(), b.GetOperation(), b.GetState(), b.GetConsecutiveFailures(), b.GetInFlight())
			}
			return nil
		},
	}
	o.register(cmd, "operator")
	return cmd
}
