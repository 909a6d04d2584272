package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// inProcessDev runs `coalition dev --ephemeral` in this process and returns its address and
// certificates directory; the coalition stops at cleanup.
func inProcessDev(t *testing.T, extra ...string) (addr, certs, httpAddr string) {
	t.Helper()
	requirePostgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	args := append([]string{"dev", "--ephemeral", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, extra...)
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev: %v", err)
		}
	})
	addrRE, certsRE := regexp.MustCompile(`gRPC \(mTLS\)\s+(\S+)`), regexp.MustCompile(`certificates (\S+)`)
	httpRE := regexp.MustCompile(`HTTP\s+http://(\S+)/healthz`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
		if m := httpRE.FindStringSubmatch(sc.Text()); m != nil {
			httpAddr = m[1]
		}
		if m := certsRE.FindStringSubmatch(sc.Text()); m != nil {
			certs = m[1]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if addr == "" || certs == "" {
		t.Fatalf("dev did not print its address and certificates (exited: %v)", sc.Err())
	}
	return addr, certs, httpAddr
}

// cli runs a coalition command in process and returns its standard output.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, args, func(string) string { return "" }, &out, &errOut)
	if err != nil {
		t.Logf("coalition %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("coalition %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// settleWhenAllowed runs `settle` at cutoff, retrying (bounded) while the cutoff is still
// within the safety lag.
func settleWhenAllowed(t *testing.T, conn []string, cutoff string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := cli(t, append([]string{"settle", "--cutoff", cutoff}, conn...)...)
		if err == nil {
			return out
		}
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "safety lag") || time.Now().After(deadline) {
			t.Fatalf("settle: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // polling a wall-clock condition with a bound
	}
}

// TestSettlementCLIWorkedExample drives the worked example through the API and settles it
// with the CLI: statement, positions, re-run byte-identical, signature, reconciliation.
func TestSettlementCLIWorkedExample(t *testing.T) {
	addr, certs, httpAddr := inProcessDev(t, "--settlement-safety-lag", "1s")
	conn := []string{"--addr", addr, "--certs-dir", certs}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clients := map[string]coalitionv1.PointsServiceClient{}
	for _, p := range []string{"acme-air", "bean-coffee", "city-fuel"} {
		c, err := dialPartner(addr, certs, p)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[p] = coalitionv1.NewPointsServiceClient(c)
	}
	steps := []func() error{
		func() error {
			_, err := clients["acme-air"].Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "we-1", MemberId: "WE-1", Points: 1000, Reference: "A-1"})
			return err
		},
		func() error {
			_, err := clients["bean-coffee"].Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "we-2", MemberId: "WE-1", Points: 500, Reference: "B-1"})
			return err
		},
		func() error {
			_, err := clients["city-fuel"].Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "we-3", MemberId: "WE-1", Points: 1200, Reference: "C-1"})
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	cutoff := time.Now().Add(time.Second).UTC().Truncate(time.Second).Format(time.RFC3339)
	out := settleWhenAllowed(t, conn, cutoff)
	if !strings.Contains(out, "run 1: period 1") || !strings.Contains(out, "operator revenue 5.80 EUR") {
		t.Errorf("settle output:\n%s\nwant run 1, period 1, operator revenue 5.80 EUR", out)
	}
	positions := mustCLI(t, append([]string{"report", "positions", "--run", "1"}, conn...)...)
	for _, want := range []string{"position,acme-air,10.00,0.00,-10.00", "position,bean-coffee,6.00,0.00,-6.00",
		"position,city-fuel,0.00,10.20,10.20", "payment,,,,,acme-air,clearing,10.00", "operator_revenue,,,,,,,5.80"} {
		if !strings.Contains(positions, want) {
			t.Errorf("positions lack %q:\n%s", want, positions)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "acme-air.csv")
	mustCLI(t, append([]string{"report", "statement", "--run", "1", "--partner", "acme-air", "--out", file}, conn...)...)
	// The model switches to bilateral for periods closed from now on; period 1 keeps hub.
	if out := mustCLI(t, append([]string{"settle", "model"}, conn...)...); !strings.Contains(out, "settlement model: hub") {
		t.Errorf("settle model: %q, want hub", out)
	}
	if out := mustCLI(t, append([]string{"settle", "model", "bilateral"}, conn...)...); !strings.Contains(out, "settlement model: bilateral (was hub)") {
		t.Errorf("settle model bilateral: %q", out)
	}
	if _, err := cli(t, append([]string{"settle", "model", "triangular"}, conn...)...); err == nil || !strings.Contains(err.Error(), `settlement model "triangular": want hub or bilateral`) {
		t.Errorf("settle model triangular: %v, want an error naming the model", err)
	}
	if _, err := cli(t, append([]string{"settle", "model", "hub", "--as", "operator"}, conn...)...); err == nil || !strings.Contains(err.Error(), "may not call") {
		t.Errorf("settle model as operator: %v, want refused", err)
	}
	mustCLI(t, append([]string{"settle", "--cutoff", cutoff}, conn...)...) // re-run of the closed period: run 2, still hub
	rerun := mustCLI(t, append([]string{"report", "statement", "--run", "2", "--partner", "acme-air"}, conn...)...)
	original, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if rerun != string(original) {
		t.Errorf("re-run statement differs:\nrun 1:\n%s\nrun 2:\n%s", original, rerun)
	}
	runs := mustCLI(t, append([]string{"report", "runs"}, conn...)...)
	lines := strings.Split(strings.TrimSpace(runs), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "run,period,previous_cutoff,cutoff,model,status") ||
		!strings.HasPrefix(lines[1], "2,1,") || !strings.Contains(lines[1], ",hub,published,EUR,3,0,5.80,") || !strings.HasPrefix(lines[2], "1,1,") {
		t.Errorf("report runs: want a header, run 2 then run 1 of period 1 (hub, published, 5.80):\n%s", runs)
	}
	mustCLI(t, append([]string{"report", "verify", "--run", "1", "--partner", "acme-air", file}, conn...)...)
	tampered := filepath.Join(dir, "tampered.csv")
	if err := os.WriteFile(tampered, bytes.Replace(original, []byte("-10.00"), []byte("-1.00"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, append([]string{"report", "verify", "--run", "1", "--partner", "acme-air", tampered}, conn...)...); err == nil {
		t.Errorf("a tampered statement verified, want a failure")
	}
	reconcile(t, conn, dir)
	scrapeMetrics(t, httpAddr)
}

// scrapeMetrics checks /metrics after the workload above (issue 8: a test scrapes them).
func scrapeMetrics(t *testing.T, httpAddr string) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`coalition_grpc_requests_total{code="OK",method="Award",partner="acme-air"} 1`,
		`coalition_grpc_requests_total{code="OK",method="RunSettlement",partner=""} 2`,
		`coalition_settlement_runs_total{result="published"} 2`,
		`coalition_settlement_run_duration_seconds_count 2`,
		`coalition_ledger_txn_retries_total`,
		`coalition_certificate_expiry_seconds{certificate="server"}`,
		`coalition_grpc_request_duration_seconds_bucket{method="Redeem"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// reconcile covers the four outcomes and a malformed file.
func reconcile(t *testing.T, conn []string, dir string) {
	t.Helper()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("reference,kind,member_id,points,occurred_at\nA-1,award,WE-1,ten,2026-01-01T00:00:00Z\nA-2,gift,WE-1,5,2026-01-01T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := cli(t, append([]string{"recon", "import", "--partner", "acme-air", "--run", "1", bad}, conn...)...)
	if err == nil || !strings.Contains(err.Error(), "2 malformed lines") {
		t.Errorf("malformed file: got %v, want 2 malformed lines refused", err)
	}
	good := filepath.Join(dir, "acme.csv")
	if err := os.WriteFile(good, []byte("reference,kind,member_id,points,occurred_at\nA-1,award,WE-1,1000,2026-01-01T00:00:00Z\nA-9,award,WE-9,70,2026-01-01T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, append([]string{"recon", "import", "--partner", "acme-air", "--run", "1", good}, conn...)...)
	report := mustCLI(t, append([]string{"report", "recon", "--run", "1", "--partner", "acme-air"}, conn...)...)
	for _, want := range []string{"matched,A-1,award,WE-1,1000,1000", "missing_here,A-9,award,WE-9,0,70"} {
		if !strings.Contains(report, want) {
			t.Errorf("recon report lacks %q:\n%s", want, report)
		}
	}
	city := filepath.Join(dir, "city.csv")
	if err := os.WriteFile(city, []byte("reference,kind,member_id,points,occurred_at\nC-1,redeem,WE-1,1100,2026-01-01T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, append([]string{"recon", "import", "--partner", "city-fuel", "--run", "1", city}, conn...)...)
	report = mustCLI(t, append([]string{"report", "recon", "--run", "1", "--partner", "city-fuel"}, conn...)...)
	if !strings.Contains(report, "points_mismatch,C-1,redeem,WE-1,1200,1100") {
		t.Errorf("recon report lacks the points mismatch:\n%s", report)
	}
	empty := filepath.Join(dir, "bean.csv")
	if err := os.WriteFile(empty, []byte("reference,kind,member_id,points,occurred_at\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, append([]string{"recon", "import", "--partner", "bean-coffee", "--run", "1", empty}, conn...)...)
	report = mustCLI(t, append([]string{"report", "recon", "--run", "1", "--partner", "bean-coffee"}, conn...)...)
	if !strings.Contains(report, "missing_at_partner,B-1,award,WE-1,500,0") {
		t.Errorf("recon report lacks the record missing at the partner:\n%s", report)
	}
}

// TestReconAdjustments: finance settles reconciliation exceptions with ledger items on the
// partners' behalf (coalition recon adjust), once per key, and they are priced by the next run.
func TestReconAdjustments(t *testing.T) {
	addr, certs, _ := inProcessDev(t, "--settlement-safety-lag", "1s")
	conn := []string{"--addr", addr, "--certs-dir", certs}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clients := map[string]coalitionv1.PointsServiceClient{}
	for _, p := range []string{"acme-air", "bean-coffee"} {
		c, err := dialPartner(addr, certs, p)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[p] = coalitionv1.NewPointsServiceClient(c)
	}
	if _, err := clients["acme-air"].Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "a1", MemberId: "M-ADJ", Points: 1000, Reference: "A-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := clients["bean-coffee"].Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "b1", MemberId: "M-ADJ", Points: 500, Reference: "B-1"}); err != nil {
		t.Fatal(err)
	}
	available := func() int64 {
		t.Helper()
		resp, err := clients["acme-air"].GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: "M-ADJ"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetBalance().GetAvailable()
	}
	awardArgs := append([]string{"recon", "adjust", "award", "--partner", "acme-air", "--key", "k1", "--reason", "missing here: A-2",
		"--member", "M-ADJ", "--points", "50", "--reference", "A-2"}, conn...)
	if out := mustCLI(t, awardArgs...); !strings.Contains(out, `award of 50 points for acme-air, member M-ADJ, reference "A-2"`) {
		t.Errorf("adjust award: %q", out)
	}
	if out := mustCLI(t, awardArgs...); !strings.Contains(out, "replayed") {
		t.Errorf("adjust award again with the same key: %q, want a replay", out)
	}
	if got := available(); got != 1550 {
		t.Errorf("available after the award adjustment (twice, one key): %d, want 1550", got)
	}
	out := mustCLI(t, append([]string{"recon", "adjust", "reverse", "--partner", "bean-coffee", "--key", "k2", "--reason", "not in their books",
		"--reference", "B-1", "--member", "M-ADJ", "--points", "100"}, conn...)...)
	if !strings.Contains(out, "reversal of 100 points for bean-coffee") {
		t.Errorf("adjust reverse: %q", out)
	}
	if got := available(); got != 1450 {
		t.Errorf("available after reversing 100: %d, want 1450", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"reverse", "--partner", "bean-coffee", "--key", "k3", "--reason", "r", "--reference", "B-1", "--member", "M-ADJ", "--transaction", "x"}, "reversal"},
		{[]string{"reverse", "--partner", "bean-coffee", "--key", "k3", "--reason", "r", "--reference", "B-9", "--member", "M-ADJ"}, "NotFound"},
		{[]string{"award", "--partner", "ghost-air", "--key", "k3", "--reason", "r", "--member", "M-ADJ", "--points", "5", "--reference", "G"}, "not registered"},
		{[]string{"award", "--partner", "acme-air", "--key", "k3", "--reason", "r", "--member", "M-ADJ", "--points", "5", "--reference", "G", "--as", "partner-acme-air"}, "may not call"},
	} {
		_, err := cli(t, append(append([]string{"recon", "adjust"}, tc.args...), conn...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("recon adjust %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	if got := available(); got != 1450 {
		t.Errorf("available after refused adjustments: %d, want still 1450", got)
	}
	// The run prices them: acme-air issued 1050 at 0.0100; bean-coffee pays 500 at 0.0120 and
	// gets 100 of them back.
	cutoff := time.Now().Add(time.Second).UTC().Truncate(time.Second).Format(time.RFC3339)
	settleWhenAllowed(t, append([]string{"--key", "nov-run"}, conn...), cutoff)
	// The same key again (a retry after a lost answer) returns run 1 instead of running again.
	if out := mustCLI(t, append([]string{"settle", "--cutoff", cutoff, "--key", "nov-run"}, conn...)...); !strings.Contains(out, `replayed: key "nov-run" made run 1`) {
		t.Errorf("settle with a used key: %q, want run 1 replayed", out)
	}
	if _, err := cli(t, append([]string{"report", "positions", "--run", "2"}, conn...)...); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("report of run 2: %v, want not found: the replay must not run again", err)
	}
	positions := mustCLI(t, append([]string{"report", "positions", "--run", "1"}, conn...)...)
	for _, want := range []string{"position,acme-air,10.50,0.00,-10.50", "position,bean-coffee,6.00,1.20,-4.80"} {
		if !strings.Contains(positions, want) {
			t.Errorf("positions lack %q:\n%s", want, positions)
		}
	}
}
