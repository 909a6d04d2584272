package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// Settlements is what SettlementService needs from the books.
type Settlements interface {
	Settle(ctx context.Context, cfg settlement.SettleConfig) (settlement.RunRecord, error)
	Run(ctx context.Context, id int64) (settlement.RunRecord, error)
	Runs(ctx context.Context, limit int) ([]int64, error)
	ReplacePartnerRecords(ctx context.Context, runID int64, partnerID string, recs []settlement.PartnerRecord) error
	Reconcile(ctx context.Context, runID int64, partnerID string) ([]settlement.ReconItem, error)
	StatementSignature(ctx context.Context, runID int64, partnerID string) (settlement.Signature, bool, error)
	SaveStatementSignature(ctx context.Context, runID int64, partnerID string, sig settlement.Signature, now time.Time) (settlement.Signature, error)
	Liability(ctx context.Context, at time.Time) (settlement.LiabilityReport, error)
	SettlementModel(ctx context.Context) (settlement.Model, error)
	SetSettlementModel(ctx context.Context, m settlement.Model) (settlement.Model, error)
	TransactionByReference(ctx context.Context, partnerID, memberID, reference string) (string, error)
}

// settlementService implements coalitionv1.SettlementServiceServer for finance.
type settlementService struct {
	coalitionv1.UnimplementedSettlementServiceServer
	store     Settlements
	signer    settlement.StatementSigner // nil: statements are not signed
	metrics   *Metrics
	safetyLag time.Duration
	holder    string
	now       func() time.Time
	log       *slog.Logger
	// ledger and partners back PostAdjustment (adjustments.go).
	ledger   Ledger
	partners PartnerDirectory
}

// maxRecordsPerSubmission bounds one reconciliation upload.
const maxRecordsPerSubmission = 1_000_000

// RunSettlement closes and settles a period.
func (s *settlementService) RunSettlement(ctx context.Context, req *coalitionv1.RunSettlementRequest) (*coalitionv1.RunSettlementResponse, error) {
	if req.GetCutoff() == nil || req.GetCutoff().CheckValid() != nil {
		return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "cutoff", Description: "is required (RFC 3339 timestamp)"}}}
	}
	if k := req.GetIdempotencyKey(); k != "" {
		if err := settlement.ValidateIdempotencyKey(k); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	rec, err := s.store.Settle(ctx, settlement.SettleConfig{
		Cutoff: req.GetCutoff().AsTime(), Now: s.now(), SafetyLag: s.safetyLag, Holder: s.holder, IdempotencyKey: req.GetIdempotencyKey(),
		Progress: func(step string) { s.log.InfoContext(ctx, "settlement", "step", step) },
	})
	if err == nil && rec.Replayed {
		return &coalitionv1.RunSettlementResponse{Run: runToProto(rec), Replayed: true}, nil
	}
	result := rec.Status
	if err != nil {
		result = "error"
	}
	s.metrics.settlementRuns.WithLabelValues(result).Inc()
	if err != nil {
		return nil, err
	}
	s.metrics.settlementSeconds.Observe(time.Since(start).Seconds())
	if rec.Status == "published" && s.signer != nil {
		// Sign what reports render: the run as stored and read back.
		if rec, err = s.store.Run(ctx, rec.ID); err != nil {
			return nil, err
		}
		for partner := range rec.Result.Lines {
			if _, err := s.signature(ctx, rec, partner); err != nil {
				return nil, fmt.Errorf("sign statement of %s: %w", partner, err)
			}
		}
	}
	return &coalitionv1.RunSettlementResponse{Run: runToProto(rec)}, nil
}

// signature returns the stored signature of a statement, signing it first if needed.
func (s *settlementService) signature(ctx context.Context, rec settlement.RunRecord, partner string) (settlement.Signature, error) {
	sig, ok, err := s.store.StatementSignature(ctx, rec.ID, partner)
	if err != nil || ok {
		return sig, err
	}
	sig, err = s.signer.Sign(ctx, settlement.StatementCSV(settlement.StatementOf(rec, partner)))
	if err != nil {
		return sig, err
	}
	return s.store.SaveStatementSignature(ctx, rec.ID, partner, sig, s.now())
}

