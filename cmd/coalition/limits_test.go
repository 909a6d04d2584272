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
	report := mustCLI(t, append([]string{"report", "liability"}, conn...)...)
	if !strings.Contains(report, ",partner:bean-coffee,0-3,1,500,500,6.00,6.00,EUR") {
		t.Errorf("liability report lacks bean-coffee's 500 points worth 6.00:\n%s", report)
	}
}
