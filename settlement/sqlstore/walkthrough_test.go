package sqlstore_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

// TestWalkThrough is the tour: award, redeem, replay, reuse, refusal, foreign reversal.
func TestWalkThrough(t *testing.T) {
	e := newEnv(t, envConfig{})
	const member = "m-walk"

	if _, err := e.ledger.Balance(ctxFor(t), member); !errors.Is(err, settlement.ErrMemberNotFound) {
		t.Fatalf("Balance of a new member: got %v, want ErrMemberNotFound", err)
	}
	awarded := e.must(t, award(acme, member, "award-1", 500))
	wantOutcomeBalance(t, awarded, 500, 0)
	if got := awarded.Balance.Available(); got != 500 {
		t.Errorf("available after award: got %d, want 500", got)
	}
	if got := awarded.Transaction; got.Kind != settlement.KindAward || got.Points != 500 || got.PartnerID != acme {
		t.Errorf("award transaction: got %+v, want an award of 500 by %s", got, acme)
	}
	e.wantBalance(t, member, 500, 0)

	redeemCmd := redeem(bean, member, "redeem-1", 200)
	redeemed := e.must(t, redeemCmd)
	wantOutcomeBalance(t, redeemed, 300, 0)
	e.wantBalance(t, member, 300, 0)

	replay, err := e.apply(t, redeemCmd)
	if err != nil {
		t.Fatalf("replay of redeem-1: %v", err)
	}
	if !replay.Replayed {
		t.Error("replay of redeem-1: got Replayed false, want true")
	}
	if got, want := replay.Transaction.ID, redeemed.Transaction.ID; got != want {
		t.Errorf("replay transaction id: got %s, want %s", got, want)
	}
	if !replay.Transaction.CreatedAt.Equal(redeemed.Transaction.CreatedAt) || replay.Balance != redeemed.Balance {
		t.Errorf("replay: got %+v, want the original %+v", replay, redeemed)
	}
	e.wantBalance(t, member, 300, 0)

	changed := redeemCmd
	changed.Points = 201
	e.fails(t, changed, settlement.ErrIdempotencyKeyReused)

	before := e.rowCounts(t)
	tooMuch := redeem(bean, member, "redeem-2", 301)
	refusal := e.fails(t, tooMuch, settlement.ErrInsufficientPoints)
	if !settlement.IsRecorded(refusal) {
		t.Errorf("INSUFFICIENT_POINTS: got IsRecorded false, want true")
	}
	if after := e.rowCounts(t); !maps.Equal(after, before) {
		t.Errorf("row counts after a refused redemption: got %v, want %v", after, before)
	}
	e.wantBalance(t, member, 300, 0)

	// The refusal is recorded: even once the member could afford it, a retry gets the same answer.
	e.must(t, award(acme, member, "award-2", 1))
	again := e.fails(t, tooMuch, settlement.ErrInsufficientPoints)
	var replayed *settlement.ReplayedError
	if !errors.As(again, &replayed) {
		t.Errorf("retry of redeem-2: got %T %v, want a *ReplayedError", again, again)
	}
	if got, want := again.Error(), refusal.Error(); got != want {
		t.Errorf("replayed message: got %q, want %q", got, want)
	}
	changed = tooMuch
	changed.Points = 1
	e.fails(t, changed, settlement.ErrIdempotencyKeyReused)
	e.wantBalance(t, member, 301, 0)

	// bean-coffee cannot see, let alone reverse, acme-air's award.
	e.fails(t, reverse(bean, "rev-1", awarded.Transaction.ID, 0), settlement.ErrTransactionNotFound)
	e.wantBalance(t, member, 301, 0)
}

