package sqlstore_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// batchLog records what OnBatch was told.
type batchLog struct {
	mu      sync.Mutex
	sizes   []int
	splits  int
	biggest atomic.Int64
}

// snapshot returns the batch sizes and splits so far and forgets them.
func (b *batchLog) snapshot() ([]int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sizes, splits := b.sizes, b.splits
	b.sizes, b.splits = nil, 0
	return sizes, splits
}

func (b *batchLog) config(committers int) sqlstore.GroupCommitConfig {
	return sqlstore.GroupCommitConfig{Committers: committers, OnBatch: func(size int, split bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.sizes = append(b.sizes, size)
		if split {
			b.splits++
		}
		if int64(size) > b.biggest.Load() {
			b.biggest.Store(int64(size))
		}
	}}
}

// One batch, one transaction: refusals are rolled back to their savepoint and recorded, the
// other commands commit, and later commands see earlier ones (a redemption sees the award
// before it, whose writes were deferred).
func TestGroupCommitBatchIsolatesRefusals(t *testing.T) {
	var log batchLog
	e := newEnv(t, envConfig{groupCommit: log.config(1)})
	e.must(t, award(acme, "G-1", "seed", 100))
	e.must(t, award(acme, "G-B", "seed-b", 100))
	if err := e.store.SetMemberStatus(ctxFor(t), "G-B", "blocked"); err != nil {
		t.Fatal(err)
	}
	e.termsWith(t, fuel, "0.0110", "0.0085", "0", settlement.Limits{MaxPointsPerTransaction: 50})
	log.snapshot()

	cmds := []settlement.Command{
		award(acme, "G-1", "g-award", 40),         // 0: ok, G-1 = 140
		redeem(bean, "G-nobody", "g-unknown", 10), // 1: MEMBER_NOT_FOUND
		redeem(bean, "G-1", "g-too-much", 1000),   // 2: INSUFFICIENT_POINTS, nothing of it stays
		redeem(bean, "G-1", "g-redeem", 140),      // 3: ok, sees command 0's award
		award(fuel, "G-2", "g-new-member", 7),     // 4: ok, enrolls G-2
		award(bean, "G-3", "g-big", 5),            // 5: ok
		award(acme, "G-B", "g-blocked", 5),        // 6: MEMBER_BLOCKED after its credit ran: rolled back
		award(fuel, "G-4", "g-over", 51),          // 7: PARTNER_LIMIT_EXCEEDED before any statement
		award(acme, "G-4", "g-after", 3),          // 8: ok
	}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	for _, i := range []int{0, 3, 4, 5, 8} {
		if errs[i] != nil || outs[i].Replayed || outs[i].Transaction.ID == "" {
			t.Errorf("command %d: got (%+v, %v), want a first application", i, outs[i], errs[i])
		}
	}
	if !errors.Is(errs[1], settlement.ErrMemberNotFound) {
		t.Errorf("command 1: got %v, want MEMBER_NOT_FOUND", errs[1])
	}
	if !errors.Is(errs[2], settlement.ErrInsufficientPoints) {
		t.Errorf("command 2: got %v, want INSUFFICIENT_POINTS", errs[2])
	}
	if !errors.Is(errs[6], settlement.ErrMemberBlocked) {
		t.Errorf("command 6: got %v, want MEMBER_BLOCKED", errs[6])
	}
	if !errors.Is(errs[7], settlement.ErrPartnerLimitExceeded) {
		t.Errorf("command 7: got %v, want PARTNER_LIMIT_EXCEEDED", errs[7])
	}
	if sizes, splits := log.snapshot(); splits != 0 || len(sizes) != 1 || sizes[0] != len(cmds) {
		t.Errorf("batches %v, %d split; want one batch of %d, not split", sizes, splits, len(cmds))
	}
	e.wantBalance(t, "G-1", 0, 0) // 100 + 40 - 140
	e.wantBalance(t, "G-2", 7, 0)
	e.wantBalance(t, "G-4", 3, 0)
	if n := e.queryInt(t, `SELECT posted FROM members WHERE id = 'G-B'`); n != 100 {
		t.Errorf("blocked member G-B has %d posted, want 100: the refused award's credit stayed", n)
	}
	// Every command has its own record: refusals replay as refusals, successes as successes.
	if _, err := e.apply(t, cmds[2]); !errors.Is(err, settlement.ErrInsufficientPoints) || !isReplayed(err) {
		t.Errorf("retry of command 2: %v, want its recorded INSUFFICIENT_POINTS", err)
	}
	if _, err := e.apply(t, cmds[1]); !errors.Is(err, settlement.ErrMemberNotFound) || !isReplayed(err) {
		t.Errorf("retry of command 1: %v, want its recorded MEMBER_NOT_FOUND", err)
	}
	if out, err := e.apply(t, cmds[3]); err != nil || !out.Replayed || out.Transaction.ID != outs[3].Transaction.ID {
		t.Errorf("retry of command 3: (%+v, %v), want a replay of %s", out, err, outs[3].Transaction.ID)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM idempotency_keys WHERE key LIKE 'g-%'`); n != 9 {
		t.Errorf("%d idempotency records for the batch's 9 keys", n)
	}
}

// A key already stored when the batch writes it (here: twice in one batch, as two replicas
// could send it) fails the batch, which then runs one command at a time in arrival order:
// the second replays the first.
func TestGroupCommitKeyTakenInBatch(t *testing.T) {
	var log batchLog
	e := newEnv(t, envConfig{groupCommit: log.config(1)})
	cmds := []settlement.Command{award(acme, "K-1", "k-dup", 40), award(bean, "K-2", "k-other", 5), award(acme, "K-1", "k-dup", 40)}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	if errs[0] != nil || outs[0].Replayed || errs[1] != nil || outs[1].Replayed {
		t.Fatalf("first commands: (%+v, %v), (%+v, %v); want both applied", outs[0], errs[0], outs[1], errs[1])
	}
	if errs[2] != nil || !outs[2].Replayed || outs[2].Transaction.ID != outs[0].Transaction.ID {
		t.Errorf("duplicate: got (%+v, %v), want a replay of %s", outs[2], errs[2], outs[0].Transaction.ID)
	}
	if _, splits := log.snapshot(); splits != 1 {
		t.Errorf("%d splits, want 1", splits)
	}
	e.wantBalance(t, "K-1", 40, 0) // once
	e.wantBalance(t, "K-2", 5, 0)
}

// A batch whose transaction fails for a reason that is not a business refusal is applied again
// one command at a time: the faulty command gets its own error, the others commit once.
func TestGroupCommitBatchFailureFallsBackToSingles(t *testing.T) {
	var log batchLog
	e := newEnv(t, envConfig{groupCommit: log.config(1)})
	broken := award(acme, "F-1", "f-broken", 5)
	broken.Op = "teleport" // never valid: the store's effect fails with a system error
	cmds := []settlement.Command{award(acme, "F-1", "f-1", 10), broken, award(bean, "F-2", "f-2", 20)}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	if errs[0] != nil || errs[2] != nil || outs[0].Replayed || outs[2].Replayed {
		t.Fatalf("healthy commands: %v, %v; want both applied", errs[0], errs[2])
	}
	if errs[1] == nil || settlement.IsRecorded(errs[1]) {
		t.Errorf("broken command: %v, want an unrecorded system error", errs[1])
	}
	if _, splits := log.snapshot(); splits != 1 {
		t.Errorf("%d splits, want the batch split once", splits)
	}
	e.wantBalance(t, "F-1", 10, 0) // once
	e.wantBalance(t, "F-2", 20, 0)
	if n := e.queryInt(t, `SELECT count(*) FROM idempotency_keys WHERE key = 'f-broken'`); n != 0 {
		t.Errorf("the broken command left %d records", n)
	}
}

// Under concurrency, commands do share transactions, and the books are exact: 48 callers
// award 10 points 20 times each to 8 members and redeem 5 points from them.
func TestGroupCommitConcurrentCallersShareTransactions(t *testing.T) {
	var log batchLog
	e := newEnv(t, envConfig{maxConns: 8, groupCommit: log.config(2)})
	const callers, rounds = 48, 20
	var wg sync.WaitGroup
	var failed atomic.Int64
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				m := fmt.Sprintf("CC-%d", c%8)
				if _, err := e.apply(t, award([]string{acme, bean, fuel}[i%3], m, fmt.Sprintf("cc-a-%d-%d", c, i), 10)); err != nil {
					t.Errorf("award: %v", err)
					failed.Add(1)
				}
				if _, err := e.apply(t, redeem(bean, m, fmt.Sprintf("cc-r-%d-%d", c, i), 5)); err != nil {
					t.Errorf("redeem: %v", err)
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	if total, want := e.queryInt(t, `SELECT sum(posted) FROM members WHERE id LIKE 'CC-%'`), int64(callers*rounds*5); total != want {
		t.Errorf("members hold %d points, want %d", total, want)
	}
	if log.biggest.Load() < 2 {
		t.Errorf("largest batch %d: 48 concurrent callers on 2 committers never shared a transaction", log.biggest.Load())
	}
	sizes, splits := log.snapshot()
	t.Logf("batches: %d, largest %d, split %d", len(sizes), log.biggest.Load(), splits)
}

func isReplayed(err error) bool {
	var r *settlement.ReplayedError
	return errors.As(err, &r)
}

// Plain awards (of a batch, or alone) are written with one statement of multi-row INSERTs
// (awardBulkSQL): the rows must be the ones the per-statement path writes (as for an award
// with a campaign) — transaction (with metadata), entries, lot, outbox events for subscribed
// partners, and a key record that replays the same outcome.
func TestGroupCommitBulkAwardsWriteWhatSinglesWrite(t *testing.T) {
	e := newEnv(t, envConfig{groupCommit: (&batchLog{}).config(1)})
	ctx := ctxFor(t)
	const city = "city-fuel"
	for _, id := range []string{acme, bean, city} {
		if _, err := e.store.EnsurePartner(ctx, settlement.Partner{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.SetPartnerEndpoint(ctx, settlement.PartnerEndpoint{PartnerID: city, Endpoint: "city.test:443",
		Events: []string{settlement.EventPointsAwardedElsewhere}}.WithDefaults(), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	single := award(acme, "B-1", "b-single", 30)
	single.Metadata = map[string]string{"store": "17"}
	if _, err := sqlstore.ApplyPerStatement(e.store, single, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	cmds := []settlement.Command{award(acme, "B-2", "b-1", 30), award(bean, "B-3", "b-2", 40), award(city, "B-2", "b-3", 5)}
	cmds[0].Metadata = map[string]string{"store": "17"}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	for i := range cmds {
		if errs[i] != nil || outs[i].Replayed {
			t.Fatalf("command %d: %v", i, errs[i])
		}
	}
	if outs[2].Balance.Posted != 35 {
		t.Errorf("B-2 after its second award of the batch: posted %d, want 35", outs[2].Balance.Posted)
	}
	row := func(key string) string {
		var s string
		if err := e.pool.QueryRow(ctx, `SELECT concat_ws('|', t.partner_id, t.member_id, t.kind, t.points, t.reference, t.metadata::TEXT,
				t.occurred_at = t.created_at, t.period, t.price_version, t.epoch, t.reversed_points,
				(SELECT string_agg(concat_ws(',', x.account, x.amount, x.period, x.created_at = t.created_at), ';' ORDER BY x.seq) FROM entries x WHERE x.txn_id = t.id),
				(SELECT concat_ws(',', l.member_id, l.partner_id, l.points, l.remaining, l.issuer, l.price_version, l.reversed, l.expired,
					l.expiry_notified_at IS NULL, l.expires_at - l.created_at, l.created_at = t.created_at) FROM lots l WHERE l.id = t.id),
				(SELECT string_agg(concat_ws(',', o.partner_id, o.event_type, o.member_id, o.points, o.at_partner_id, o.state, o.attempts,
					o.next_attempt_at = t.created_at, o.created_at = t.created_at), ';') FROM outbox_events o WHERE o.txn_id = t.id),
				(SELECT concat_ws(',', k.op, k.error_reason IS NULL, k.outcome->'transaction'->>'id' = t.id::TEXT, k.created_at = t.created_at)
					FROM idempotency_keys k WHERE k.partner_id = t.partner_id AND k.key = t.idempotency_key))
			FROM transactions t WHERE t.idempotency_key = $1`, key).Scan(&s); err != nil {
			t.Fatalf("row of %s: %v", key, err)
		}
		return s
	}
	if got, want := row("b-1"), strings.ReplaceAll(row("b-single"), "B-1", "B-2"); got != strings.ReplaceAll(want, "award b-single", "award b-1") {
		t.Errorf("batched award wrote\n  %s\nsingle award wrote\n  %s", got, want)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM outbox_events WHERE partner_id = 'city-fuel'`); n != 3 {
		t.Errorf("%d awarded_elsewhere events for city-fuel, want 3 (its own award is not elsewhere)", n)
	}
	for i, c := range cmds {
		out, err := e.apply(t, c)
		if err != nil || !out.Replayed || out.Transaction.ID != outs[i].Transaction.ID || out.Balance != outs[i].Balance {
			t.Errorf("replay of %s: (%+v, %v), want %+v", c.IdempotencyKey, out, err, outs[i])
		}
	}
	e.wantBalance(t, "B-2", 35, 0)
}

