package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/localpg"
)

// requirePostgres fails in CI and skips elsewhere when no PostgreSQL is installed.
func requirePostgres(t *testing.T) {
	t.Helper()
	if _, err := localpg.FindPostgresBin(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs PostgreSQL: %v", err)
		}
		t.Skipf("no PostgreSQL (make test installs it): %v", err)
	}
}

// buildBinary compiles the coalition command once for this test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "coalition")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// devProcess is a running `coalition dev`.
type devProcess struct {
	cmd      *exec.Cmd
	grpcAddr string
	certsDir string
	stdout   *strings.Builder
}

var readyAddr = regexp.MustCompile(`gRPC \(mTLS\)\s+(\S+)`)

// startDev runs `coalition dev` on dataDir with ephemeral ports and waits for its ready line.
func startDev(t *testing.T, bin, dataDir string) *devProcess {
	t.Helper()
	cmd := exec.Command(bin, "dev", "--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "text")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProcess{cmd: cmd, certsDir: filepath.Join(dataDir, "certs"), stdout: &strings.Builder{}}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found, exited := make(chan string, 1), make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := readyAddr.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case p.grpcAddr = <-found:
	case <-exited:
		log, _ := os.ReadFile(logFile.Name())
		t.Fatalf("coalition dev exited before it was ready; log:\n%s", log)
	case <-time.After(90 * time.Second):
		log, _ := os.ReadFile(logFile.Name())
		t.Fatalf("coalition dev did not become ready in 90s; log:\n%s", log)
	}
	return p
}

func (p *devProcess) client(t *testing.T, partner string) coalitionv1.PointsServiceClient {
	t.Helper()
	conn, err := dialPartner(p.grpcAddr, p.certsDir, partner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return coalitionv1.NewPointsServiceClient(conn)
}

// TestDevSurvivesSIGKILL: killing `coalition dev` with SIGKILL and starting it again on the
// same --data-dir loses no committed transaction and keeps every balance.
func TestDevSurvivesSIGKILL(t *testing.T) {
	requirePostgres(t)
	bin := buildBinary(t)
	base := unprivilegedTempDir(t, "coalition-devtest-*")
	dataDir := filepath.Join(base, "data")

	first := startDev(t, bin, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	air, bean := first.client(t, "acme-air"), first.client(t, "bean-coffee")
	const members = 20
	want := map[string]int64{}
	txnIDs := map[string]string{}
	for i := range members {
		m := fmt.Sprintf("KILL-%d", i)
		a, err := air.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "award-" + m, MemberId: m, Points: int64(100 + i)})
		if err != nil {
			t.Fatalf("award %s: %v", m, err)
		}
		r, err := bean.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "redeem-" + m, MemberId: m, Points: int64(i + 1)})
		if err != nil {
			t.Fatalf("redeem %s: %v", m, err)
		}
		want[m] = r.GetBalance().GetAvailable()
		txnIDs[m] = a.GetTransaction().GetId()
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	second := startDev(t, bin, dataDir)
	air2, bean2 := second.client(t, "acme-air"), second.client(t, "bean-coffee")
	for m, avail := range want {
		b, err := bean2.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: m})
		if err != nil {
			t.Fatalf("balance %s after restart: %v", m, err)
		}
		if got := b.GetBalance().GetAvailable(); got != avail {
			t.Errorf("balance %s after SIGKILL and restart: got %d, want %d", m, got, avail)
		}
		// The committed award is still recorded under its key: a retry replays it.
		i := strings.TrimPrefix(m, "KILL-")
		var n int64
		fmt.Sscan(i, &n)
		replay, err := air2.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "award-" + m, MemberId: m, Points: 100 + n})
		if err != nil || !replay.GetReplayed() || replay.GetTransaction().GetId() != txnIDs[m] {
			t.Errorf("award %s replay after restart: got %v %v, want replayed transaction %s", m, replay.GetTransaction(), err, txnIDs[m])
		}
	}
	_ = second.cmd.Process.Signal(syscall.SIGTERM)
	if err := second.cmd.Wait(); err != nil {
		t.Errorf("coalition dev after SIGTERM: %v, want a clean exit", err)
	}
}

// TestDevTour runs `coalition dev --ephemeral --tour --exit-after-tour`, as `make demo` does.
func TestDevTour(t *testing.T) {
	requirePostgres(t)
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, []string{"dev", "--ephemeral", "--partner-sims", "--tour", "--exit-after-tour", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
		func(string) string { return "" }, &out, io.Discard)
	if err != nil {
		t.Fatalf("dev --tour: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Tour passed.") {
		t.Errorf("output lacks 'Tour passed.':\n%s", out.String())
	}
}

// TestEnvSetsFlags: COALITION_<FLAG> sets a flag the command line did not.
func TestEnvSetsFlags(t *testing.T) {
	var out strings.Builder
	env := map[string]string{}
	err := run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("migrate without a URL: got %v, want an error naming --database-url", err)
	}
	env["COALITION_DATABASE_URL"] = "postgres://127.0.0.1:1/none?connect_timeout=1"
	err = run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, &out, io.Discard)
	if err == nil || strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("migrate with COALITION_DATABASE_URL: got %v, want a connection error", err)
	}
}
