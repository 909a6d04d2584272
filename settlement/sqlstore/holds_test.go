package sqlstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

func TestAuthorizeCapturePartial(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 500))
	h := e.must(t, authorize(bean, "m-1", "h-1", 200))
	wantOutcomeBalance(t, h, 500, 200)
	if h.Hold == nil {
		t.Fatal("authorize outcome: got no hold, want one")
	}
	if got := h.Hold; got.Status != settlement.HoldOpen || got.Points != 200 || got.PartnerID != bean || got.MemberID != "m-1" {
		t.Errorf("hold: got %+v, want an open hold of 200 by %s for m-1", got, bean)
	}
	if want := t0.Add(settlement.DefaultHoldTTL); !h.Hold.ExpiresAt.Equal(want) {
		t.Errorf("hold expiry: got %s, want %s (default TTL 15m)", h.Hold.ExpiresAt, want)
	}
	if h.Transaction.Kind != settlement.KindAuthorize || h.Transaction.HoldID != h.Hold.ID {
		t.Errorf("authorize transaction: got %+v, want kind authorize with hold %s", h.Transaction, h.Hold.ID)
	}
	e.wantBalance(t, "m-1", 500, 200)
	e.fails(t, redeem(bean, "m-1", "r-1", 301), settlement.ErrInsufficientPoints)

	c := e.must(t, capture(bean, "c-1", h.Hold.ID, 150))
	wantOutcomeBalance(t, c, 350, 0)
	if got := c.Transaction; got.Kind != settlement.KindCapture || got.Points != 150 || got.HoldID != h.Hold.ID {
		t.Errorf("capture transaction: got %+v, want a capture of 150 on %s", got, h.Hold.ID)
	}
	if got := c.Hold; got == nil || got.Status != settlement.HoldCaptured || got.CapturedPoints != 150 {
		t.Errorf("capture hold: got %+v, want captured 150", got)
	}
	if status, captured := e.holdStatus(t, h.Hold.ID); status != settlement.HoldCaptured || captured != 150 {
		t.Errorf("stored hold: got %s/%d, want captured/150", status, captured)
	}
	if got := e.lineage(t, c.Transaction.ID); len(got) != 1 || got[0].Points != 150 {
		t.Errorf("capture lineage: got %+v, want 150 points from one lot", got)
	}
	e.wantBalance(t, "m-1", 350, 0)

	e.fails(t, capture(bean, "c-2", h.Hold.ID, 0), settlement.ErrHoldNotOpen)
	e.fails(t, void(bean, "v-1", h.Hold.ID), settlement.ErrHoldNotOpen)

	// A capture is reversible like a redemption.
	e.must(t, reverse(bean, "rev-1", c.Transaction.ID, 0))
	e.wantBalance(t, "m-1", 500, 0)
}

func TestCaptureAllByDefault(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 100))
	h := e.must(t, authorize(bean, "m-1", "h-1", 60))
	c := e.must(t, capture(bean, "c-1", h.Hold.ID, 0))
	if c.Transaction.Points != 60 {
		t.Errorf("capture points: got %d, want 60 (the whole hold)", c.Transaction.Points)
	}
	wantOutcomeBalance(t, c, 40, 0)
}

func TestCaptureRefusals(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 500))
	h := e.must(t, authorize(bean, "m-1", "h-1", 100))

	e.fails(t, capture(bean, "c-1", h.Hold.ID, 101), settlement.ErrCaptureExceedsHold)
	e.fails(t, capture(acme, "c-2", h.Hold.ID, 0), settlement.ErrHoldNotFound)
	e.fails(t, void(acme, "v-1", h.Hold.ID), settlement.ErrHoldNotFound)
	e.fails(t, capture(bean, "c-3", "00000000-0000-4000-8000-000000000000", 0), settlement.ErrHoldNotFound)
	e.wantBalance(t, "m-1", 500, 100)

	e.must(t, void(bean, "v-2", h.Hold.ID))
	e.wantBalance(t, "m-1", 500, 0)
	if status, _ := e.holdStatus(t, h.Hold.ID); status != settlement.HoldVoided {
		t.Errorf("hold status: got %s, want voided", status)
	}
	e.fails(t, capture(bean, "c-4", h.Hold.ID, 0), settlement.ErrHoldNotOpen)
	e.fails(t, void(bean, "v-3", h.Hold.ID), settlement.ErrHoldNotOpen)
}

func TestCaptureAfterExpiry(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 100))
	cmd := authorize(bean, "m-1", "h-1", 100)
	cmd.HoldTTL = time.Minute
	h := e.must(t, cmd)
	if want := t0.Add(time.Minute); !h.Hold.ExpiresAt.Equal(want) {
		t.Errorf("hold expiry: got %s, want %s", h.Hold.ExpiresAt, want)
	}
	e.clock.Advance(time.Minute - time.Second)
	e.fails(t, redeem(bean, "m-1", "r-1", 1), settlement.ErrInsufficientPoints)
	e.clock.Advance(time.Second) // expires_at is exclusive
	e.fails(t, capture(bean, "c-1", h.Hold.ID, 0), settlement.ErrHoldNotOpen)
	e.fails(t, void(bean, "v-1", h.Hold.ID), settlement.ErrHoldNotOpen)
	e.wantBalance(t, "m-1", 100, 100) // not released until a sweep or a debit needs it
}