// A batch reads its awards' limits and campaigns in two statements for all of them: each award
// still gets its own partner's terms and campaigns, as it would alone.
func TestGroupCommitBatchReadsEachAwardsTerms(t *testing.T) {
	e := newEnv(t, envConfig{groupCommit: (&batchLog{}).config(1)})
	e.seedTerms(t)
	c := fuelCampaign(t, 10_000, 5_000)
	e.createCampaign(t, c)
	e.termsWith(t, bean, "0.0110", "0.0085", "0", settlement.Limits{MaxPointsPerTransaction: 50})
	alone := e.must(t, award(fuel, "T-0", "t-alone", 100))
	cmds := []settlement.Command{
		award(acme, "T-1", "t-acme", 100), // no campaign
		award(fuel, "T-2", "t-fuel", 100), // 2× at fuel
		award(bean, "T-3", "t-bean", 51),  // over bean's limit
		award(fuel, "T-1", "t-fuel-2", 10),
		award(bean, "T-4", "t-bean-ok", 50),
	}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	if errs[0] != nil || len(outs[0].Bonuses) != 0 {
		t.Errorf("acme award: (%+v, %v), want no bonus", outs[0], errs[0])
	}
	if errs[1] != nil || len(outs[1].Bonuses) != 1 || outs[1].Bonuses[0].Points != alone.Bonuses[0].Points || outs[1].Bonuses[0].CampaignID != c.ID {
		t.Errorf("fuel award: (%+v, %v), want the bonus a lone award got (%+v)", outs[1], errs[1], alone.Bonuses)
	}
	if !errors.Is(errs[2], settlement.ErrPartnerLimitExceeded) {
		t.Errorf("bean award over its limit: got %v, want PARTNER_LIMIT_EXCEEDED", errs[2])
	}
	if errs[3] != nil || len(outs[3].Bonuses) != 1 || outs[3].Bonuses[0].Points != 10 {
		t.Errorf("second fuel award: (%+v, %v), want a bonus of 10", outs[3], errs[3])
	}
	if errs[4] != nil || len(outs[4].Bonuses) != 0 {
		t.Errorf("bean award at its limit: (%+v, %v), want it applied without bonus", outs[4], errs[4])
	}
	e.wantBalance(t, "T-1", 100+10+10, 0)
	e.wantBalance(t, "T-2", 200, 0)
}

