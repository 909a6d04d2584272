package vault_test

import (
	"context"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault/vaulttest"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// load keeps calling Award over one long-lived connection until stopped.
type load struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(client coalitionv1.PointsServiceClient) *load {
	l := &load{stop: make(chan struct{})}
	l.wg.Go(func() {
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			if _, err := award(client); err != nil {
				l.failed.Add(1)
				l.firstErr.CompareAndSwap(nil, err)
				continue
			}
			l.ok.Add(1)
		}
	})
	return l
}

func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d calls on the long-lived connection failed; first: %v", n, l.firstErr.Load())
	}
}

// awaitCalls waits until the load has made n more successful calls.
func (l *load) awaitCalls(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	vaulttest.Eventually(t, func() bool { return l.ok.Load() >= target || l.failed.Load() > 0 }, "%d more calls", n)
}

// TestRotationKeepsCallsFlowing: a 1h server certificate is re-issued at 2/3
// of its life, three times, while a client keeps calling over one
// long-lived connection and new clients connect: no call fails, the
// long-lived connection does one handshake, and every new handshake
// presents the newest serial.
func TestRotationKeepsCallsFlowing(t *testing.T) {
	s := startStack(t)
	first := s.certs.Leaf()
	// The gateway checks client certificates at real time, so they are all
	// issued before the fake clock moves.
	cert := s.partnerCert(t, acmeAir)
	var longLived handshakes
	l := startLoad(s.dial(t, cert, &longLived))
	l.awaitCalls(t, 5)

	seen := map[string]bool{first.SerialNumber.String(): true}
	for i := range 3 {
		leaf := s.certs.Leaf()
		due := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
		s.clock.AwaitWaiters(t, 1)
		s.clock.Advance(due.Sub(s.clock.Now()) - time.Second)
		if got := s.certs.Leaf(); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Fatalf("rotation %d: re-issued before 2/3 of the life", i+1)
		}
		s.clock.AwaitWaiters(t, 1)
		s.clock.Advance(time.Second)
		var next *x509.Certificate
		select {
		case next = <-s.rotated:
		case <-time.After(10 * time.Second):
			t.Fatalf("rotation %d: no new certificate", i+1)
		}
		if seen[next.SerialNumber.String()] || !next.NotAfter.After(leaf.NotAfter) {
			t.Fatalf("rotation %d: got serial %v (not after %v), want a new, later certificate", i+1, next.SerialNumber, next.NotAfter)
		}
		seen[next.SerialNumber.String()] = true

		var fresh handshakes
		if _, err := award(s.dial(t, cert, &fresh)); err != nil {
			t.Fatalf("rotation %d: call on a new connection: %v", i+1, err)
		}
		if got := fresh.all(); len(got) != 1 || got[0] != next.SerialNumber.String() {
			t.Errorf("rotation %d: new handshake saw serials %v, want [%v]", i+1, got, next.SerialNumber)
		}
		l.awaitCalls(t, 5) // the old connection keeps working
	}
	l.finish(t)
	if got := longLived.all(); len(got) != 1 || got[0] != first.SerialNumber.String() {
		t.Errorf("long-lived connection handshakes: got %v, want one with the first serial %v", got, first.SerialNumber)
	}
	if l.ok.Load() < 20 {
		t.Errorf("got %d calls on the long-lived connection, want at least 20", l.ok.Load())
	}
}

// TestVaultOutageShorterThanCertificateLife: Vault goes down just before the
// certificate is due; rotation attempts fail and back off while the
// certificate in use keeps serving old and new connections and readiness
// holds; once Vault is back, the next attempt rotates. No partner call fails.
// An outage longer than the remaining life then turns readiness false.
func TestVaultOutageShorterThanCertificateLife(t *testing.T) {
	s := startStack(t)
	cert := s.partnerCert(t, acmeAir) // before the fake clock moves
	var longLived handshakes
	l := startLoad(s.dial(t, cert, &longLived))
	l.awaitCalls(t, 5)

	first := s.certs.Leaf()
	s.vault.SetDown(true)
	issuesBefore := s.vault.Count("issue")
	for range 6 { // past 2/3 of the life, then five failed attempts, 2m apart at most
		s.clock.AwaitWaiters(t, 1)
		s.clock.Advance(nextWait(s))
		l.awaitCalls(t, 2)
		if _, err := award(s.dial(t, cert, &handshakes{})); err != nil {
			t.Fatalf("during the outage, a new connection failed: %v", err)
		}
		if err := s.certs.Ready(context.Background()); err != nil {
			t.Fatalf("during a short outage, not ready: %v", err)
		}
	}
	if got := s.certs.Leaf(); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("certificate changed while Vault was down")
	}
	if s.client.Status().FailingSince.IsZero() {
		t.Errorf("client does not report the outage")
	}

	s.vault.SetDown(false)
	s.clock.AwaitWaiters(t, 1)
	s.clock.Advance(2 * time.Minute) // the max backoff
	select {
	case <-s.rotated:
	case <-time.After(10 * time.Second):
		t.Fatal("no rotation once Vault was back")
	}
	if s.vault.Count("issue") != issuesBefore+1 {
		t.Errorf("got %d issues, want one more", s.vault.Count("issue")-issuesBefore)
	}
	l.awaitCalls(t, 5)
	l.finish(t)

	// A long outage: once less than a sixth of the life is left, not ready.
	s.vault.SetDown(true)
	leaf := s.certs.Leaf()
	for s.clock.Now().Before(leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 6)) {
		s.clock.AwaitWaiters(t, 1)
		s.clock.Advance(nextWait(s))
	}
	if err := s.certs.Ready(context.Background()); err == nil {
		t.Errorf("ready with %v left and Vault down since %v", leaf.NotAfter.Sub(s.clock.Now()), s.client.Status().FailingSince)
	}
}

// nextWait is how far to advance so that CertSource's pending wait (at most
// the 2m max backoff, or until 2/3 of the life) fires.
func nextWait(s *stack) time.Duration {
	leaf := s.certs.Leaf()
	due := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
	if d := due.Sub(s.clock.Now()); d > 0 {
		return d
	}
	return 2 * time.Minute
}
