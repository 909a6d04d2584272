package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// Errors of settlement runs are settlement's: ErrCutoffTooRecent, ErrCutoffBeforeLast,
// ErrRunInProgress, ErrRunNotFound.
var (
	ErrCutoffTooRecent  = settlement.ErrCutoffTooRecent
	ErrCutoffBeforeLast = settlement.ErrCutoffBeforeLast
	ErrRunInProgress    = settlement.ErrRunInProgress
	ErrRunNotFound      = settlement.ErrRunNotFound
)

// firstCutoff stands for "the beginning of time" as the first period's previous cutoff.
var firstCutoff = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// Settle closes the period ending at cfg.Cutoff (or re-runs the closed period with exactly
// that cutoff), aggregates it on one consistent snapshot, prices and nets it, checks it and
// stores the run. Only one run at a time holds the lease.
func (s *Store) Settle(ctx context.Context, cfg settlement.SettleConfig) (settlement.RunRecord, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Minute
	}
	if cfg.Cutoff.After(cfg.Now.Add(-cfg.SafetyLag)) {
		return settlement.RunRecord{}, fmt.Errorf("%w: %s is within the safety lag of %s", ErrCutoffTooRecent,
			cfg.Cutoff.UTC().Format(time.RFC3339), cfg.SafetyLag)
	}
	if cfg.IdempotencyKey != "" {
		if rec, found, err := s.runByKey(ctx, cfg); found || err != nil {
			return rec, err
		}
	}
	if err := s.acquireLease(ctx, cfg); err != nil {
		return settlement.RunRecord{}, err
	}
	defer s.releaseLease(cfg.Holder)
	if cfg.IdempotencyKey != "" {
		// Again under the lease: a call with the key may have stored its run meanwhile.
		if rec, found, err := s.runByKey(ctx, cfg); found || err != nil {
			return rec, err
		}
	}
	// The lease is renewed while the run lasts; if another replica takes it anyway (this one
	// stalled past its expiry), the run stops, and storeRun stores nothing without it.
	runCtx, lost := context.WithCancelCause(ctx)
	stop := s.keepLease(runCtx, cfg, lost)
	rec, err := s.settle(runCtx, cfg, progress)
	stop()
	if cause := context.Cause(runCtx); err != nil && errors.Is(cause, errLeaseLost) {
		err = cause
	}
	lost(nil)
	return rec, err
}

