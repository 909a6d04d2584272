package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

type reportOptions struct {
	clientOptions
	run     int64
	partner string
	format  string
	out     string
}

func newReportCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "report", Short: "Settlement reports as CSV or JSON (finance)"}
	cmd.AddCommand(
		newReportKindCmd(e, "statement", "One partner's statement of a run", coalitionv1.ReportKind_REPORT_KIND_STATEMENT, true),
		newReportKindCmd(e, "positions", "Net positions, payment instructions, gross vs netted and the saving", coalitionv1.ReportKind_REPORT_KIND_POSITIONS, false),
		newReportKindCmd(e, "matrix", "The bilateral matrix M[issuer][redeemer] of a run", coalitionv1.ReportKind_REPORT_KIND_MATRIX, false),
		newReportKindCmd(e, "recon", "Reconciliation exceptions and matches of a partner", coalitionv1.ReportKind_REPORT_KIND_RECONCILIATION, true),
		newReportVerifyCmd(e),
		newReportLiabilityCmd(e),
		newReportRunsCmd(e),
	)
	return cmd
}

// runsColumns is the header of `coalition report runs`.
var runsColumns = []string{"run", "period", "previous_cutoff", "cutoff", "model", "status", "currency", "transactions",
	"late_transactions", "operator_revenue", "gross_total", "netted_total", "created_at"}

// newReportRunsCmd is `coalition report runs`: the latest runs, newest first.
func newReportRunsCmd(e *env) *cobra.Command {
	var o clientOptions
	var format string
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "The latest settlement runs (up to 100), newest first: period, model, status and totals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "csv" && format != "json" {
				return fmt.Errorf("--format %q: want csv or json", format)
			}
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewSettlementServiceClient(conn).ListRuns(cmd.Context(), &coalitionv1.ListRunsRequest{})
				if err != nil {
					return err
				}
				rows := make([]map[string]string, 0, len(resp.GetRuns()))
				for _, r := range resp.GetRuns() {
					rows = append(rows, map[string]string{
						"run": strconv.FormatInt(r.GetId(), 10), "period": strconv.FormatInt(r.GetPeriod(), 10),
						"previous_cutoff": r.GetPreviousCutoff().AsTime().UTC().Format(time.RFC3339),
						"cutoff":          r.GetCutoff().AsTime().UTC().Format(time.RFC3339),
						"model":           modelName(r.GetModel()), "status": enumWord(r.GetStatus(), "RUN_STATUS_"),
						"currency": r.GetCurrency(), "transactions": strconv.FormatInt(r.GetTransactions(), 10),
						"late_transactions": strconv.FormatInt(r.GetLateTransactions(), 10), "operator_revenue": r.GetOperatorRevenue(),
						"gross_total": r.GetGrossTotal(), "netted_total": r.GetNettedTotal(),
						"created_at": r.GetCreatedAt().AsTime().UTC().Format(time.RFC3339Nano),
					})
				}
				if format == "json" {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rows)
				}
				w := csv.NewWriter(e.stdout)
				_ = w.Write(runsColumns)
				for _, row := range rows {
					line := make([]string, len(runsColumns))
					for i, c := range runsColumns {
						line[i] = row[c]
					}
					_ = w.Write(line)
				}
				w.Flush()
				return w.Error()
			})
		},
	}
	o.register(cmd, "finance")
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json")
	return cmd
}

func (o *reportOptions) register(cmd *cobra.Command, needsPartner bool) {
	o.clientOptions.register(cmd, "finance")
	f := cmd.Flags()
	f.Int64Var(&o.run, "run", 0, "run id (required)")
	f.StringVar(&o.format, "format", "csv", "csv or json")
	f.StringVar(&o.out, "out", "", "write to this file instead of standard output")
	_ = cmd.MarkFlagRequired("run")
	if needsPartner {
		f.StringVar(&o.partner, "partner", "", "partner id (required)")
		_ = cmd.MarkFlagRequired("partner")
	}
}

func newReportKindCmd(e *env, name, short string, kind coalitionv1.ReportKind, needsPartner bool) *cobra.Command {
	var o reportOptions
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format := coalitionv1.ReportFormat_REPORT_FORMAT_CSV
			switch o.format {
			case "csv":
			case "json":
				format = coalitionv1.ReportFormat_REPORT_FORMAT_JSON
			default:
				return fmt.Errorf("--format %q: want csv or json", o.format)
			}
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			resp, err := coalitionv1.NewSettlementServiceClient(conn).ExportReport(ctx, &coalitionv1.ExportReportRequest{
				RunId: o.run, Kind: kind, PartnerId: o.partner, Format: format})
			if err != nil {
				return err
			}
			if resp.GetSignature() != "" {
				fmt.Fprintf(e.stderr, "signature: %s\n", resp.GetSignature())
			}
			if o.out == "" {
				_, err = e.stdout.Write(resp.GetContent())
				return err
			}
			return os.WriteFile(o.out, resp.GetContent(), 0o644)
		},
	}
	o.register(cmd, needsPartner)
	return cmd
}

func newReportVerifyCmd(e *env) *cobra.Command {
	var o reportOptions
	cmd := &cobra.Command{
		Use:   "verify --run N --partner P FILE",
		Short: "Check a statement file (CSV as exported) against the run's signature",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			content, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			resp, err := coalitionv1.NewSettlementServiceClient(conn).VerifyStatement(cmd.Context(), &coalitionv1.VerifyStatementRequest{
				RunId: o.run, PartnerId: o.partner, Content: content})
			if err != nil {
				return err
			}
			if !resp.GetValid() {
				return errors.New(resp.GetReason())
			}
			_, err = fmt.Fprintf(e.stdout, "%s: valid statement of %s for run %d (signature %s)\n", args[0], o.partner, o.run, resp.GetSignature())
			return err
		},
	}
	o.register(cmd, true)
	return cmd
}

func newReportLiabilityCmd(e *env) *cobra.Command {
	var o clientOptions
	var at, format, out string
	cmd := &cobra.Command{
		Use:   "liability [--at RFC3339]",
		Short: "Outstanding points by issuer and age bucket, expiring soon, and their value at issue prices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &coalitionv1.ExportReportRequest{Kind: coalitionv1.ReportKind_REPORT_KIND_LIABILITY, Format: coalitionv1.ReportFormat_REPORT_FORMAT_CSV}
			switch format {
			case "csv":
			case "json":
				req.Format = coalitionv1.ReportFormat_REPORT_FORMAT_JSON
			default:
				return fmt.Errorf("--format %q: want csv or json", format)
			}
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("--at %q is not an RFC 3339 time: %w", at, err)
				}
				req.At = timestamppb.New(t)
			}
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewSettlementServiceClient(conn).ExportReport(cmd.Context(), req)
				if err != nil {
					return err
				}
				if out == "" {
					_, err = e.stdout.Write(resp.GetContent())
					return err
				}
				return os.WriteFile(out, resp.GetContent(), 0o644)
			})
		},
	}
	o.register(cmd, "finance")
	cmd.Flags().StringVar(&at, "at", "", "when to take the report (default now)")
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json")
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of standard output")
	return cmd
}