// GetRun reads one run.
func (s *settlementService) GetRun(ctx context.Context, req *coalitionv1.GetRunRequest) (*coalitionv1.GetRunResponse, error) {
	rec, err := s.store.Run(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	return &coalitionv1.GetRunResponse{Run: runToProto(rec)}, nil
}

// ListRuns lists the latest runs.
func (s *settlementService) ListRuns(ctx context.Context, _ *coalitionv1.ListRunsRequest) (*coalitionv1.ListRunsResponse, error) {
	ids, err := s.store.Runs(ctx, 100)
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.ListRunsResponse{}
	for _, id := range ids {
		rec, err := s.store.Run(ctx, id)
		if err != nil {
			return nil, err
		}
		resp.Runs = append(resp.Runs, runToProto(rec))
	}
	return resp, nil
}

// GetStatement reads a partner's statement.
func (s *settlementService) GetStatement(ctx context.Context, req *coalitionv1.GetStatementRequest) (*coalitionv1.GetStatementResponse, error) {
	rec, err := s.store.Run(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	st := settlement.StatementOf(rec, req.GetPartnerId())
	out := &coalitionv1.Statement{PartnerId: st.PartnerID, Period: st.Period, PreviousCutoff: timestamppb.New(st.PreviousCutoff),
		Cutoff: timestamppb.New(st.Cutoff), Currency: st.Currency, NetAmount: st.Net.Text('f')}
	for _, l := range st.Lines {
		out.Lines = append(out.Lines, &coalitionv1.StatementLine{Kind: l.Kind, Counterparty: l.Counterparty, PriceVersion: l.Version,
			Points: l.Points, Rate: l.Rate.Text('f'), Amount: l.Amount.Text('f'), Late: l.Late, Transactions: l.Txns})
	}
	if sig, ok, err := s.store.StatementSignature(ctx, rec.ID, st.PartnerID); err == nil && ok {
		out.Signature = sig.Value
	}
	return &coalitionv1.GetStatementResponse{Statement: out}, nil
}

// GetPositions reads the netting result.
func (s *settlementService) GetPositions(ctx context.Context, req *coalitionv1.GetPositionsRequest) (*coalitionv1.GetPositionsResponse, error) {
	rec, err := s.store.Run(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	r := rec.Result
	var saving apdDecimal
	if _, err := apd.BaseContext.Sub(&saving, &r.GrossTotal, &r.NettedTotal); err != nil {
		return nil, err
	}
	resp := &coalitionv1.GetPositionsResponse{OperatorRevenue: r.OperatorRevenue.Text('f'), GrossTotal: r.GrossTotal.Text('f'),
		NettedTotal: r.NettedTotal.Text('f'), NettingSaving: saving.Text('f'), Currency: rec.Currency, Period: rec.Period}
	for _, p := range r.Positions {
		resp.Positions = append(resp.Positions, &coalitionv1.Position{PartnerId: p.PartnerID, GrossPayable: p.GrossPayable.Text('f'),
			GrossReceivable: p.GrossReceivable.Text('f'), Net: p.Net.Text('f')})
	}
	for _, p := range r.Payments {
		resp.Payments = append(resp.Payments, &coalitionv1.PaymentInstruction{From: p.From, To: p.To, Amount: p.Amount.Text('f')})
	}
	return resp, nil
}

// GetMatrix reads the bilateral matrix.
func (s *settlementService) GetMatrix(ctx context.Context, req *coalitionv1.GetMatrixRequest) (*coalitionv1.GetMatrixResponse, error) {
	rec, err := s.store.Run(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.GetMatrixResponse{Period: rec.Period}
	for _, c := range rec.Result.Matrix {
		resp.Cells = append(resp.Cells, &coalitionv1.MatrixCell{Issuer: c.Issuer, Redeemer: c.Redeemer, Points: c.Points})
	}
	return resp, nil
}

var runStatusToProto = map[string]coalitionv1.RunStatus{
	"published": coalitionv1.RunStatus_RUN_STATUS_PUBLISHED,
	"failed":    coalitionv1.RunStatus_RUN_STATUS_FAILED,
}

var modelToProto = map[settlement.Model]coalitionv1.SettlementModel{
	settlement.ModelHub:       coalitionv1.SettlementModel_SETTLEMENT_MODEL_HUB,
	settlement.ModelBilateral: coalitionv1.SettlementModel_SETTLEMENT_MODEL_BILATERAL,
}

// GetSettlementModel returns the model periods closed from now on are settled under.
func (s *settlementService) GetSettlementModel(ctx context.Context, _ *coalitionv1.GetSettlementModelRequest) (*coalitionv1.GetSettlementModelResponse, error) {
	m, err := s.store.SettlementModel(ctx)
	if err != nil {
		return nil, err
	}
	return &coalitionv1.GetSettlementModelResponse{Model: modelToProto[m]}, nil
}

// SetSettlementModel chooses the model for periods closed from now on.
func (s *settlementService) SetSettlementModel(ctx context.Context, req *coalitionv1.SetSettlementModelRequest) (*coalitionv1.SetSettlementModelResponse, error) {
	var m settlement.Model
	for model, p := range modelToProto {
		if p == req.GetModel() {
			m = model
		}
	}
	if m == "" {
		return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "model", Description: "must be HUB or BILATERAL"}}}
	}
	prev, err := s.store.SetSettlementModel(ctx, m)
	if err != nil {
		return nil, err
	}
	return &coalitionv1.SetSettlementModelResponse{Model: modelToProto[m], Previous: modelToProto[prev]}, nil
}

func runToProto(rec settlement.RunRecord) *coalitionv1.Run {
	out := &coalitionv1.Run{Id: rec.ID, Period: rec.Period, PreviousCutoff: timestamppb.New(rec.PreviousCutoff),
		Cutoff: timestamppb.New(rec.Cutoff), Model: modelToProto[rec.Model], Status: runStatusToProto[rec.Status],
		Currency: rec.Currency, OperatorRevenue: rec.Result.OperatorRevenue.Text('f'), GrossTotal: rec.Result.GrossTotal.Text('f'),
		NettedTotal: rec.Result.NettedTotal.Text('f'), CreatedAt: timestamppb.New(rec.CreatedAt),
		Transactions: rec.Transactions, LateTransactions: rec.Late}
	for _, c := range rec.Checks {
		out.Checks = append(out.Checks, &coalitionv1.Check{Name: c.Name, Passed: c.Passed, Detail: c.Detail})
	}
	return out
}

// ExportReport renders a report with the settlement package's renderers.
func (s *settlementService) ExportReport(ctx context.Context, req *coalitionv1.ExportReportRequest) (*coalitionv1.ExportReportResponse, error) {
	if req.GetKind() == coalitionv1.ReportKind_REPORT_KIND_LIABILITY {
		return s.liability(ctx, req)
	}
	rec, err := s.store.Run(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	csvOut := req.GetFormat() != coalitionv1.ReportFormat_REPORT_FORMAT_JSON
	resp := &coalitionv1.ExportReportResponse{ContentType: "text/csv"}
	if !csvOut {
		resp.ContentType = "application/json"
	}
	switch req.GetKind() {
	case coalitionv1.ReportKind_REPORT_KIND_STATEMENT:
		st := settlement.StatementOf(rec, req.GetPartnerId())
		resp.Content = pickBytes(csvOut, settlement.StatementCSV(st), settlement.StatementJSON(st))
		if csvOut && s.signer != nil && rec.Status == "published" {
			sig, err := s.signature(ctx, rec, req.GetPartnerId())
			if err != nil {
				return nil, fmt.Errorf("sign statement: %w", err)
			}
			resp.Signature = sig.Value
		}
	case coalitionv1.ReportKind_REPORT_KIND_POSITIONS:
		resp.Content = pickBytes(csvOut, settlement.PositionsCSV(rec), settlement.PositionsJSON(rec))
	case coalitionv1.ReportKind_REPORT_KIND_MATRIX:
		resp.Content = settlement.MatrixCSV(rec)
		resp.ContentType = "text/csv"
	case coalitionv1.ReportKind_REPORT_KIND_RECONCILIATION:
		items, err := s.store.Reconcile(ctx, rec.ID, req.GetPartnerId())
		if err != nil {
			return nil, err
		}
		resp.Content, resp.ContentType = settlement.ReconCSV(items), "text/csv"
	default:
		return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "kind", Description: "must name a report"}}}
	}
	return resp, nil
}

