package sqlstore_test

import (
	"errors"
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
