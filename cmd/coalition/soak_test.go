package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// TestSoak is the correctness workload at CI size: clients doing every kind of write with
// duplicate sends, a gateway SIGKILLed three times, injected serialization failures and
// ambiguous commits. Every invariant holds after each restart and at the end, every
// acknowledged operation is in the ledger exactly once, and balances match the acknowledged
// operations. `make soak` runs the same at a large size.
func TestSoak(t *testing.T) {
	requirePostgres(t)
	bin := buildBinary(t)
	base := unprivilegedTempDir(t, "coalition-soaktest-*")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := runSoak(ctx, &out, soakOptions{bin: bin, dataDir: filepath.Join(base, "data"), workers: 8, duration: 20 * time.Second,
		kills: 3, injectRate: 0.05, members: 30, dupRate: 0.1, resolveFor: time.Minute})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Violations != 0 {
		t.Fatalf("%d violations: %v", res.Violations, res.ViolationDetails)
	}
	if res.Kills != 3 || res.Operations < 100 || res.OK == 0 || res.Duplicates == 0 || res.Unknown == 0 || res.Resolved != res.Unknown {
		t.Errorf("kills %d, operations %d (ok %d), duplicates %d, unknown %d resolved %d: want 3 kills, some of each and every unknown resolved",
			res.Kills, res.Operations, res.OK, res.Duplicates, res.Unknown, res.Resolved)
	}
	if res.UnknownByReason["Unavailable AMBIGUOUS_COMMIT"] == 0 || res.Retries == 0 {
		t.Errorf("no injected ambiguous commit (%v) or no retries (%d): the test hook did not reach the gateway", res.UnknownByReason, res.Retries)
	}
	if res.VerifyRuns != 5 || res.ChecksPassed == 0 || res.AckChecked != int(res.OK) {
		t.Errorf("verify runs %d, checks passed %d, acknowledged checked %d of %d", res.VerifyRuns, res.ChecksPassed, res.AckChecked, res.OK)
	}
	if res.EpochsRolled < 10 {
		t.Errorf("%d epochs rolled up: the roll-up worker did not run under the soak", res.EpochsRolled)
	}
}

// TestSoakUnderRateLimit is a short soak with the partner rate limit on: calls refused with
// RATE_LIMITED are sent again after their RetryInfo delay, through a kill and injected failures,
// and every acknowledged operation is still in the ledger exactly once.
func TestSoakUnderRateLimit(t *testing.T) {
	requirePostgres(t)
	bin := buildBinary(t)
	base := unprivilegedTempDir(t, "coalition-soaktest-*")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := runSoak(ctx, &out, soakOptions{bin: bin, dataDir: filepath.Join(base, "data"), workers: 8, duration: 8 * time.Second,
		kills: 1, injectRate: 0.05, members: 30, dupRate: 0.1, resolveFor: time.Minute, rateLimit: 30})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Violations != 0 {
		t.Fatalf("%d violations: %v", res.Violations, res.ViolationDetails)
	}
	if res.RateLimited == 0 {
		t.Error("no call was refused by the partner rate limit (30/s): the limit did not reach the gateway")
	}
	if n := res.UnknownByReason["ResourceExhausted RATE_LIMITED"]; n != 0 {
		t.Errorf("%d RATE_LIMITED refusals counted as unknown outcomes: they are definite (not applied)", n)
	}
	if res.OK == 0 || res.AckChecked != int(res.OK) || res.Resolved != res.Unknown {
		t.Errorf("ok %d, acknowledged checked %d, unknown %d resolved %d: want every acknowledged operation checked and every unknown resolved",
			res.OK, res.AckChecked, res.Unknown, res.Resolved)
	}
}

// TestBenchAndVerify runs every bench workload briefly against `coalition dev`, then
// `coalition verify` on its database: clean, then with a member balance broken on purpose.
func TestBenchAndVerify(t *testing.T) {
	requirePostgres(t)
	bin := buildBinary(t)
	base := unprivilegedTempDir(t, "coalition-benchtest-*")
	g := &soakGateway{bin: bin, dataDir: filepath.Join(base, "data"), grpcAddr: "127.0.0.1:0", logPath: filepath.Join(base, "dev.log"), env: os.Environ()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := g.start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.kill() })
	addr := readyAddrOf(t, g)
	for _, wl := range []string{"award", "spread", "hot-partner", "hot-member", "replay", "mixed"} {
		var out strings.Builder
		res, err := runBench(ctx, &out, benchOptions{addr: addr, certsDir: g.certsDir, partners: []string{"acme-air", "bean-coffee", "city-fuel"},
			workload: wl, concurrency: 4, duration: time.Second, warmup: 300 * time.Millisecond, maxOps: 1_000_000, members: 1000,
			timeout: 10 * time.Second, connsPer: 2})
		if err != nil {
			t.Fatalf("%s: %v", wl, err)
		}
		for k, n := range res.Errors {
			// A business refusal is an answer, not a fault: a rare one is tolerated (a redemption
			// can race another worker's on a shared member). Anything else, or many, fails.
			tolerated := (wl == "hot-member" && k == "Aborted TRANSACTION_CONFLICT") ||
				(k == "FailedPrecondition INSUFFICIENT_POINTS" && n*100 <= res.Calls)
			if !tolerated {
				t.Errorf("%s: errors %v\n%s", wl, res.Errors, out.String())
				break
			}
		}
		if res.OK == 0 || res.LatencyMS.P50 <= 0 || res.LatencyMS.P99 < res.LatencyMS.P50 || res.LatencyMS.Max < res.LatencyMS.P99 {
			t.Errorf("%s: %d ok, latency %+v\n%s", wl, res.OK, res.LatencyMS, out.String())
		}
		if !strings.Contains(out.String(), "summary workload="+wl+" ") {
			t.Errorf("%s: no summary line:\n%s", wl, out.String())
		}
	}

	var out strings.Builder
	if err := run(ctx, []string{"verify", "--database-url", g.dbURL}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("verify after bench: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), " 0 violations") || strings.Contains(out.String(), "FAIL") {
		t.Errorf("verify after bench:\n%s", out.String())
	}
	// Break one balance behind the ledger's back: verify names the check and fails.
	conn, err := dialPartner(addr, g.certsDir, "acme-air")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := coalitionv1.NewPointsServiceClient(conn).Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "verify-1", MemberId: "VERIFY-1", Points: 10}); err != nil {
		t.Fatal(err)
	}
	breakBalance(t, ctx, g.dbURL, "VERIFY-1")
	out.Reset()
	err = run(ctx, []string{"verify", "--database-url", g.dbURL}, func(string) string { return "" }, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "FAIL  member posted balance equals its entries: 1 violations") || !strings.Contains(out.String(), "VERIFY-1") {
		t.Errorf("verify with a broken balance: got %v\n%s", err, out.String())
	}
}
