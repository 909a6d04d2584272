package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

func TestMain(m *testing.M) { os.Exit(sqlstoretest.Main(m)) }

// details splits a status's details by type; it fails t on a detail of any other type.
type details struct {
	info       *errdetails.ErrorInfo
	retry      *errdetails.RetryInfo
	badRequest *errdetails.BadRequest
}

func detailsOf(t *testing.T, st *status.Status) details {
	t.Helper()
	var d details
	for _, detail := range st.Details() {
		switch v := detail.(type) {
		case *errdetails.ErrorInfo:
			d.info = v
		case *errdetails.RetryInfo:
			d.retry = v
		case *errdetails.BadRequest:
			d.badRequest = v
		default:
			t.Errorf("unexpected detail %T: %v", detail, detail)
		}
	}
	return d
}

// statusOf runs Status with a logger whose output it returns.
func statusOf(err error) (*status.Status, string) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	return Status(context.Background(), log, "/coalition.v1.PointsService/Redeem", err), logs.String()
}

func TestCodeByReasonCoversEveryReason(t *testing.T) {
	reasons := settlement.Reasons()
	for _, reason := range reasons {
		if _, ok := codeByReason[reason]; !ok {
			t.Errorf("settlement reason %s has no row in codeByReason", reason)
		}
	}
	for reason := range codeByReason {
		if !slices.Contains(reasons, reason) {
			t.Errorf("codeByReason row %s is not a settlement reason", reason)
		}
	}
}

func TestStatusDomainErrors(t *testing.T) {
	tests := []struct {
		err       *settlement.Error
		wantCode  codes.Code
		wantRetry bool
		// hideDetail: the wrapped detail is database text, logged but not sent.
		hideDetail bool
	}{
		{settlement.ErrInsufficientPoints, codes.FailedPrecondition, false, false},
		{settlement.ErrIdempotencyKeyReused, codes.FailedPrecondition, false, false},
		{settlement.ErrHoldNotOpen, codes.FailedPrecondition, false, false},
		{settlement.ErrReversalExceedsOriginal, codes.FailedPrecondition, false, false},
		{settlement.ErrMemberBlocked, codes.FailedPrecondition, false, false},
		{settlement.ErrCaptureExceedsHold, codes.FailedPrecondition, false, false},
		{settlement.ErrNotReversible, codes.FailedPrecondition, false, false},
		{settlement.ErrIdempotencyKeyInFlight, codes.Aborted, true, false},
		{settlement.ErrTransactionConflict, codes.Aborted, true, true},
		{settlement.ErrMemberNotFound, codes.NotFound, false, false},
		{settlement.ErrTransactionNotFound, codes.NotFound, false, false},
		{settlement.ErrHoldNotFound, codes.NotFound, false, false},
		{settlement.ErrPartnerUnknown, codes.PermissionDenied, false, false},
		{settlement.ErrPartnerSuspended, codes.PermissionDenied, false, false},
		{settlement.ErrAmbiguousCommit, codes.Unavailable, true, true},
		{settlement.ErrInvalidPageToken, codes.InvalidArgument, false, false},
		{settlement.ErrCutoffTooRecent, codes.FailedPrecondition, false, false},
		{settlement.ErrCutoffBeforeLast, codes.FailedPrecondition, false, false},
		{settlement.ErrRunInProgress, codes.Aborted, true, false},
		{settlement.ErrRunNotFound, codes.NotFound, false, false},
		{settlement.ErrTermsRejected, codes.FailedPrecondition, false, false},
		{settlement.ErrRecordsRejected, codes.InvalidArgument, false, false},
		{settlement.ErrPartnerUnavailable, codes.Unavailable, true, false},
		{settlement.ErrPartnerNotConfigured, codes.FailedPrecondition, false, false},
		{settlement.ErrExchangeNotFound, codes.NotFound, false, false},
		{settlement.ErrCampaignNotFound, codes.NotFound, false, false},
		{settlement.ErrCampaignExists, codes.AlreadyExists, false, false},
		{settlement.ErrCampaignRejected, codes.FailedPrecondition, false, false},
		{settlement.ErrCampaignEnded, codes.FailedPrecondition, false, false},
		{settlement.ErrPartnerLimitExceeded, codes.FailedPrecondition, false, false},
		{settlement.ErrMemberLimitExceeded, codes.FailedPrecondition, false, false},
	}
	tested := map[string]bool{}
	for _, tt := range tests {
		tested[tt.err.Reason] = true
		t.Run(tt.err.Reason, func(t *testing.T) {
			err := fmt.Errorf("%w: some detail", tt.err)
			st, _ := statusOf(err)
			if st.Code() != tt.wantCode {
				t.Errorf("code = %s, want %s", st.Code(), tt.wantCode)
			}
			wantMsg := err.Error()
			if tt.hideDetail {
				wantMsg = tt.err.Error()
			}
			if st.Message() != wantMsg {
				t.Errorf("message = %q, want %q", st.Message(), wantMsg)
			}
			d := detailsOf(t, st)
			want := &errdetails.ErrorInfo{Reason: tt.err.Reason, Domain: "coalition.v1"}
			if !proto.Equal(d.info, want) {
				t.Errorf("ErrorInfo = %v, want %v", d.info, want)
			}
			if got := d.retry != nil; got != tt.wantRetry {
				t.Errorf("has RetryInfo = %t, want %t", got, tt.wantRetry)
			}
			if d.retry != nil && d.retry.GetRetryDelay().AsDuration() <= 0 {
				t.Errorf("RetryInfo delay = %v, want positive", d.retry.GetRetryDelay().AsDuration())
			}
			if got := ReasonOf(st.Err()); got != tt.err.Reason {
				t.Errorf("ReasonOf = %q, want %q", got, tt.err.Reason)
			}
		})
	}
	for _, reason := range settlement.Reasons() {
		if !tested[reason] {
			t.Errorf("reason %s has no row in this test", reason)
		}
	}
}

