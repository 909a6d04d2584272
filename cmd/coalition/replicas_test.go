package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/localpg"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type replica struct {
	cmd        *exec.Cmd
	grpc, http string
	exited     chan error
}

// startServe runs `coalition serve` on url with the dev certificates and waits for /readyz.
func startServe(t *testing.T, bin, url, certs string) *replica {
	t.Helper()
	r := &replica{grpc: freeAddr(t), http: freeAddr(t), exited: make(chan error, 1)}
	r.cmd = exec.Command(bin, "serve", "--database-url", url, "--grpc-addr", r.grpc, "--http-addr", r.http,
		"--tls-cert", filepath.Join(certs, "gateway.crt"), "--tls-key", filepath.Join(certs, "gateway.key"),
		"--tls-client-ca", filepath.Join(certs, "ca.crt"), "--settlement-safety-lag", "1s", "--shutdown-timeout", "15s", "--log-format", "text")
	log, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + r.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		select {
		case err := <-r.exited:
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("serve exited before ready: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("serve not ready in 30s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond) // polling readiness with a bound
	}
}

// dialBoth connects to both replicas with round-robin balancing, as a partner would through a
// load balancer.
func dialBoth(t *testing.T, certs, identity string, addrs ...string) *grpc.ClientConn {
	t.Helper()
	cfg, err := tlsconfig.LoadClient(certs, identity, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	res := manual.NewBuilderWithScheme("replicas")
	var state resolver.State
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	res.InitialState(state)
	conn, err := grpc.NewClient("replicas:///gateway", grpc.WithResolvers(res),
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestTwoReplicas: two `coalition serve` on one database both serve traffic; only one
// settlement run holds the lease at a time; SIGTERM drains one with zero failed calls.
func TestTwoReplicas(t *testing.T) {
	requirePostgres(t)
	bin := buildBinary(t)
	base := unprivilegedTempDir(t, "coalition-replicas-*")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db, err := localpg.Start(ctx, localpg.Config{Dir: filepath.Join(base, "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Stop(context.Background()) })
	if err := db.CreateDatabase(ctx, "coalition"); err != nil {
		t.Fatal(err)
	}
	url := db.URL("coalition")
	certs := filepath.Join(base, "certs")
	if _, err := devca.EnsureDir(certs, devIdentities(), time.Now()); err != nil {
		t.Fatal(err)
	}
	pool, err := sqlstore.Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := sqlstore.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := seedDemo(ctx, store); err != nil {
		t.Fatal(err)
	}
	a, b := startServe(t, bin, url, certs), startServe(t, bin, url, certs)

	// Both serve traffic.
	for i, r := range []*replica{a, b} {
		conn := dialBoth(t, certs, "partner-acme-air", r.grpc)
		_, err := coalitionv1.NewPointsServiceClient(conn).Award(ctx, &coalitionv1.AwardRequest{
			IdempotencyKey: fmt.Sprintf("replica-%d", i), MemberId: "R-1", Points: 100})
		if err != nil {
			t.Fatalf("award through replica %d: %v", i, err)
		}
	}

	// Settlement: while another run holds the lease, neither replica runs; then one does.
	if _, err := pool.Exec(ctx, `INSERT INTO settlement_lease (name, holder, expires_at) VALUES ('settlement', 'elsewhere', now() + interval '1 minute')`); err != nil {
		t.Fatal(err)
	}
	cutoff := timestamppb.New(time.Now().Add(-2 * time.Second))
	for _, r := range []*replica{a, b} {
		conn := dialBoth(t, certs, "finance", r.grpc)
		_, err := coalitionv1.NewSettlementServiceClient(conn).RunSettlement(ctx, &coalitionv1.RunSettlementRequest{Cutoff: cutoff})
		if status.Code(err) != codes.Aborted || gateway.ReasonOf(err) != "RUN_IN_PROGRESS" {
			t.Fatalf("settle on %s while the lease is held: got %v, want ABORTED RUN_IN_PROGRESS", r.grpc, err)
		}
	}
	if _, err := pool.Exec(ctx, `DELETE FROM settlement_lease`); err != nil {
		t.Fatal(err)
	}
	fin := coalitionv1.NewSettlementServiceClient(dialBoth(t, certs, "finance", b.grpc))
	run, err := fin.RunSettlement(ctx, &coalitionv1.RunSettlementRequest{Cutoff: cutoff})
	if err != nil || run.GetRun().GetStatus() != coalitionv1.RunStatus_RUN_STATUS_PUBLISHED {
		t.Fatalf("settle after the lease is free: %v %v", run.GetRun(), err)
	}

	drainWithoutFailures(t, ctx, certs, a, b)
}

// drainWithoutFailures keeps 8 clients calling both replicas and SIGTERMs one of them.
func drainWithoutFailures(t *testing.T, ctx context.Context, certs string, a, b *replica) {
	t.Helper()
	client := coalitionv1.NewPointsServiceClient(dialBoth(t, certs, "partner-acme-air", a.grpc, b.grpc))
	stop := make(chan struct{})
	var calls, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := client.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: fmt.Sprintf("drain-%d-%d", w, i), MemberId: fmt.Sprintf("D-%d", w), Points: 1})
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for calls.Load() < 200 {
		time.Sleep(10 * time.Millisecond) // let traffic reach both replicas; bounded by the test context
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.exited:
		if err != nil {
			t.Errorf("replica after SIGTERM: %v, want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("replica did not exit within 30s of SIGTERM")
	}
	before := calls.Load()
	for calls.Load() < before+200 {
		time.Sleep(10 * time.Millisecond) // traffic continues on the other replica
	}
	close(stop)
	wg.Wait()
	t.Logf("drain: %d calls, %d failed", calls.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d calls failed during the drain (first: %v), want 0", failed.Load(), calls.Load(), firstErr.Load())
	}
}
