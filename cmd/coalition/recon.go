package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// reconColumns is the header a partner's records file must have.
var reconColumns = []string{"reference", "kind", "member_id", "points", "occurred_at"}

// reconChunk bounds one stream message.
const reconChunk = 1000

func newReconCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "recon", Short: "Reconcile partners' own records against the ledger"}
	var o clientOptions
	var partner string
	var run int64
	imp := &cobra.Command{
		Use:   "import --partner P --run N FILE.csv",
		Short: "Submit a partner's records for a run's period (all lines valid, or nothing is stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			records, problems := parseRecords(f)
			if len(problems) > 0 {
				for _, p := range problems {
					fmt.Fprintf(e.stderr, "%s:%s\n", args[0], p)
				}
				return fmt.Errorf("%s: %d malformed lines; nothing was submitted", args[0], len(problems))
			}
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			stream, err := coalitionv1.NewSettlementServiceClient(conn).SubmitPartnerRecords(cmd.Context())
			if err != nil {
				return err
			}
			for i := 0; i < len(records) || i == 0; i += reconChunk {
				chunk := records[i:min(i+reconChunk, len(records))]
				if err := stream.Send(&coalitionv1.SubmitPartnerRecordsRequest{RunId: run, PartnerId: partner, Records: chunk}); err != nil {
					return err
				}
			}
			resp, err := stream.CloseAndRecv()
			if err != nil {
				return err
			}
			for _, re := range resp.GetErrors() {
				fmt.Fprintf(e.stderr, "%s:%d: %s\n", args[0], re.GetLine(), re.GetMessage())
			}
			if len(resp.GetErrors()) > 0 {
				return fmt.Errorf("%s: the gateway rejected %d lines; nothing was stored", args[0], len(resp.GetErrors()))
			}
			_, err = fmt.Fprintf(e.stdout, "stored %d records of %s for run %d; see `coalition report recon --run %d --partner %s`\n",
				resp.GetAccepted(), partner, run, run, partner)
			return err
		},
	}
	o.register(imp, "finance")
	imp.Flags().StringVar(&partner, "partner", "", "whose records (required)")
	imp.Flags().Int64Var(&run, "run", 0, "run whose period they cover (required)")
	_ = imp.MarkFlagRequired("partner")
	_ = imp.MarkFlagRequired("run")
	cmd.AddCommand(imp, newReconAdjustCmd(e))
	return cmd
}

