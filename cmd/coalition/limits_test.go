package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// TestLimitsAndLiabilityCLI: limits set with `partner terms set` refuse an award over them over
// gRPC; GetBalance shows points expiring soon; `report liability` lists outstanding points.
func TestLimitsAndLiabilityCLI(t *testing.T) {
	addr, certs, _ := inProcessDev(t, "--lot-lifetime", "720h")
	conn := []string{"--addr", addr, "--certs-dir", certs}
	out := mustCLI(t, append([]string{"partner", "terms", "set", "--partner", "bean-coffee", "--issue-price", "0.0120",
		"--reimbursement-rate", "0.0090", "--max-points-per-transaction", "500", "--max-points-per-member-day", "800"}, conn...)...)
	if !strings.Contains(out, "bean-coffee,2,") || !strings.Contains(out, ",500,800") {
		t.Fatalf("terms set printed:\n%s\nwant version 2 with limits 500 and 800", out)
	}
	c, err := dialPartner(addr, certs, "bean-coffee")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bean := coalitionv1.NewPointsServiceClient(c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = bean.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "lim-1", MemberId: "L-1", Points: 501})
	if status.Code(err) != codes.FailedPrecondition || gateway.ReasonOf(err) != "PARTNER_LIMIT_EXCEEDED" {
		t.Fatalf("award of 501 over a 500 limit: got %v, want FAILED_PRECONDITION PARTNER_LIMIT_EXCEEDED", err)
	}
	if _, err := bean.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "lim-2", MemberId: "L-1", Points: 500}); err != nil {
		t.Fatalf("award of 500 at the limit: %v", err)
	}
	_, err = bean.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "lim-3", MemberId: "L-1", Points: 301})
	if status.Code(err) != codes.FailedPrecondition || gateway.ReasonOf(err) != "MEMBER_LIMIT_EXCEEDED" {
		t.Fatalf("award of 301 after 500 with an 800 daily limit: got %v, want MEMBER_LIMIT_EXCEEDED", err)
	}
	bal, err := bean.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: "L-1"})
	if err != nil || bal.GetBalance().GetExpiringSoon() != 500 {
		t.Fatalf("balance with a 30-day lot lifetime: got %v %v, want 500 expiring soon", bal.GetBalance(), err)
	}
	// Onboarding and suspension take effect on the partner's next call, without a restart.
	out = mustCLI(t, append([]string{"partner", "add", "--id", "new-partner", "--name", "New Partner", "--endpoint", "127.0.0.1:9"}, conn...)...)
	if !strings.Contains(out, "registered new-partner") || !strings.Contains(out, "endpoint 127.0.0.1:9") {
		t.Errorf("partner add printed:\n%s", out)
	}
	mustCLI(t, append([]string{"partner", "suspend", "bean-coffee"}, conn...)...)
	_, err = bean.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "lim-4", MemberId: "L-2", Points: 1})
	if status.Code(err) != codes.PermissionDenied || gateway.ReasonOf(err) != "PARTNER_SUSPENDED" {
		t.Fatalf("award right after suspend: got %v, want PERMISSION_DENIED PARTNER_SUSPENDED", err)
	}
	mustCLI(t, append([]string{"partner", "resume", "bean-coffee"}, conn...)...)
	if _, err := bean.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "lim-5", MemberId: "L-2", Points: 1}); err != nil {
		t.Fatalf("award right after resume: %v", err)
	}
	report := mustCLI(t, append([]string{"report", "liability"}, conn...)...)
	if !strings.Contains(report, ",partner:bean-coffee,0-3,2,501,501,6.01,6.01,EUR") {
		t.Errorf("liability report lacks bean-coffee's 501 points in 2 lots worth 6.01:\n%s", report)
	}
}
