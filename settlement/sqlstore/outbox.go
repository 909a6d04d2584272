package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// queueOutbox queues the outbox rows a command's effect causes into the same batch, hence
// the same transaction, as the effect: an event exists if and only if its change committed.
// The receivers are read inside that transaction from partner_subscriptions; a redemption's
// issuers come from the lineage rows queued just before.
func queueOutbox(w *writes, cmd settlement.Command, out settlement.Outcome, now time.Time) {
	t := out.Transaction
	switch t.Kind {
	case settlement.KindAward:
		w.exec("queue awarded_elsewhere events", -1, `INSERT INTO outbox_events
			(id, partner_id, event_type, member_id, points, at_partner_id, txn_id, created_at, state, next_attempt_at)
			SELECT gen_random_uuid(), s.partner_id, $1, $2, $3, $4, $5, $6, 'pending', $6
			FROM partner_subscriptions s WHERE s.event_type = $1 AND s.partner_id <> $4`,
			settlement.EventPointsAwardedElsewhere, t.MemberID, t.Points, cmd.PartnerID, t.ID, now)
	case settlement.KindRedeem, settlement.KindCapture:
		w.exec("queue redeemed events", -1, `INSERT INTO outbox_events
			(id, partner_id, event_type, member_id, points, at_partner_id, txn_id, created_at, state, next_attempt_at)
			SELECT gen_random_uuid(), s.partner_id, $1, $2, $3, $4, $5, $6, 'pending', $6
			FROM partner_subscriptions s WHERE s.event_type = $1 AND EXISTS (
				SELECT 1 FROM lot_consumptions c WHERE c.txn_id = $5 AND c.issuer = 'partner:' || s.partner_id)`,
			settlement.EventPointsRedeemed, t.MemberID, t.Points, cmd.PartnerID, t.ID, now)
	}
}

// OutboxPartners returns the configured partners that have pending events.
func (s *Store) OutboxPartners(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT e.partner_id FROM partner_endpoints e
		WHERE EXISTS (SELECT 1 FROM outbox_events o WHERE o.partner_id = e.partner_id AND o.state = 'pending')
		ORDER BY e.partner_id`)
	if err != nil {
		return nil, fmt.Errorf("find outbox partners: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("find outbox partners: %w", err)
	}
	return ids, nil
}

// ClaimOutboxLease takes or renews holder's lease on partnerID's queue until now+ttl and
// reports whether holder has it. Only the lease holder delivers a partner's events, which
// keeps them in order; each partner has its own lease row, so replicas share partners.
func (s *Store) ClaimOutboxLease(ctx context.Context, partnerID, holder string, now time.Time, ttl time.Duration) (bool, error) {
	claimed := false
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO outbox_leases (partner_id, holder, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (partner_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE outbox_leases.holder = excluded.holder OR outbox_leases.expires_at <= $4`,
			partnerID, holder, now.Add(ttl), now)
		if err != nil {
			return fmt.Errorf("claim outbox lease: %w", err)
		}
		claimed = tag.RowsAffected() == 1
		return nil
	})
	return claimed, err
}

// ReleaseOutboxLease gives up holder's lease on partnerID's queue, if it still has it.
func (s *Store) ReleaseOutboxLease(ctx context.Context, partnerID, holder string) error {
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM outbox_leases WHERE partner_id = $1 AND holder = $2`, partnerID, holder)
		return err
	})
}

const outboxColumns = `id::TEXT, partner_id, event_type, member_id, points, at_partner_id, txn_id::TEXT, created_at, state, attempts, last_error, next_attempt_at, run_id`

func scanOutbox(r pgx.CollectableRow) (settlement.OutboxEvent, error) {
	var e settlement.OutboxEvent
	var attempts int64
	err := r.Scan(&e.ID, &e.PartnerID, &e.Type, &e.MemberID, &e.Points, &e.AtPartnerID, &e.TransactionID,
		&e.CreatedAt, &e.State, &attempts, &e.LastError, &e.NextAttemptAt, &e.RunID)
	e.Attempts = int(attempts)
	return e, err
}

// OutboxHead returns up to limit of partnerID's pending events in delivery order.
func (s *Store) OutboxHead(ctx context.Context, partnerID string, limit int) ([]settlement.OutboxEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox_events
		WHERE partner_id = $1 AND state = 'pending' ORDER BY created_at, id LIMIT $2`, partnerID, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox head: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanOutbox)
	if err != nil {
		return nil, fmt.Errorf("read outbox head: %w", err)
	}
	return out, nil
}

// MarkOutboxDelivered marks pending events delivered (or dead, when the partner refused them
// for good: dead is non-empty) in one transaction.
func (s *Store) MarkOutboxDelivered(ctx context.Context, delivered, dead []string, reason string, now time.Time) error {
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var b pgx.Batch
		b.Queue(`UPDATE outbox_events SET state = 'delivered', delivered_at = $2, attempts = attempts + 1
			WHERE id = ANY($1::UUID[]) AND state = 'pending'`, delivered, now)
		b.Queue(`UPDATE outbox_events SET state = 'dead', last_error = $2, attempts = attempts + 1
			WHERE id = ANY($1::UUID[]) AND state = 'pending'`, dead, reason)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("mark outbox delivered: %w", err)
		}
		return nil
	})
}

// RecordOutboxFailure counts a failed delivery of ids: their next attempt waits until next,
// and those that reach maxAttempts become dead. It returns how many became dead.
func (s *Store) RecordOutboxFailure(ctx context.Context, ids []string, cause string, next time.Time, maxAttempts int) (int64, error) {
	var dead int64
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE outbox_events SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
				state = CASE WHEN attempts + 1 >= $4 THEN 'dead' ELSE state END
			WHERE id = ANY($1::UUID[]) AND state = 'pending' RETURNING state`, ids, cause, next, maxAttempts)
		if err != nil {
			return fmt.Errorf("record outbox failure: %w", err)
		}
		states, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("record outbox failure: %w", err)
		}
		dead = 0
		for _, st := range states {
			if st == string(settlement.OutboxDead) {
				dead++
			}
		}
		return nil
	})
	return dead, err
}

// maxOutboxList bounds ListOutbox.
const maxOutboxList = 1000

// ListOutbox returns up to limit events of partnerID ("" = all) in state, oldest first.
func (s *Store) ListOutbox(ctx context.Context, partnerID string, state settlement.OutboxState, limit int) ([]settlement.OutboxEvent, error) {
	if limit <= 0 || limit > maxOutboxList {
		limit = maxOutboxList
	}
	rows, err := s.pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox_events
		WHERE ($1 = '' OR partner_id = $1) AND state = $2 ORDER BY partner_id, created_at, id LIMIT $3`, partnerID, string(state), limit)
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanOutbox)
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	return out, nil
}

// ReplayOutbox puts partnerID's dead events (only ids, when given) back in its queue with no
// attempts counted, due at now, and returns how many.
func (s *Store) ReplayOutbox(ctx context.Context, partnerID string, ids []string, now time.Time) (int64, error) {
	if ids == nil {
		ids = []string{} // NULL would match nothing
	}
	var n int64
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE outbox_events SET state = 'pending', attempts = 0, next_attempt_at = $3, last_error = ''
			WHERE partner_id = $1 AND state = 'dead' AND (cardinality($2::UUID[]) = 0 OR id = ANY($2::UUID[]))`,
			partnerID, ids, now)
		if err != nil {
			return fmt.Errorf("replay outbox: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return n, err
}
