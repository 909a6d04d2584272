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
	cmd.AddCommand(imp)
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