func pickBytes(cond bool, a, b []byte) []byte {
	if cond {
		return a
	}
	return b
}

// VerifyStatement checks a statement file against the run's stored signature.
func (s *settlementService) VerifyStatement(ctx context.Context, req *coalitionv1.VerifyStatementRequest) (*coalitionv1.VerifyStatementResponse, error) {
	if s.signer == nil {
		return nil, withInfo(codes.FailedPrecondition, "statement signing is not configured", "SIGNING_NOT_CONFIGURED", nil).Err()
	}
	rec, err := s.store.Run(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	sig, err := s.signature(ctx, rec, req.GetPartnerId())
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.VerifyStatementResponse{Signature: sig.Value, Valid: true}
	if err := s.signer.Verify(ctx, req.GetContent(), sig); err != nil {
		if !errors.Is(err, settlement.ErrBadSignature) {
			return nil, err
		}
		resp.Valid, resp.Reason = false, "the file is not the signed statement: "+err.Error()
	}
	return resp, nil
}

// SubmitPartnerRecords stores a partner's records, all or nothing.
func (s *settlementService) SubmitPartnerRecords(stream coalitionv1.SettlementService_SubmitPartnerRecordsServer) error {
	ctx := stream.Context()
	caller, _ := callerFrom(ctx)
	var runID int64
	var partner string
	var recs []settlement.PartnerRecord
	var bad []*coalitionv1.RecordError
	for n := 0; ; n++ {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if n == 0 {
			runID, partner = msg.GetRunId(), msg.GetPartnerId()
			if caller.Role == tlsconfig.RolePartner && (partner == "" || partner == caller.Name) {
				partner = caller.Name
			} else if caller.Role == tlsconfig.RolePartner {
				return withInfo(codes.PermissionDenied, "a partner may submit only its own records", ReasonRoleNotAllowed, nil).Err()
			}
		}
		for _, r := range msg.GetRecords() {
			line := r.GetLine()
			if line == 0 {
				line = int64(len(recs) + len(bad) + 1)
			}
			rec, problem := recordFromProto(r, line)
			if problem != "" {
				bad = append(bad, &coalitionv1.RecordError{Line: line, Message: problem})
				continue
			}
			recs = append(recs, rec)
		}
		if len(recs)+len(bad) > maxRecordsPerSubmission {
			return withInfo(codes.InvalidArgument, fmt.Sprintf("more than %d records", maxRecordsPerSubmission), settlement.ErrRecordsRejected.Reason, nil).Err()
		}
	}
	if partner == "" {
		return &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "partner_id", Description: "is required"}}}
	}
	if len(bad) > 0 {
		return stream.SendAndClose(&coalitionv1.SubmitPartnerRecordsResponse{Errors: bad})
	}
	if err := s.store.ReplacePartnerRecords(ctx, runID, partner, recs); err != nil {
		return err
	}
	return stream.SendAndClose(&coalitionv1.SubmitPartnerRecordsResponse{Accepted: int64(len(recs))})
}

