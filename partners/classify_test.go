package partners

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		callerErr error
		want      Class
	}{
		{"ok", nil, nil, ClassSuccess},
		{"ok after caller left", nil, context.Canceled, ClassSuccess},
		{"caller canceled", status.Error(codes.Canceled, "context canceled"), context.Canceled, ClassExcluded},
		{"caller canceled during unavailable", status.Error(codes.Unavailable, "x"), context.Canceled, ClassExcluded},
		{"our deadline", status.Error(codes.DeadlineExceeded, "deadline"), nil, ClassFailure},
		{"caller deadline", status.Error(codes.DeadlineExceeded, "deadline"), context.DeadlineExceeded, ClassFailure},
		{"context deadline error", fmt.Errorf("call: %w", context.DeadlineExceeded), nil, ClassFailure},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), nil, ClassFailure},
		{"resource exhausted", status.Error(codes.ResourceExhausted, "busy"), nil, ClassFailure},
		{"internal", status.Error(codes.Internal, "boom"), nil, ClassFailure},
		{"unknown", status.Error(codes.Unknown, "?"), nil, ClassFailure},
		{"unimplemented", status.Error(codes.Unimplemented, "no such service"), nil, ClassFailure},
		{"unauthenticated", status.Error(codes.Unauthenticated, "bad cert"), nil, ClassFailure},
		{"canceled not by caller", status.Error(codes.Canceled, "server went away"), nil, ClassFailure},
		{"plain error", errors.New("tls: handshake failure"), nil, ClassFailure},
		{"failed precondition", status.Error(codes.FailedPrecondition, "account closed"), nil, ClassRejected},
		{"not found", status.Error(codes.NotFound, "no such member"), nil, ClassRejected},
		{"invalid argument", status.Error(codes.InvalidArgument, "units"), nil, ClassRejected},
		{"already exists", status.Error(codes.AlreadyExists, "dup"), nil, ClassRejected},
		{"out of range", status.Error(codes.OutOfRange, "too many units"), nil, ClassRejected},
		{"permission denied", status.Error(codes.PermissionDenied, "not allowed"), nil, ClassRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err, tt.callerErr); got != tt.want {
				t.Errorf("Classify(%v, %v) = %s, want %s", tt.err, tt.callerErr, got, tt.want)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, ""), true},
		{status.Error(codes.DeadlineExceeded, ""), true},
		{status.Error(codes.ResourceExhausted, ""), true},
		{status.Error(codes.Aborted, ""), true},
		{context.DeadlineExceeded, true},
		{status.Error(codes.Internal, ""), false},
		{status.Error(codes.FailedPrecondition, ""), false},
		{status.Error(codes.Canceled, ""), false},
		{errors.New("x"), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("retryable(%v) = %t, want %t", tt.err, got, tt.want)
		}
	}
}
