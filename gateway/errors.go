package gateway

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/coalitionexchange/coalition/settlement"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error this API returns.
const ErrorDomain = "coalition.v1"

// Reasons the gateway itself produces (the rest come from settlement).
const (
	ReasonInvalidRequest  = "INVALID_REQUEST"
	ReasonUnauthenticated = "UNAUTHENTICATED"
	ReasonRoleNotAllowed  = "ROLE_NOT_ALLOWED"
	ReasonInternal        = "INTERNAL"
)

// codeByReason is the one table from domain error reasons to gRPC codes.
var codeByReason = map[string]codes.Code{
	settlement.ErrInsufficientPoints.Reason:      codes.FailedPrecondition,
	settlement.ErrIdempotencyKeyReused.Reason:    codes.FailedPrecondition,
	settlement.ErrHoldNotOpen.Reason:             codes.FailedPrecondition,
	settlement.ErrCaptureExceedsHold.Reason:      codes.FailedPrecondition,
	settlement.ErrReversalExceedsOriginal.Reason: codes.FailedPrecondition,
	settlement.ErrNotReversible.Reason:           codes.FailedPrecondition,
	settlement.ErrMemberBlocked.Reason:           codes.FailedPrecondition,
	settlement.ErrIdempotencyKeyInFlight.Reason:  codes.Aborted,
	settlement.ErrTransactionConflict.Reason:     codes.Aborted,
	settlement.ErrMemberNotFound.Reason:          codes.NotFound,
	settlement.ErrTransactionNotFound.Reason:     codes.NotFound,
	settlement.ErrHoldNotFound.Reason:            codes.NotFound,
	settlement.ErrPartnerUnknown.Reason:          codes.PermissionDenied,
	settlement.ErrPartnerSuspended.Reason:        codes.PermissionDenied,
	settlement.ErrAmbiguousCommit.Reason:         codes.Unavailable,
	settlement.ErrInvalidPageToken.Reason:        codes.InvalidArgument,
	settlement.ErrCutoffTooRecent.Reason:         codes.FailedPrecondition,
	settlement.ErrCutoffBeforeLast.Reason:        codes.FailedPrecondition,
	settlement.ErrRunInProgress.Reason:           codes.Aborted,
	settlement.ErrRunNotFound.Reason:             codes.NotFound,
	settlement.ErrTermsRejected.Reason:           codes.FailedPrecondition,
	settlement.ErrRecordsRejected.Reason:         codes.InvalidArgument,
	settlement.ErrPartnerUnavailable.Reason:      codes.Unavailable,
	settlement.ErrPartnerNotConfigured.Reason:    codes.FailedPrecondition,
	settlement.ErrExchangeNotFound.Reason:        codes.NotFound,
	settlement.ErrCampaignNotFound.Reason:        codes.NotFound,
	settlement.ErrCampaignExists.Reason:          codes.AlreadyExists,
	settlement.ErrCampaignRejected.Reason:        codes.FailedPrecondition,
	settlement.ErrCampaignEnded.Reason:           codes.FailedPrecondition,
	settlement.ErrPartnerLimitExceeded.Reason:    codes.FailedPrecondition,
	settlement.ErrMemberLimitExceeded.Reason:     codes.FailedPrecondition,
}

// retryDelay is the RetryInfo hint sent with errors the caller should retry with the same key.
const retryDelay = 100 * time.Millisecond

// Status converts an error from the ledger into the gRPC status the caller sees. Errors that
// are not domain errors become INTERNAL with a generic message; the detail is logged here,
// once, with the method.
func Status(ctx context.Context, log *slog.Logger, method string, err error) *status.Status {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st // already a status (interceptors)
	}
	var ve *settlement.ValidationError
	if errors.As(err, &ve) {
		return validationStatus(ve)
	}
	if de, ok := settlement.AsError(err); ok {
		if de == settlement.ErrAmbiguousCommit || de == settlement.ErrTransactionConflict {
			// The wrapped detail is database text: log it, answer with the sentinel's words.
			log.WarnContext(ctx, "transaction outcome", "method", method, "reason", de.Reason, "err", err)
			return domainStatus(de, de)
		}
		return domainStatus(de, err)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded: the outcome may be unknown, retry with the same idempotency key")
	}
	log.ErrorContext(ctx, "internal error", "method", method, "err", err)
	return withInfo(codes.Internal, "internal error", ReasonInternal, nil)
}

func domainStatus(de *settlement.Error, err error) *status.Status {
	code, ok := codeByReason[de.Reason]
	if !ok {
		code = codes.Internal
	}
	meta := map[string]string{}
	var replayed *settlement.ReplayedError
	if errors.As(err, &replayed) {
		meta["replayed"] = "true"
	}
	st := withInfo(code, err.Error(), de.Reason, meta)
	if code == codes.Unavailable || code == codes.Aborted {
		if with, e := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryDelay)}); e == nil {
			st = with
		}
	}
	if de == settlement.ErrInvalidPageToken {
		// Every INVALID_ARGUMENT names its field, as validation errors do.
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "page_token", Description: de.Error()}}}
		if with, e := st.WithDetails(br); e == nil {
			st = with
		}
	}
	return st
}

func validationStatus(ve *settlement.ValidationError) *status.Status {
	br := &errdetails.BadRequest{}
	for _, v := range ve.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	st := withInfo(codes.InvalidArgument, ve.Error(), ReasonInvalidRequest, nil)
	if with, err := st.WithDetails(br); err == nil {
		return with
	}
	return st
}

// withInfo builds a status with an ErrorInfo detail.
func withInfo(code codes.Code, msg, reason string, meta map[string]string) *status.Status {
	st := status.New(code, msg)
	if len(meta) == 0 {
		meta = nil
	}
	with, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta})
	if err != nil {
		return st
	}
	return with
}

// ReasonOf returns the ErrorInfo reason of a status error, or "".
func ReasonOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// RetryDelayOf returns the RetryInfo delay of a status error, or 0 without one.
func RetryDelayOf(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}
