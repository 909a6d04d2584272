package gateway

import (
	"context"
	"strconv"
	"unicode/utf8"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// adjustmentKeyPrefix namespaces finance's adjustment keys apart from the partner's own keys in
// the partner's idempotency records.
const adjustmentKeyPrefix = "adj:"

// maxAdjustmentReasonLen leaves room for the "adjustment: " a reversal's reason starts with.
const maxAdjustmentReasonLen = settlement.MaxReasonLen - len("adjustment: ")

// PostAdjustment books a reconciliation adjustment as a ledger item on the partner's behalf: an
// award (the partner issued points the ledger lacks) or a reversal of one of its transactions.
// The item goes through the ledger like the partner's own calls (validation, limits, campaign
// bonuses, idempotency), with who posted it and why in its metadata or reason.
func (s *settlementService) PostAdjustment(ctx context.Context, req *coalitionv1.PostAdjustmentRequest) (*coalitionv1.PostAdjustmentResponse, error) {
	var v []settlement.FieldViolation
	bad := func(field, desc string) { v = append(v, settlement.FieldViolation{Field: field, Description: desc}) }
	if n := len(req.GetIdempotencyKey()); n == 0 || n > settlement.MaxIdempotencyKeyLen-len(adjustmentKeyPrefix) {
		bad("idempotency_key", "must be 1-"+strconv.Itoa(settlement.MaxIdempotencyKeyLen-len(adjustmentKeyPrefix))+" characters of [A-Za-z0-9._:-]")
	}
	if req.GetPartnerId() == "" {
		bad("partner_id", "is required")
	}
	if n := utf8.RuneCountInString(req.GetReason()); n == 0 || n > maxAdjustmentReasonLen {
		bad("reason", "must be 1-"+strconv.Itoa(maxAdjustmentReasonLen)+" characters")
	}
	if req.GetRunId() < 0 {
		bad("run_id", "must be a run id, or 0")
	}
	rev := req.GetReversal()
	switch {
	case req.GetAward() == nil && rev == nil:
		bad("adjustment", "is required: award or reversal")
	case rev != nil && (rev.GetTransactionId() == "") == (rev.GetReference() == ""):
		bad("reversal", "give exactly one of transaction_id and reference (with member_id)")
	case rev != nil && rev.GetReference() != "" && rev.GetMemberId() == "":
		bad("reversal.member_id", "is required with reversal.reference")
	}
	if len(v) > 0 {
		return nil, &settlement.ValidationError{Violations: v}
	}
	if _, err := s.partners.Partner(ctx, req.GetPartnerId()); err != nil {
		return nil, err
	}
	if req.GetRunId() > 0 {
		if _, err := s.store.Run(ctx, req.GetRunId()); err != nil {
			return nil, err
		}
	}
	caller, _ := callerFrom(ctx)
	cmd := settlement.Command{PartnerID: req.GetPartnerId(), IdempotencyKey: adjustmentKeyPrefix + req.GetIdempotencyKey()}
	if a := req.GetAward(); a != nil {
		cmd.Op, cmd.MemberID, cmd.Points, cmd.Reference = settlement.OpAward, a.GetMemberId(), a.GetPoints(), a.GetReference()
		cmd.Metadata = map[string]string{"adjustment": req.GetReason(), "posted_by": caller.URI}
		if req.GetRunId() > 0 {
			cmd.Metadata["recon_run"] = strconv.FormatInt(req.GetRunId(), 10)
		}
	} else {
		id := rev.GetTransactionId()
		if id == "" {
			var err error
			if id, err = s.store.TransactionByReference(ctx, req.GetPartnerId(), rev.GetMemberId(), rev.GetReference()); err != nil {
				return nil, err
			}
		}
		cmd.Op, cmd.TransactionID, cmd.Points, cmd.Reason = settlement.OpReverse, id, rev.GetPoints(), "adjustment: "+req.GetReason()
	}
	out, err := s.ledger.Apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "adjustment posted", "partner", req.GetPartnerId(), "transaction", out.Transaction.ID,
		"kind", string(out.Transaction.Kind), "points", out.Transaction.Points, "replayed", out.Replayed, "posted_by", caller.URI)
	return &coalitionv1.PostAdjustmentResponse{Transaction: transactionToProto(out.Transaction), Replayed: out.Replayed}, nil
}