// newReconAdjustCmd is `coalition recon adjust award|reverse`: a reconciliation exception
// settled with a new ledger item on the partner's behalf (SettlementService.PostAdjustment).
func newReconAdjustCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "adjust",
		Short: "Settle a reconciliation exception with a ledger item on a partner's behalf (finance)",
		Long: `adjust books an adjustment for a partner: "award" gives a member points the partner issued
that the ledger lacks (a record missing here, or one whose points fall short); "reverse" takes
back points of one of the partner's transactions (a record missing at the partner, or one whose
points run over). The item lands in the open period, like any late item, and its statement line
shows up in the next run. --key makes it safe to repeat: the same key books it once.`,
	}
	var o clientOptions
	var req coalitionv1.PostAdjustmentRequest
	var award coalitionv1.AwardAdjustment
	var reversal coalitionv1.ReversalAdjustment
	post := func(cmd *cobra.Command, set func()) error {
		set()
		return o.with(func(conn *grpc.ClientConn) error {
			resp, err := coalitionv1.NewSettlementServiceClient(conn).PostAdjustment(cmd.Context(), &req)
			if err != nil {
				return err
			}
			t := resp.GetTransaction()
			replayed := ""
			if resp.GetReplayed() {
				replayed = " (replayed: booked earlier with this key)"
			}
			fmt.Fprintf(e.stdout, "adjustment %s: %s of %d points for %s, member %s, reference %q%s\n",
				t.GetId(), enumWord(t.GetKind(), "TRANSACTION_KIND_"), t.GetPoints(), req.GetPartnerId(), t.GetMemberId(), t.GetReference(), replayed)
			return nil
		})
	}
	common := func(c *cobra.Command) {
		o.register(c, "finance")
		f := c.Flags()
		f.StringVar(&req.PartnerId, "partner", "", "partner the item is booked for (required)")
		f.StringVar(&req.IdempotencyKey, "key", "", "idempotency key of the adjustment (required)")
		f.StringVar(&req.Reason, "reason", "", "why (required)")
		f.Int64Var(&req.RunId, "run", 0, "the reconciliation run whose exception this settles")
		for _, name := range []string{"partner", "key", "reason"} {
			_ = c.MarkFlagRequired(name)
		}
	}
	awardCmd := &cobra.Command{
		Use:   "award --partner P --key K --reason R --member M --points N --reference REF",
		Short: "Give a member points the partner issued that the ledger lacks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return post(cmd, func() { req.Adjustment = &coalitionv1.PostAdjustmentRequest_Award{Award: &award} })
		},
	}
	common(awardCmd)
	awardCmd.Flags().StringVar(&award.MemberId, "member", "", "member (required)")
	awardCmd.Flags().Int64Var(&award.Points, "points", 0, "points (required)")
	awardCmd.Flags().StringVar(&award.Reference, "reference", "", "the partner's reference of its record (required)")
	for _, name := range []string{"member", "points", "reference"} {
		_ = awardCmd.MarkFlagRequired(name)
	}
	reverseCmd := &cobra.Command{
		Use:   "reverse --partner P --key K --reason R (--transaction ID | --reference REF --member M) [--points N]",
		Short: "Take back points of one of the partner's transactions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return post(cmd, func() { req.Adjustment = &coalitionv1.PostAdjustmentRequest_Reversal{Reversal: &reversal} })
		},
	}
	common(reverseCmd)
	reverseCmd.Flags().StringVar(&reversal.TransactionId, "transaction", "", "the transaction's id")
	reverseCmd.Flags().StringVar(&reversal.Reference, "reference", "", "or its reference (with --member)")
	reverseCmd.Flags().StringVar(&reversal.MemberId, "member", "", "the member of the transaction named by --reference")
	reverseCmd.Flags().Int64Var(&reversal.Points, "points", 0, "points to take back (0: all that is left)")
	cmd.AddCommand(awardCmd, reverseCmd)
	return cmd
}

// parseRecords reads a records CSV; every malformed line is reported with its number.
func parseRecords(r io.Reader) ([]*coalitionv1.PartnerRecord, []string) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, []string{"1: cannot read the header: " + err.Error()}
	}
	if strings.Join(header, ",") != strings.Join(reconColumns, ",") {
		return nil, []string{fmt.Sprintf("1: header is %q, want %q", strings.Join(header, ","), strings.Join(reconColumns, ","))}
	}
	var out []*coalitionv1.PartnerRecord
	var problems []string
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%d: %v", line, err))
			continue
		}
		rec, problem := parseRecord(row, int64(line))
		if problem != "" {
			problems = append(problems, fmt.Sprintf("%d: %s", line, problem))
			continue
		}
		out = append(out, rec)
	}
	return out, problems
}

func parseRecord(row []string, line int64) (*coalitionv1.PartnerRecord, string) {
	if len(row) != len(reconColumns) {
		return nil, fmt.Sprintf("%d fields, want %d (%s)", len(row), len(reconColumns), strings.Join(reconColumns, ","))
	}
	points, err := strconv.ParseInt(row[3], 10, 64)
	if err != nil || points < 1 {
		return nil, fmt.Sprintf("points %q is not a positive integer", row[3])
	}
	at, err := time.Parse(time.RFC3339, row[4])
	if err != nil {
		return nil, fmt.Sprintf("occurred_at %q is not an RFC 3339 time", row[4])
	}
	switch row[1] {
	case "award", "redeem", "capture", "reversal":
	default:
		return nil, fmt.Sprintf("kind %q is not award, redeem, capture or reversal", row[1])
	}
	if row[0] == "" || row[2] == "" {
		return nil, "reference and member_id are required"
	}
	return &coalitionv1.PartnerRecord{Reference: row[0], Kind: row[1], MemberId: row[2], Points: points,
		OccurredAt: timestamppb.New(at), Line: line}, ""
}