func TestSweepReleasesExpiredHolds(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 300))
	expiring := make([]string, 0, 3)
	for _, key := range []string{"h-1", "h-2", "h-3"} {
		expiring = append(expiring, e.must(t, authorize(bean, "m-1", key, 50)).Hold.ID)
	}
	long := authorize(bean, "m-1", "h-long", 50)
	long.HoldTTL = time.Hour
	kept := e.must(t, long).Hold.ID

	if n, err := e.ledger.SweepHolds(ctxFor(t), 2); err != nil || n != 0 {
		t.Fatalf("SweepHolds before expiry: got %d, %v; want 0, nil", n, err)
	}
	e.clock.Advance(settlement.DefaultHoldTTL)
	n, err := e.ledger.SweepHolds(ctxFor(t), 2)
	if err != nil || n != 3 {
		t.Fatalf("SweepHolds: got %d, %v; want 3, nil", n, err)
	}
	for _, id := range expiring {
		if status, _ := e.holdStatus(t, id); status != settlement.HoldExpired {
			t.Errorf("hold %s: got %s, want expired", id, status)
		}
	}
	if status, _ := e.holdStatus(t, kept); status != settlement.HoldOpen {
		t.Errorf("hold %s: got %s, want open", kept, status)
	}
	e.wantBalance(t, "m-1", 300, 50)
	if got := e.queryInt(t, `SELECT count(*) FROM transactions WHERE kind = 'release' AND partner_id = $1`, bean); got != 3 {
		t.Errorf("release transactions: got %d, want 3", got)
	}
	e.fails(t, capture(bean, "c-1", expiring[0], 0), settlement.ErrHoldNotOpen)
	if n, err := e.ledger.SweepHolds(ctxFor(t), 2); err != nil || n != 0 {
		t.Errorf("second SweepHolds: got %d, %v; want 0, nil", n, err)
	}
}

// TestExpiredHoldDoesNotBlockRedeem: a debit that finds too little available releases the
// member's expired holds itself rather than wait for the sweeper.
func TestExpiredHoldDoesNotBlockRedeem(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 100))
	h := e.must(t, authorize(bean, "m-1", "h-1", 100))
	e.fails(t, redeem(acme, "m-1", "r-1", 100), settlement.ErrInsufficientPoints)
	e.clock.Advance(settlement.DefaultHoldTTL)

	r := e.must(t, redeem(acme, "m-1", "r-2", 100))
	wantOutcomeBalance(t, r, 0, 0)
	if status, _ := e.holdStatus(t, h.Hold.ID); status != settlement.HoldExpired {
		t.Errorf("hold: got %s, want expired", status)
	}
	e.fails(t, capture(bean, "c-1", h.Hold.ID, 0), settlement.ErrHoldNotOpen)
	if n, err := e.ledger.SweepHolds(ctxFor(t), 10); err != nil || n != 0 {
		t.Errorf("SweepHolds: got %d, %v; want 0, nil (already released)", n, err)
	}
	e.wantBalance(t, "m-1", 0, 0)
}

func TestExpiredHoldDoesNotBlockAuthorize(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 100))
	e.must(t, authorize(bean, "m-1", "h-1", 70))
	e.clock.Advance(settlement.DefaultHoldTTL + time.Second)
	h := e.must(t, authorize(bean, "m-1", "h-2", 80))
	wantOutcomeBalance(t, h, 100, 80)
}

// TestReverseAwardUnderAHold: reversing an award whose points are held (not spent) takes the
// available balance below zero without debt; the hold can no longer be captured in full.
func TestReverseAwardUnderAHold(t *testing.T) {
	e := newEnv(t, envConfig{})
	a := e.must(t, award(acme, "m-1", "a-1", 100))
	h := e.must(t, authorize(bean, "m-1", "h-1", 100))
	out := e.must(t, reverse(acme, "rev-1", a.Transaction.ID, 0))
	wantOutcomeBalance(t, out, 0, 100)
	e.verify(t)
	e.fails(t, capture(bean, "c-1", h.Hold.ID, 0), settlement.ErrInsufficientPoints)
	e.fails(t, redeem(bean, "m-1", "r-1", 1), settlement.ErrInsufficientPoints)
	e.must(t, void(bean, "v-1", h.Hold.ID))
	e.wantBalance(t, "m-1", 0, 0)
}

// TestConcurrentSweepersCountEachHoldOnce: sweepers racing on the same expired holds release
// each once and, between them, report each once.
func TestConcurrentSweepersCountEachHoldOnce(t *testing.T) {
	e := newEnv(t, envConfig{maxConns: 16})
	const holds, sweepers = 20, 4
	e.must(t, award(acme, "m-1", "a-1", holds*10))
	for i := range holds {
		e.must(t, authorize(bean, "m-1", fmt.Sprintf("h-%d", i), 10))
	}
	e.clock.Advance(settlement.DefaultHoldTTL)
	ctx := ctxFor(t)
	released := make([]int, sweepers)
	errs := make([]error, sweepers)
	concurrently(sweepers, func(i int) {
		released[i], errs[i] = e.store.ReleaseExpiredHolds(ctx, e.clock.Now(), 100)
	})
	total := 0
	for i := range sweepers {
		if errs[i] != nil {
			t.Errorf("sweeper %d: %v", i, errs[i])
		}
		total += released[i]
	}
	if total != holds {
		t.Errorf("released in all: got %d %v, want %d", total, released, holds)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM transactions WHERE kind = 'release'`); n != holds {
		t.Errorf("release transactions: got %d, want %d", n, holds)
	}
	e.wantBalance(t, "m-1", holds*10, 0)
}