// A run of plain awards credits its members with one statement, one row per member: awards to
// the same member still see the balance after each other, in arrival order, and pay a debt
// back in that order, exactly as the same awards one by one; a blocked member's awards are
// refused without undoing the others'.
func TestGroupCommitCreditsMembersOnceAndAwardsInOrder(t *testing.T) {
	type step struct {
		posted int64
		lot    int64 // the lot's remaining
		err    error
	}
	run := func(t *testing.T, batched bool) []step {
		var log batchLog
		e := newEnv(t, envConfig{groupCommit: log.config(1)})
		a := e.must(t, award(acme, "D-1", "seed", 100))
		e.must(t, redeem(bean, "D-1", "spend", 80))
		e.must(t, reverse(acme, "rev", a.Transaction.ID, 0)) // D-1: posted -80, debt 80
		e.must(t, award(acme, "D-B", "seed-b", 10))
		if err := e.store.SetMemberStatus(ctxFor(t), "D-B", "blocked"); err != nil {
			t.Fatal(err)
		}
		cmds := []settlement.Command{
			award(acme, "D-1", "d-1", 30), // pays 30 of the debt: -50, lot 0
			award(bean, "D-2", "d-2", 5),  // new member
			award(acme, "D-B", "d-b", 7),  // blocked
			award(fuel, "D-1", "d-3", 40), // pays 40: -10, lot 0
			award(acme, "D-2", "d-4", 6),  // 11
			award(bean, "D-1", "d-5", 25), // pays the last 10: 15, lot 15
			award(bean, "D-B", "d-b2", 1), // blocked
		}
		var outs []settlement.Outcome
		var errs []error
		if batched {
			log.snapshot()
			outs, errs = sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
			if sizes, splits := log.snapshot(); splits != 0 || len(sizes) != 1 {
				t.Errorf("batches %v, %d split; want one batch, not split", sizes, splits)
			}
		} else {
			for _, c := range cmds {
				out, err := e.apply(t, c)
				outs, errs = append(outs, out), append(errs, err)
			}
		}
		steps := make([]step, len(cmds))
		for i := range cmds {
			steps[i] = step{posted: outs[i].Balance.Posted, err: errs[i]}
			if errs[i] == nil {
				steps[i].lot = int64(e.queryInt(t, `SELECT remaining FROM lots WHERE id = $1`, outs[i].Transaction.ID))
			}
		}
		if got := e.queryInt(t, `SELECT debt FROM members WHERE id = 'D-1'`); got != 0 {
			t.Errorf("D-1 debt after the awards: %d, want 0", got)
		}
		e.wantBalance(t, "D-1", 15, 0)
		e.wantBalance(t, "D-2", 11, 0)
		e.wantBalance(t, "D-B", 10, 0)
		e.verify(t)
		return steps
	}
	alone, batch := run(t, false), run(t, true)
	for i := range alone {
		a, b := alone[i], batch[i]
		if a.posted != b.posted || a.lot != b.lot || (a.err == nil) != (b.err == nil) {
			t.Errorf("award %d: batched (posted %d, lot %d, %v), alone (posted %d, lot %d, %v)", i, b.posted, b.lot, b.err, a.posted, a.lot, a.err)
		}
		if a.err != nil && !errors.Is(b.err, settlement.ErrMemberBlocked) {
			t.Errorf("award %d: batched %v, want MEMBER_BLOCKED", i, b.err)
		}
	}
	if want := []int64{-50, 5, 0, -10, 11, 15, 0}; batch[0].posted != want[0] || batch[3].posted != want[3] || batch[5].posted != want[5] || batch[4].posted != want[4] {
		t.Errorf("batched balances %+v, want posted %v", batch, want)
	}
	if batch[0].lot != 0 || batch[3].lot != 0 || batch[5].lot != 15 {
		t.Errorf("batched lots %+v, want 0, 0 and 15 remaining for D-1's awards", batch)
	}
}

