package partners

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Class is what a call's error says about the partner.
type Class int

// The classes of Classify.
const (
	// ClassSuccess: the call succeeded.
	ClassSuccess Class = iota
	// ClassRejected: the partner answered with a definite business refusal. The partner is
	// healthy, so the breaker counts it as a success; the operation did not happen.
	ClassRejected
	// ClassFailure: timeout, UNAVAILABLE, a broken connection or a server error. The breaker
	// counts it; the outcome of a non-idempotent step is unknown.
	ClassFailure
	// ClassExcluded: our caller canceled. Not the partner's fault: the breaker ignores it.
	ClassExcluded
)

// String names the class, for logs and metrics.
func (c Class) String() string {
	switch c {
	case ClassSuccess:
		return "success"
	case ClassRejected:
		return "rejected"
	case ClassFailure:
		return "failure"
	case ClassExcluded:
		return "excluded"
	default:
		return "unknown"
	}
}

// Classify says what err, returned by a call made on behalf of a caller whose context error
// is callerErr (nil while the caller still waits), means for the partner. It is pure.
func Classify(err, callerErr error) Class {
	if err == nil {
		return ClassSuccess
	}
	if errors.Is(callerErr, context.Canceled) {
		return ClassExcluded
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassFailure
	}
	st, ok := status.FromError(err)
	if !ok {
		return ClassFailure
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.OutOfRange, codes.PermissionDenied:
		return ClassRejected
	default:
		return ClassFailure
	}
}

// retryable reports whether an idempotent call that failed with err may be tried again: the
// partner may not have seen it (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED) or did not answer in
// time (DEADLINE_EXCEEDED; the key makes a repeat safe).
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.DeadlineExceeded:
		return true
	default:
		return false
	}
}