var recordKinds = map[string]bool{"award": true, "redeem": true, "capture": true, "reversal": true}

func recordFromProto(r *coalitionv1.PartnerRecord, line int64) (settlement.PartnerRecord, string) {
	rec := settlement.PartnerRecord{Line: line, Reference: r.GetReference(), Kind: r.GetKind(), MemberID: r.GetMemberId(), Points: r.GetPoints()}
	switch {
	case rec.Reference == "" || len(rec.Reference) > settlement.MaxReferenceLen:
		return rec, "reference must be 1-128 characters"
	case !recordKinds[rec.Kind]:
		return rec, fmt.Sprintf("kind %q is not award, redeem, capture or reversal", rec.Kind)
	case settlement.ValidateMemberID(rec.MemberID) != nil:
		return rec, "member_id must be 1-64 characters of [A-Za-z0-9._-]"
	case rec.Points < 1 || rec.Points > settlement.MaxPointsPerCommand:
		return rec, "points must be between 1 and 1000000000"
	case r.GetOccurredAt() == nil || r.GetOccurredAt().CheckValid() != nil:
		return rec, "occurred_at must be an RFC 3339 timestamp"
	}
	rec.OccurredAt = r.GetOccurredAt().AsTime()
	return rec, ""
}

// GetReconciliation matches records against the ledger.
func (s *settlementService) GetReconciliation(ctx context.Context, req *coalitionv1.GetReconciliationRequest) (*coalitionv1.GetReconciliationResponse, error) {
	items, err := s.store.Reconcile(ctx, req.GetRunId(), req.GetPartnerId())
	if err != nil {
		return nil, err
	}
	// Exceptions first, then matches; each group keeps the store's order.
	sort.SliceStable(items, func(i, j int) bool { return items[i].Outcome != "matched" && items[j].Outcome == "matched" })
	resp := &coalitionv1.GetReconciliationResponse{}
	for _, it := range items {
		resp.Items = append(resp.Items, &coalitionv1.ReconItem{Outcome: it.Outcome, Reference: it.Reference, Kind: it.Kind,
			MemberId: it.MemberID, LedgerPoints: it.LedgerPoints, PartnerPoints: it.PartnerPoints})
		switch it.Outcome {
		case "matched":
			resp.Matched++
		case "missing_here":
			resp.MissingHere++
		case "missing_at_partner":
			resp.MissingAtPartner++
		case "points_mismatch":
			resp.PointsMismatch++
		}
	}
	return resp, nil
}

// liability renders outstanding points by issuer and age at req.At (default now).
func (s *settlementService) liability(ctx context.Context, req *coalitionv1.ExportReportRequest) (*coalitionv1.ExportReportResponse, error) {
	at := s.now()
	if req.GetAt() != nil {
		if err := req.GetAt().CheckValid(); err != nil {
			return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "at", Description: "must be a valid timestamp"}}}
		}
		at = req.GetAt().AsTime()
	}
	rep, err := s.store.Liability(ctx, at)
	if err != nil {
		return nil, err
	}
	if req.GetFormat() == coalitionv1.ReportFormat_REPORT_FORMAT_JSON {
		return &coalitionv1.ExportReportResponse{Content: settlement.LiabilityJSON(rep), ContentType: "application/json"}, nil
	}
	return &coalitionv1.ExportReportResponse{Content: settlement.LiabilityCSV(rep), ContentType: "text/csv"}, nil
}