func TestStatusReplayedErrorCarriesReplayedMetadata(t *testing.T) {
	const msg = "insufficient points: available 300, requested 301"
	st, _ := statusOf(settlement.ReplayError(settlement.ErrInsufficientPoints.Reason, msg))
	if st.Code() != codes.FailedPrecondition || st.Message() != msg {
		t.Errorf("status = %s %q, want FailedPrecondition %q", st.Code(), st.Message(), msg)
	}
	want := &errdetails.ErrorInfo{Reason: "INSUFFICIENT_POINTS", Domain: ErrorDomain, Metadata: map[string]string{"replayed": "true"}}
	if d := detailsOf(t, st); !proto.Equal(d.info, want) {
		t.Errorf("ErrorInfo = %v, want %v", d.info, want)
	}
}

func TestStatusValidationError(t *testing.T) {
	ve := &settlement.ValidationError{Violations: []settlement.FieldViolation{
		{Field: "idempotency_key", Description: "must be 1-128 characters"},
		{Field: "points", Description: "must be between 1 and 1000000000"},
	}}
	st, _ := statusOf(fmt.Errorf("redeem: %w", ve))
	if st.Code() != codes.InvalidArgument {
		t.Errorf("code = %s, want InvalidArgument", st.Code())
	}
	d := detailsOf(t, st)
	wantInfo := &errdetails.ErrorInfo{Reason: ReasonInvalidRequest, Domain: ErrorDomain}
	if !proto.Equal(d.info, wantInfo) {
		t.Errorf("ErrorInfo = %v, want %v", d.info, wantInfo)
	}
	wantBR := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "idempotency_key", Description: "must be 1-128 characters"},
		{Field: "points", Description: "must be between 1 and 1000000000"},
	}}
	if !proto.Equal(d.badRequest, wantBR) {
		t.Errorf("BadRequest = %v, want %v", d.badRequest, wantBR)
	}
}

func TestStatusInvalidPageTokenNamesTheField(t *testing.T) {
	st, _ := statusOf(settlement.ErrInvalidPageToken)
	want := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "page_token", Description: settlement.ErrInvalidPageToken.Error()},
	}}
	if d := detailsOf(t, st); !proto.Equal(d.badRequest, want) {
		t.Errorf("BadRequest = %v, want %v", d.badRequest, want)
	}
}

func TestStatusContextErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"canceled", context.Canceled, codes.Canceled},
		{"wrapped canceled", fmt.Errorf("read balance: %w", context.Canceled), codes.Canceled},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"wrapped deadline", fmt.Errorf("debit member: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, logs := statusOf(tt.err)
			if st.Code() != tt.want {
				t.Errorf("code = %s, want %s", st.Code(), tt.want)
			}
			if logs != "" {
				t.Errorf("logged %q, want nothing for the caller's own deadline or cancellation", logs)
			}
		})
	}
}

func TestStatusInternalErrorHidesDetail(t *testing.T) {
	const secret = `password authentication failed for user "ledger_rw" at 10.0.0.7`
	st, logs := statusOf(fmt.Errorf("debit member: %s", secret))
	if st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("status = %s %q, want Internal %q", st.Code(), st.Message(), "internal error")
	}
	want := &errdetails.ErrorInfo{Reason: ReasonInternal, Domain: ErrorDomain}
	if d := detailsOf(t, st); !proto.Equal(d.info, want) {
		t.Errorf("ErrorInfo = %v, want %v", d.info, want)
	}
	if strings.Contains(fmt.Sprint(st.Proto()), "ledger_rw") {
		t.Errorf("status %v leaks the internal detail", st.Proto())
	}
	if n := strings.Count(logs, "ledger_rw"); n != 1 {
		t.Errorf("detail logged %d times, want once; logs:\n%s", n, logs)
	}
}

func TestStatusUnmappedDomainReasonIsInternal(t *testing.T) {
	st, _ := statusOf(&settlement.Error{Reason: "SOMETHING_NEW"})
	if st.Code() != codes.Internal {
		t.Errorf("code = %s, want Internal", st.Code())
	}
}

func TestStatusPassesStatusErrorsThrough(t *testing.T) {
	in := withInfo(codes.PermissionDenied, "role finance may not call coalition.v1.PointsService", ReasonRoleNotAllowed, nil)
	st, _ := statusOf(in.Err())
	if !proto.Equal(st.Proto(), in.Proto()) {
		t.Errorf("status = %v, want %v unchanged", st.Proto(), in.Proto())
	}
	if st, _ := statusOf(nil); st != nil {
		t.Errorf("Status(nil) = %v, want nil", st)
	}
}

func TestRetryInfoDelay(t *testing.T) {
	st, _ := statusOf(settlement.ErrIdempotencyKeyInFlight)
	want := &errdetails.RetryInfo{RetryDelay: durationpb.New(100 * time.Millisecond)}
	if d := detailsOf(t, st); !proto.Equal(d.retry, want) {
		t.Errorf("RetryInfo = %v, want %v", d.retry, want)
	}
}

func TestReasonOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"plain error", errors.New("boom"), ""},
		{"status without details", status.Error(codes.Unavailable, "connection refused"), ""},
		{"status with ErrorInfo", withInfo(codes.NotFound, "x", "HOLD_NOT_FOUND", nil).Err(), "HOLD_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReasonOf(tt.err); got != tt.want {
				t.Errorf("ReasonOf = %q, want %q", got, tt.want)
			}
		})
	}
}