func TestUnknownMemberAndValidation(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.fails(t, redeem(bean, "m-nobody", "r-1", 10), settlement.ErrMemberNotFound)
	e.fails(t, authorize(bean, "m-nobody", "a-1", 10), settlement.ErrMemberNotFound)
	var ve *settlement.ValidationError
	if _, err := e.apply(t, redeem(bean, "m-1", "", 10)); !errors.As(err, &ve) {
		t.Errorf("redeem without a key: got %v, want *ValidationError", err)
	}
	if got := e.queryInt(t, `SELECT count(*) FROM idempotency_keys WHERE key = ''`); got != 0 {
		t.Errorf("idempotency records for an invalid request: got %d, want 0", got)
	}
}

func TestAwardDetails(t *testing.T) {
	e := newEnv(t, envConfig{})
	occurred := t0.Add(-48 * time.Hour)
	cmd := award(acme, "m-1", "a-1", 70)
	cmd.OccurredAt = occurred
	cmd.Metadata = map[string]string{"flight": "AC123", "class": "Y"}
	out := e.must(t, cmd)

	var gotOccurred, gotCreated time.Time
	var metadata map[string]string
	var key string
	err := e.pool.QueryRow(ctxFor(t), `SELECT occurred_at, created_at, metadata, idempotency_key FROM transactions WHERE id = $1`,
		out.Transaction.ID).Scan(&gotOccurred, &gotCreated, &metadata, &key)
	if err != nil {
		t.Fatal(err)
	}
	if !gotOccurred.Equal(occurred) || !gotCreated.Equal(t0) || key != "a-1" {
		t.Errorf("stored award: got occurred %s created %s key %q, want %s, %s, a-1", gotOccurred, gotCreated, key, occurred, t0)
	}
	if !maps.Equal(metadata, cmd.Metadata) {
		t.Errorf("stored metadata: got %v, want %v", metadata, cmd.Metadata)
	}
	lot := e.lot(t, out.Transaction.ID)
	want := lotRow{issuer: "partner:" + acme, points: 70, remained: 70, expiresAt: t0.Add(2 * 365 * 24 * time.Hour)}
	if lot.issuer != want.issuer || lot.points != want.points || lot.remained != want.remained || !lot.expiresAt.Equal(want.expiresAt) {
		t.Errorf("lot: got %+v, want %+v", lot, want)
	}
	var entries int64
	err = e.pool.QueryRow(ctxFor(t), `SELECT count(*) FROM entries WHERE txn_id = $1 AND
		((account = 'member:m-1' AND amount = 70) OR (account = 'partner:acme-air:issued' AND amount = -70))`,
		out.Transaction.ID).Scan(&entries)
	if err != nil || entries != 2 {
		t.Errorf("award entries: got %d matching (err %v), want 2", entries, err)
	}
}

func TestMemberBlocked(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 100))
	if err := e.store.SetMemberStatus(ctxFor(t), "m-1", "blocked"); err != nil {
		t.Fatalf("SetMemberStatus: %v", err)
	}
	before := e.rowCounts(t)
	e.fails(t, redeem(bean, "m-1", "r-1", 10), settlement.ErrMemberBlocked)
	e.fails(t, award(acme, "m-1", "a-2", 10), settlement.ErrMemberBlocked)
	e.fails(t, authorize(bean, "m-1", "h-1", 10), settlement.ErrMemberBlocked)
	if after := e.rowCounts(t); !maps.Equal(after, before) {
		t.Errorf("row counts after refusals: got %v, want %v", after, before)
	}
	e.wantBalance(t, "m-1", 100, 0)

	if err := e.store.SetMemberStatus(ctxFor(t), "m-1", "active"); err != nil {
		t.Fatalf("SetMemberStatus: %v", err)
	}
	e.fails(t, redeem(bean, "m-1", "r-1", 10), settlement.ErrMemberBlocked) // recorded
	e.must(t, redeem(bean, "m-1", "r-2", 10))
	e.wantBalance(t, "m-1", 90, 0)
	if err := e.store.SetMemberStatus(ctxFor(t), "m-nobody", "blocked"); !errors.Is(err, settlement.ErrMemberNotFound) {
		t.Errorf("SetMemberStatus(unknown): got %v, want ErrMemberNotFound", err)
	}
}