// A batch's redemptions send their debit and first page of lots ahead, with the writes of the
// command before, and defer their own writes: across lot pages, after an expired hold is
// released, refused, and one after another on the same member, each gets what it gets alone,
// and the batch commits as one.
func TestGroupCommitRedemptionsReadAhead(t *testing.T) {
	var log batchLog
	e := newEnv(t, envConfig{groupCommit: log.config(1)})
	const lots = 230 // > lotPageSize (200)
	for i := range lots {
		e.must(t, award(acme, "R-1", fmt.Sprintf("seed-%d", i), 2))
		e.clock.Advance(time.Second)
	}
	e.must(t, award(acme, "R-2", "seed-h", 100))
	h := e.must(t, authorize(bean, "R-2", "hold", 100))
	e.clock.Advance(settlement.DefaultHoldTTL)
	log.snapshot()

	cmds := []settlement.Command{
		redeem(bean, "R-1", "r-pages", 2*lots-1), // 0: across both pages, 1 left
		redeem(fuel, "R-2", "r-hold", 60),        // 1: debit fails until the expired hold is released
		redeem(bean, "R-1", "r-too-much", 7),     // 2: sees commands 3 and 0: 5 + 1 left, INSUFFICIENT_POINTS
		award(acme, "R-1", "a-after", 5),         // 3: a plain award, applied before the redemptions
		redeem(fuel, "R-1", "r-after", 6),        // 4: sees 3 and 0: 5 + 1 left, spends it all
		redeem(bean, "R-2", "r-rest", 40),        // 5: what the hold left
	}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	if sizes, splits := log.snapshot(); splits != 0 || len(sizes) != 1 || sizes[0] != len(cmds) {
		t.Errorf("batches %v, %d split; want one batch of %d, not split", sizes, splits, len(cmds))
	}
	for _, i := range []int{0, 1, 3, 4, 5} {
		if errs[i] != nil {
			t.Fatalf("command %d: %v", i, errs[i])
		}
	}
	if !errors.Is(errs[2], settlement.ErrInsufficientPoints) {
		t.Errorf("command 2: got %v, want INSUFFICIENT_POINTS", errs[2])
	}
	if got := e.lineage(t, outs[0].Transaction.ID); len(got) != lots || got[lots-1].Points != 1 {
		t.Errorf("lineage of the redemption across pages: %d rows, want %d, the last of 1 point", len(got), lots)
	}
	if got := e.lineage(t, outs[4].Transaction.ID); len(got) != 2 {
		t.Errorf("lineage of the last redemption: %d rows, want 2 (the seed lot's last point, the new award)", len(got))
	}
	wantOutcomeBalance(t, outs[1], 40, 0)
	wantOutcomeBalance(t, outs[4], 0, 0)
	wantOutcomeBalance(t, outs[5], 0, 0)
	if status, _ := e.holdStatus(t, h.Hold.ID); status != settlement.HoldExpired {
		t.Errorf("hold: got %s, want expired", status)
	}
	e.wantBalance(t, "R-1", 0, 0)
	e.wantBalance(t, "R-2", 0, 0)
	for i, c := range cmds {
		out, err := e.apply(t, c)
		if !isReplayed(err) && (err != nil || !out.Replayed || out.Transaction.ID != outs[i].Transaction.ID) {
			t.Errorf("retry of %s: (%+v, %v), want a replay", c.IdempotencyKey, out, err)
		}
	}
	e.verify(t)
}

