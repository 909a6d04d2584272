package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/partners/partnersim"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// startSimOnDevCA serves a partner-sim with a certificate from the dev CA in certsDir.
func startSimOnDevCA(t *testing.T, certsDir, partnerID string, cfg partnersim.Config) (*partnersim.Sim, string) {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(certsDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(certsDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := devca.Load(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := partnersim.ServerTLS(ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg.PartnerID = partnerID
	sim, err := partnersim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := sim.NewServer(tlsCfg)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return sim, lis.Addr().String()
}

// TestOutboxSurvivesSIGKILL: 1,000 events produced while acme-air is down reach it after it
// comes back; a `coalition dev` killed with SIGKILL in the middle of dispatch and started
// again on the same data loses none, and acme-air applies none twice, in order per member.
func TestOutboxSurvivesSIGKILL(t *testing.T) {
	requirePostgres(t)
	for k, v := range map[string]string{"COALITION_PARTNER_BREAKER_OPEN_TIMEOUT": "300ms", "COALITION_OUTBOX_POLL_INTERVAL": "50ms",
		"COALITION_OUTBOX_BACKOFF_MAX": "300ms", "COALITION_OUTBOX_MAX_ATTEMPTS": "10000", "COALITION_OUTBOX_LEASE_TTL": "2s"} {
		t.Setenv(k, v)
	}
	bin := buildBinary(t)
	base := unprivilegedTempDir(t, "coalition-outboxtest-*")
	dataDir := filepath.Join(base, "data")
	first := startDev(t, bin, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sim, simAddr := startSimOnDevCA(t, first.certsDir, "acme-air", partnersim.Config{FailRate: 1, Latency: 150 * time.Millisecond})
	ops := clientOptions{addr: first.grpcAddr, certsDir: first.certsDir, as: "operator"}
	conn, err := ops.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = coalitionv1.NewAdminServiceClient(conn).ConfigurePartnerEndpoint(ctx, &coalitionv1.ConfigurePartnerEndpointRequest{
		Endpoint: &coalitionv1.PartnerEndpoint{PartnerId: "acme-air", Endpoint: simAddr, Events: []string{"points.awarded_elsewhere"}}})
	if err != nil {
		t.Fatalf("configure acme-air: %v", err)
	}

	const members, perMember = 20, 50
	bean := first.client(t, "bean-coffee")
	var wg sync.WaitGroup
	for m := range members {
		wg.Go(func() {
			member := fmt.Sprintf("OBK-%d", m)
			for j := range perMember {
				req := &coalitionv1.AwardRequest{IdempotencyKey: fmt.Sprintf("%s-%d", member, j), MemberId: member, Points: int64(j + 1)}
				if err := awardRetrying(ctx, bean, req); err != nil {
					t.Errorf("award %s #%d: %v", member, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(sim.Applied()); n != 0 {
		t.Fatalf("applied while the partner was down: %d", n)
	}
	sim.SetFailRate(0)
	waitApplied(t, sim, 200, time.Minute)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	atKill := len(sim.Applied())
	t.Logf("SIGKILL with %d of %d events applied", atKill, members*perMember)

	second := startDev(t, bin, dataDir)
	waitApplied(t, sim, members*perMember, 2*time.Minute)
	applied := sim.Applied()
	t.Logf("after restart: %d events applied, %d redeliveries refused as duplicates", len(applied), sim.Redeliveries())
	seen, last := map[string]bool{}, map[string]int64{}
	for _, e := range applied {
		if seen[e.ID] {
			t.Errorf("event %s applied twice", e.ID)
		}
		seen[e.ID] = true
		if e.Points != last[e.MemberID]+1 {
			t.Errorf("member %s: award of %d points applied after %d: out of order", e.MemberID, e.Points, last[e.MemberID])
		}
		last[e.MemberID] = e.Points
	}
	if len(seen) != members*perMember {
		t.Errorf("distinct events applied: %d, want %d", len(seen), members*perMember)
	}
	_ = second.cmd.Process.Signal(syscall.SIGTERM)
	if err := second.cmd.Wait(); err != nil {
		t.Errorf("coalition dev after SIGTERM: %v, want a clean exit", err)
	}
}

// awardRetrying retries ABORTED answers with the same key, as the API tells clients to.
func awardRetrying(ctx context.Context, c coalitionv1.PointsServiceClient, req *coalitionv1.AwardRequest) error {
	var err error
	for range 10 {
		if _, err = c.Award(ctx, req); status.Code(err) != codes.Aborted {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// waitApplied polls until sim applied at least n events, failing after bound.
func waitApplied(t *testing.T, sim *partnersim.Sim, n int, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for len(sim.Applied()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("partner applied %d events within %s, want %d", len(sim.Applied()), bound, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