// runByKey returns the run stored with cfg.IdempotencyKey (Replayed), if any; the key with
// another cutoff is settlement.ErrIdempotencyKeyReused.
func (s *Store) runByKey(ctx context.Context, cfg settlement.SettleConfig) (settlement.RunRecord, bool, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM settlement_runs WHERE idempotency_key = $1`, cfg.IdempotencyKey).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return settlement.RunRecord{}, false, nil
	}
	if err != nil {
		return settlement.RunRecord{}, false, fmt.Errorf("look up run by key: %w", err)
	}
	rec, err := s.Run(ctx, id)
	if err != nil {
		return rec, false, err
	}
	if !rec.Cutoff.Equal(cfg.Cutoff) {
		return settlement.RunRecord{}, false, fmt.Errorf("%w: key %q made run %d with cutoff %s", settlement.ErrIdempotencyKeyReused,
			cfg.IdempotencyKey, rec.ID, rec.Cutoff.UTC().Format(time.RFC3339))
	}
	rec.Replayed = true
	return rec, true, nil
}

// errLeaseLost is ErrRunInProgress for a run whose lease another replica took meanwhile.
var errLeaseLost = fmt.Errorf("%w: another replica took the settlement lease during this run; nothing was stored", ErrRunInProgress)

// keepLease renews cfg.Holder's lease every third of its TTL until stop is called, and calls
// lost(errLeaseLost) when the lease is no longer this holder's. A renewal the database fails
// is tried again at the next tick: storeRun checks the lease before it stores.
func (s *Store) keepLease(ctx context.Context, cfg settlement.SettleConfig, lost context.CancelCauseFunc) (stop func()) {
	started := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(cfg.LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			expires := cfg.Now.Add(time.Since(started)).Add(cfg.LeaseTTL)
			var held bool
			err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, `UPDATE settlement_lease SET expires_at = $2 WHERE name = 'settlement' AND holder = $1`, cfg.Holder, expires)
				held = tag.RowsAffected() == 1
				return err
			})
			if err == nil && !held {
				lost(errLeaseLost)
				return
			}
			if err != nil && ctx.Err() == nil {
				s.log.Warn("renew settlement lease", "holder", cfg.Holder, "err", err)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (s *Store) settle(ctx context.Context, cfg settlement.SettleConfig, progress func(string)) (settlement.RunRecord, error) {
	progress("closing the period")
	period, prev, model, closed, err := s.closePeriod(ctx, cfg.Cutoff.UTC(), cfg.Now)
	if err != nil {
		return settlement.RunRecord{}, err
	}
	// Roll up what was sealed (rollup.go). Closing a period also seals the open epoch, holding
	// the period's last transactions, so they are summed too; that waits for in-flight
	// transactions, as the close did. A re-run of a closed period does not seal: it reads the
	// few rows not rolled up yet from the ledger, without holding up live traffic.
	progress("rolling up sealed epochs")
	rollStart := time.Now()
	rolled, err := s.rollUp(ctx, cfg.Now, closed)
	if err != nil {
		return settlement.RunRecord{}, err
	}
	if err := s.pace(ctx, time.Since(rollStart)); err != nil {
		return settlement.RunRecord{}, err
	}
	progress(fmt.Sprintf("rolled up %d epochs (%d transactions); epochs through %d are summed", rolled.Rolled, rolled.Transactions, rolled.RolledThrough))
	progress(fmt.Sprintf("aggregating period %d (%s, %s] on one snapshot", period, prev.Format(time.RFC3339), cfg.Cutoff.UTC().Format(time.RFC3339)))
	data, err := s.periodData(ctx, period, prev, cfg.Cutoff.UTC(), true)
	if err != nil {
		return settlement.RunRecord{}, err
	}
	progress(fmt.Sprintf("pricing %d transactions (%d late) under the %s model", data.Transactions, data.Late, model))
	res, err := settlement.Compute(model, data)
	if err != nil {
		return settlement.RunRecord{}, err
	}
	rec := settlement.RunRecord{Period: period, PreviousCutoff: prev, Cutoff: cfg.Cutoff.UTC(), Model: model,
		Currency: res.Currency, Checks: res.Checks, Result: res, Transactions: data.Transactions, Late: data.Late, CreatedAt: cfg.Now}
	rec.Status = "published"
	if !res.Passed() {
		rec.Status = "failed"
	}
	progress("storing the run")
	if err := s.storeRun(ctx, &rec, cfg.Holder, cfg.IdempotencyKey); err != nil {
		return settlement.RunRecord{}, err
	}
	progress(fmt.Sprintf("run %d %s", rec.ID, rec.Status))
	return rec, nil
}

func (s *Store) acquireLease(ctx context.Context, cfg settlement.SettleConfig) error {
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO settlement_lease (name, holder, expires_at) VALUES ('settlement', $1, $2)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE settlement_lease.expires_at < $3 OR settlement_lease.holder = excluded.holder`,
			cfg.Holder, cfg.Now.Add(cfg.LeaseTTL), cfg.Now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrRunInProgress
		}
		return nil
	})
}

func (s *Store) releaseLease(holder string) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM settlement_lease WHERE name = 'settlement' AND holder = $1`, holder)
		return err
	})
	if err != nil {
		s.log.Warn("release settlement lease", "err", err) // it expires on its own
	}
}

// closePeriod returns the period ending at cutoff: an already closed one with exactly that
// cutoff, or a newly closed one (closed true). Closing updates every settlement_state shard; that waits for
// every ledger transaction that read the open period FOR SHARE, so none of them can commit
// into a period after it closed. A new period is stamped with the coalition's settlement model
// (settlementModelSQL); model is the period's, so a re-run settles it as its first run did.
func (s *Store) closePeriod(ctx context.Context, cutoff, now time.Time) (period int64, prev time.Time, model settlement.Model, closed bool, err error) {
	err = s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		closed = false
		var last int64
		var lastCutoff *time.Time
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(period), 0), max(cutoff) FROM settlement_periods`).Scan(&last, &lastCutoff); err != nil {
			return err
		}
		if lastCutoff != nil && !cutoff.After(*lastCutoff) {
			// A period closed by a replica older than the model stamp (during a rolling upgrade)
			// has none: it gets the coalition's model, as runs did before the stamp.
			err := tx.QueryRow(ctx, `SELECT period, previous_cutoff, COALESCE(model, (`+settlementModelSQL+`))
				FROM settlement_periods WHERE cutoff = $1`, cutoff).Scan(&period, &prev, &model)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("%w (latest %s)", ErrCutoffBeforeLast, lastCutoff.UTC().Format(time.RFC3339))
			}
			return err
		}
		period, prev = last+1, firstCutoff
		if lastCutoff != nil {
			prev = *lastCutoff
		}
		tag, err := tx.Exec(ctx, `UPDATE settlement_state SET open_period = $1 WHERE open_period = $2`, period+1, period)
		if err != nil {
			return fmt.Errorf("close period: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("close period %d: settlement_state is not at that period", period)
		}
		err = tx.QueryRow(ctx, `INSERT INTO settlement_periods (period, previous_cutoff, cutoff, closed_at, model)
			VALUES ($1, $2, $3, $4, (`+settlementModelSQL+`)) RETURNING model`,
			period, prev, cutoff, now).Scan(&model)
		closed = err == nil
		return err
	})
	return period, prev.UTC(), model, closed, err
}