// A batch applies its plain awards before its other commands (plainAwardsFirst): they were
// all in flight at once, so a redemption that arrived first may spend points awarded in the
// same batch. The balance after each command is the one of that order.
func TestGroupCommitAppliesPlainAwardsFirst(t *testing.T) {
	var log batchLog
	e := newEnv(t, envConfig{groupCommit: log.config(1)})
	e.must(t, award(acme, "P-1", "seed", 5))
	log.snapshot()
	cmds := []settlement.Command{
		redeem(bean, "P-1", "p-redeem", 12), // 0: 5 + 10 + 3 are there when it runs
		award(fuel, "P-1", "p-award", 10),   // 1
		redeem(bean, "P-1", "p-rest", 7),    // 2: 6 left: INSUFFICIENT_POINTS
		award(acme, "P-1", "p-award-2", 3),  // 3
	}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	if sizes, splits := log.snapshot(); splits != 0 || len(sizes) != 1 || sizes[0] != len(cmds) {
		t.Fatalf("batches %v, %d split; want one batch of %d, not split", sizes, splits, len(cmds))
	}
	for _, i := range []int{0, 1, 3} {
		if errs[i] != nil {
			t.Fatalf("command %d: %v", i, errs[i])
		}
	}
	if !errors.Is(errs[2], settlement.ErrInsufficientPoints) {
		t.Errorf("command 2: got %v, want INSUFFICIENT_POINTS", errs[2])
	}
	wantOutcomeBalance(t, outs[1], 15, 0) // the awards, in arrival order
	wantOutcomeBalance(t, outs[3], 18, 0)
	wantOutcomeBalance(t, outs[0], 6, 0) // then the redemptions
	e.wantBalance(t, "P-1", 6, 0)
	e.verify(t)
}

