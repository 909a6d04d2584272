package sqlstore_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// Two replicas (two Stores on one database): while one run is in progress, the other is
// refused with ErrRunInProgress; once it ends, the other may run.
func TestSettlementLeaseOneRunAtATime(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	e.workedExample(t, "M-1")
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	other := newStore(t, e.pool, 0, sqlstore.RunnerConfig{})
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := e.store.Settle(ctxFor(t), settlement.SettleConfig{Cutoff: cutoff, Now: e.clock.Now(), SafetyLag: time.Minute, Holder: "replica-a",
			Progress: func(step string) {
				if step == "closing the period" {
					close(inside)
					<-release
				}
			}})
		done <- err
	}()
	<-inside
	_, err := other.Settle(ctxFor(t), settlement.SettleConfig{Cutoff: cutoff, Now: e.clock.Now(), SafetyLag: time.Minute, Holder: "replica-b"})
	if !errors.Is(err, settlement.ErrRunInProgress) {
		t.Errorf("second replica during a run: got %v, want ErrRunInProgress", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first replica: %v", err)
	}
	if _, err := other.Settle(ctxFor(t), settlement.SettleConfig{Cutoff: cutoff, Now: e.clock.Now(), SafetyLag: time.Minute, Holder: "replica-b"}); err != nil {
		t.Errorf("second replica after the run: %v", err)
	}
}

// A run that outlasts its lease's TTL keeps the lease (renewed every third of the TTL): another
// replica later than the original expiry is still refused. A run whose lease another replica
// took anyway stops and stores nothing.
func TestSettlementLeaseRenewedAndFenced(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	e.workedExample(t, "M-1")
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	other := newStore(t, e.pool, 0, sqlstore.RunnerConfig{})
	const ttl = 600 * time.Millisecond
	runs := func() int {
		var n int
		if err := e.pool.QueryRow(ctxFor(t), `SELECT count(*) FROM settlement_runs`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// hold runs replica-a's run, stopping inside it (at "pricing") while during() runs.
	hold := func(during func()) error {
		_, err := e.store.Settle(ctxFor(t), settlement.SettleConfig{Cutoff: cutoff, Now: e.clock.Now(), SafetyLag: time.Minute,
			Holder: "replica-a", LeaseTTL: ttl,
			Progress: func(step string) {
				if strings.HasPrefix(step, "pricing") {
					during()
				}
			}})
		return err
	}

	// Renewed: 3 TTLs into the run, a replica whose clock is 2 TTLs past the start is refused.
	err := hold(func() {
		time.Sleep(3 * ttl)
		_, err := other.Settle(ctxFor(t), settlement.SettleConfig{Cutoff: cutoff, Now: e.clock.Now().Add(2 * ttl), SafetyLag: time.Minute,
			Holder: "replica-b", LeaseTTL: ttl})
		if !errors.Is(err, settlement.ErrRunInProgress) {
			t.Errorf("another replica 2 TTLs into a renewed run: got %v, want ErrRunInProgress", err)
		}
	})
	if err != nil {
		t.Fatalf("the renewed run: %v", err)
	}
	if n := runs(); n != 1 {
		t.Fatalf("runs after the renewed run: %d, want 1", n)
	}

	// Fenced: the lease is taken from replica-a mid-run (as by a replica that saw it expire).
	err = hold(func() {
		if _, err := e.pool.Exec(ctxFor(t), `UPDATE settlement_lease SET holder = 'replica-b' WHERE name = 'settlement'`); err != nil {
			t.Fatal(err)
		}
	})
	if !errors.Is(err, settlement.ErrRunInProgress) || !strings.Contains(err.Error(), "took the settlement lease") {
		t.Errorf("a run whose lease was taken: got %v, want ErrRunInProgress (lease taken)", err)
	}
	if n := runs(); n != 1 {
		t.Errorf("runs after the fenced run: %d, want still 1", n)
	}
}