// settlementModelSQL is the coalition's settlement model: its setting, hub by default.
var settlementModelSQL = `SELECT COALESCE((SELECT value FROM coalition_settings WHERE name = 'settlement_model'), '` + string(settlement.ModelHub) + `')`

// SettlementModel returns the model periods closed from now on are settled under.
func (s *Store) SettlementModel(ctx context.Context) (settlement.Model, error) {
	var m settlement.Model
	err := s.pool.QueryRow(ctx, settlementModelSQL).Scan(&m)
	return m, err
}

// SetSettlementModel chooses the model for periods closed from now on and returns the one
// before; closed periods keep theirs. Errors: a *settlement.ValidationError for another model.
func (s *Store) SetSettlementModel(ctx context.Context, m settlement.Model) (settlement.Model, error) {
	if m != settlement.ModelHub && m != settlement.ModelBilateral {
		return "", &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "model", Description: "must be HUB or BILATERAL"}}}
	}
	var previous settlement.Model
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, settlementModelSQL).Scan(&previous); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO coalition_settings (name, value) VALUES ('settlement_model', $1)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, string(m))
		return err
	})
	return previous, err
}

// storeRun assigns the next run id and writes the run with its lines and matrix, if holder
// still holds the settlement lease (in the same transaction: a replica that took the lease
// meanwhile stores its own run, not this one too).
func (s *Store) storeRun(ctx context.Context, rec *settlement.RunRecord, holder, key string) error {
	checks, err := json.Marshal(rec.Checks)
	if err != nil {
		return err
	}
	res := rec.Result
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var current string
		err := tx.QueryRow(ctx, `SELECT holder FROM settlement_lease WHERE name = 'settlement'`).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && current != holder) {
			return errLeaseLost
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(id), 0) + 1 FROM settlement_runs`).Scan(&rec.ID); err != nil {
			return err
		}
		var w writes
		var runKey *string
		if key != "" {
			runKey = &key
		}
		w.exec("insert run", 1, `INSERT INTO settlement_runs (id, period, model, status, currency, checks, operator_revenue, gross_total, netted_total, transactions, late_transactions, created_at, idempotency_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			rec.ID, rec.Period, string(rec.Model), rec.Status, rec.Currency, checks,
			res.OperatorRevenue.Text('f'), res.GrossTotal.Text('f'), res.NettedTotal.Text('f'), rec.Transactions, rec.Late, rec.CreatedAt, runKey)
		for partner, lines := range res.Lines {
			for i, l := range lines {
				w.exec("insert line", 1, `INSERT INTO settlement_lines (run_id, partner_id, line_no, kind, counterparty, price_version, points, rate, amount, late, transactions)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
					rec.ID, partner, i+1, l.Kind, l.Counterparty, l.Version, l.Points, l.Rate.Text('f'), l.Amount.Text('f'), l.Late, l.Txns)
			}
		}
		for _, c := range res.Matrix {
			w.exec("insert matrix cell", 1, `INSERT INTO settlement_matrix (run_id, issuer, redeemer, points) VALUES ($1, $2, $3, $4)`,
				rec.ID, c.Issuer, c.Redeemer, c.Points)
		}
		if rec.Status == "published" {
			queueStatementReady(&w, rec)
		}
		_, err = w.send(ctx, tx)
		return err
	})
}

// noTransaction stands in an outbox event's transaction id when no ledger transaction is behind
// it (a statement is a run's, not a transaction's).
const noTransaction = "00000000-0000-0000-0000-000000000000"

// queueStatementReady tells every subscribed partner with a statement in a published run, in
// the transaction that stores the run: the event exists exactly when the statement does.
func queueStatementReady(w *writes, rec *settlement.RunRecord) {
	partners := make([]string, 0, len(rec.Result.Lines))
	for p := range rec.Result.Lines {
		partners = append(partners, p)
	}
	sort.Strings(partners)
	w.exec("queue statement_ready events", -1, `INSERT INTO outbox_events
		(id, partner_id, event_type, member_id, points, at_partner_id, txn_id, created_at, state, next_attempt_at, run_id)
		SELECT gen_random_uuid(), s.partner_id, $1, '', 0, s.partner_id, $2::UUID, $3, 'pending', $3, $4
		FROM partner_subscriptions s WHERE s.event_type = $1 AND s.partner_id = ANY($5::TEXT[])
		  AND NOT EXISTS (SELECT 1 FROM settlement_runs r WHERE r.period = $6 AND r.status = 'published' AND r.id <> $4)`,
		settlement.EventStatementReady, noTransaction, rec.CreatedAt, rec.ID, partners, rec.Period)
}