// Redemptions of distinct members in a row have their debits and first lots read in one round
// trip, each under its own savepoint (redemptionRun). A refusal among them, before or after
// its debit, and a debit that needs an expired hold released first, each touch that
// redemption alone: the debits read ahead after it are read again, and the writes of those
// before it stay.
func TestGroupCommitRedemptionRunReadAhead(t *testing.T) {
	var log batchLog
	e := newEnv(t, envConfig{groupCommit: log.config(1), lotLifetime: 10 * day})
	e.must(t, award(acme, "X-4", "seed-4", 100))
	e.clock.Advance(11 * day) // X-4's only lot has expired; its posted balance still counts it
	for _, m := range []string{"X-1", "X-3", "X-6", "X-7"} {
		e.must(t, award(acme, m, "seed-"+m, 100))
	}
	e.must(t, award(acme, "X-2", "seed-2", 10))
	e.must(t, award(acme, "X-5", "seed-5", 10))
	e.must(t, award(acme, "X-8", "seed-8", 10))
	h := e.must(t, authorize(bean, "X-3", "hold-3", 100))
	e.clock.Advance(settlement.DefaultHoldTTL)
	log.snapshot()

	cmds := []settlement.Command{
		redeem(bean, "X-1", "x-1", 40), // 0: ok
		redeem(bean, "X-2", "x-2", 50), // 1: INSUFFICIENT_POINTS: its debit fails
		redeem(fuel, "X-8", "x-8", 20), // 2: INSUFFICIENT_POINTS too, once the writes of 0 went out
		redeem(fuel, "X-3", "x-3", 60), // 3: ok once its expired hold is released
		redeem(bean, "X-4", "x-4", 50), // 4: debited, then INSUFFICIENT_POINTS: its lot expired
		redeem(fuel, "X-5", "x-5", 30), // 5: INSUFFICIENT_POINTS
		redeem(bean, "X-6", "x-6", 30), // 6: ok
		redeem(fuel, "X-7", "x-7", 70), // 7: ok
	}
	outs, errs := sqlstore.ApplyBatch(e.store, cmds, e.clock.Now())
	if sizes, splits := log.snapshot(); splits != 0 || len(sizes) != 1 || sizes[0] != len(cmds) {
		t.Fatalf("batches %v, %d split; want one batch of %d, not split", sizes, splits, len(cmds))
	}
	for _, i := range []int{0, 3, 6, 7} {
		if errs[i] != nil {
			t.Fatalf("command %d: %v", i, errs[i])
		}
	}
	for _, i := range []int{1, 2, 4, 5} {
		if !errors.Is(errs[i], settlement.ErrInsufficientPoints) {
			t.Errorf("command %d: got %v, want INSUFFICIENT_POINTS", i, errs[i])
		}
	}
	wantOutcomeBalance(t, outs[0], 60, 0)
	wantOutcomeBalance(t, outs[3], 40, 0)
	wantOutcomeBalance(t, outs[6], 70, 0)
	wantOutcomeBalance(t, outs[7], 30, 0)
	for m, posted := range map[string]int64{"X-1": 60, "X-2": 10, "X-3": 40, "X-4": 100, "X-5": 10, "X-6": 70, "X-7": 30, "X-8": 10} {
		e.wantBalance(t, m, posted, 0)
	}
	if status, _ := e.holdStatus(t, h.Hold.ID); status != settlement.HoldExpired {
		t.Errorf("hold: got %s, want expired", status)
	}
	for _, i := range []int{0, 3, 6, 7} {
		if got := e.lineage(t, outs[i].Transaction.ID); len(got) != 1 || got[0].Points != cmds[i].Points {
			t.Errorf("lineage of command %d: %+v, want one lot of %d points", i, got, cmds[i].Points)
		}
	}
	for i, c := range cmds {
		out, err := e.apply(t, c)
		if !isReplayed(err) && (err != nil || !out.Replayed || out.Transaction.ID != outs[i].Transaction.ID) {
			t.Errorf("retry of %s: (%+v, %v), want a replay", c.IdempotencyKey, out, err)
		}
	}
	e.verify(t)
}
