package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/coalitionexchange/coalition/settlement"
)

// errKeyTaken means a concurrent request with the same key committed between this
// transaction's read of the key and its insert: roll back and replay that request's record.
var errKeyTaken = errors.New("idempotency key committed concurrently")

// keyRecord is a stored idempotency record.
type keyRecord struct {
	fingerprint  []byte
	outcome      []byte
	errorReason  *string
	errorMessage *string
}

// Apply implements settlement.Store: with group commit on (Config.GroupCommit), the command
// joins a batch (group.go); otherwise it runs in a transaction of its own.
func (s *Store) Apply(ctx context.Context, cmd settlement.Command, fp []byte, now time.Time) (settlement.Outcome, error) {
	if s.group != nil {
		return s.applyGrouped(ctx, cmd, fp, now)
	}
	return s.applyOne(ctx, cmd, fp, now)
}

// applyOne applies cmd in a transaction of its own.
func (s *Store) applyOne(ctx context.Context, cmd settlement.Command, fp []byte, now time.Time) (settlement.Outcome, error) {
	// The key is looked up before the serializable transaction. Inside it, reading a key that
	// does not exist yet takes a predicate lock on its index page, and every concurrent request
	// inserting its own key into that page then conflicts with it (PostgreSQL SSI): awards
	// retried several times each under load. The unique key still decides, in the transaction.
	// Usually the lookup travels with BEGIN (applyFresh); after a replay, it goes first, alone,
	// so a run of replays does not begin (and roll back) a transaction each.
	if s.lastLookupFound.Load() {
		rec, found, err := s.lookupKey(ctx, cmd.PartnerID, cmd.IdempotencyKey)
		if err != nil {
			return settlement.Outcome{}, err
		}
		s.lastLookupFound.Store(found)
		if found {
			return rec.replay(fp)
		}
	}
	return s.applyFresh(ctx, cmd, fp, now)
}

// errKeyFound rolls back a transaction whose command's key was found by the lookup that
// travelled with its BEGIN: the command is a replay.
var errKeyFound = errors.New("idempotency key found")

// applyFresh applies cmd in a transaction of its own, in as few round trips as it can
// (Runner.RunPipelined). The first carries the key's lookup (READ COMMITTED, in its own
// transaction, as lookupKey), BEGIN, the settlement stamp and, for an award, the partner's
// limits and campaigns and the member's credit (for a redemption, its debit and first lots).
// A plain award's or a redemption's writes then go out with COMMIT: two round trips in all. A
// found key rolls the transaction back and is replayed.
func (s *Store) applyFresh(ctx context.Context, cmd settlement.Command, fp []byte, now time.Time) (settlement.Outcome, error) {
	var out settlement.Outcome
	var rec keyRecord
	var found bool
	var st *stamp
	err := s.runner.RunPipelined(ctx, func(p *Pipeline) {
		rec, found = keyRecord{}, false
		queueLookupKey(&p.Before, cmd.PartnerID, cmd.IdempotencyKey, &rec, &found)
		st = queueStamp(&p.First, cmd.PartnerID, now)
		if cmd.Op == settlement.OpRedeem {
			st.redeemReads = queueRedeemReads(&p.First, cmd, now)
		}
		if cmd.Op == settlement.OpAward {
			// Credited before its limits are checked: a refusal rolls the whole transaction
			// back, and so does a found key.
			st.awardTerms = &awardTerms{current: true}
			queueAwardTerms(&p.First, st.awardTerms, cmd.PartnerID, now)
			st.credited = &credit{}
			p.First.Queue(creditSQL, cmd.MemberID, cmd.Points, now).QueryRow(func(row pgx.Row) error {
				if err := row.Scan(st.credited.dest()...); err != nil {
					return fmt.Errorf("credit member: %w", err)
				}
				return nil
			})
		}
	}, func(ctx context.Context, tx pgx.Tx, p *Pipeline) error {
		if found {
			return errKeyFound
		}
		w := writes{stamp: st, last: &p.Last}
		var err error
		out, err = s.applyStamped(ctx, tx, &w, cmd, fp, now)
		return err
	})
	s.lastLookupFound.Store(found)
	var replayed *settlement.ReplayedError
	switch {
	case errors.Is(err, errKeyFound):
		return rec.replay(fp)
	case errors.Is(err, errKeyTaken), isKeyConflict(err):
		return s.replay(ctx, cmd, fp)
	case errors.As(err, &replayed):
		return settlement.Outcome{}, err
	case settlement.IsRecorded(err):
		return s.recordFailure(ctx, cmd, fp, err, now)
	}
	return out, err
}

// isKeyConflict reports a unique violation on idempotency_keys: a concurrent request with the
// same key committed first (the key is inserted without ON CONFLICT when it goes out with
// COMMIT, see storeKey).
func isKeyConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == sqlstateUniqueViolation &&
		(pgErr.TableName == "idempotency_keys" || strings.HasPrefix(pgErr.ConstraintName, "idempotency_keys_"))
}

// applyStamped applies cmd's effect with w's stamp and stores its key, sending w's writes in
// one round trip.
func (s *Store) applyStamped(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, fp []byte, now time.Time) (settlement.Outcome, error) {
	if w.last != nil && w.deferTo == nil && w.stamp.credited != nil && fastAward(cmd, w.stamp) {
		return s.plainAward(ctx, tx, w, cmd, fp, now)
	}
	out, err := s.effect(ctx, tx, w, cmd, now)
	if err != nil {
		return settlement.Outcome{}, err
	}
	return s.storeKey(ctx, tx, w, cmd, fp, out, now)
}

// plainAward applies a lone plain award (fastAward) whose member was credited in the
// transaction's first round trip (applyFresh): its rows, outbox events and idempotency record
// go out with COMMIT as one statement (awardBulk), as a batch's plain awards do.
func (s *Store) plainAward(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, fp []byte, now time.Time) (settlement.Outcome, error) {
	limits, _, _ := w.stamp.awardTerms.get()
	if err := s.checkAwardLimits(ctx, tx, w, cmd, limits, now); err != nil {
		return settlement.Outcome{}, err
	}
	w.bulk = &awardBulk{}
	out, err := s.bulkAward(w.bulk, w.stamp, &pending{cmd: cmd, fp: fp, now: now}, *w.stamp.credited)
	if err != nil {
		return settlement.Outcome{}, err
	}
	w.queueBulk()
	w.moveToLast(w.last)
	return out, nil
}

// storeKey queues cmd's outbox events and idempotency record with out, and sends w's writes
// (or, with w.deferTo, moves them there).
func (s *Store) storeKey(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, fp []byte, out settlement.Outcome, now time.Time) (settlement.Outcome, error) {
	queueOutbox(w, cmd, out, now) // events commit with the change (outbox.go)
	body, err := json.Marshal(out)
	if err != nil {
		return settlement.Outcome{}, err
	}
	args := []any{cmd.PartnerID, cmd.IdempotencyKey, string(cmd.Op), fp, body, now}
	if w.deferTo == nil && w.last != nil && w.foldable() {
		// Every write enforces its own count: they go out with COMMIT. The key goes without
		// ON CONFLICT, so a key stored meanwhile by a concurrent request fails the
		// transaction (isKeyConflict) instead of committing the effect without it.
		w.insert("insert idempotency key", 1, insertKeySQL, args...)
		w.moveToLast(w.last)
		return out, nil
	}
	if w.deferTo != nil {
		// Sent later with other commands' writes, without ON CONFLICT: a key stored meanwhile
		// by a concurrent request then fails the whole batch, whose commands run again one by
		// one (group.go).
		w.insert("insert idempotency key", 1, insertKeySQL, args...)
		w.moveTo(w.deferTo)
		return out, nil
	}
	w.exec("insert idempotency key", -1, insertKeySQL+` ON CONFLICT (partner_id, key) DO NOTHING`, args...)
	inserted, err := w.send(ctx, tx)
	if err != nil {
		return settlement.Outcome{}, err
	}
	if inserted != 1 {
		return settlement.Outcome{}, errKeyTaken
	}
	return out, nil
}

func (s *Store) effect(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	switch cmd.Op {
	case settlement.OpAward:
		return s.award(ctx, tx, w, cmd, now)
	case settlement.OpRedeem:
		return s.redeem(ctx, tx, w, cmd, now)
	case settlement.OpAuthorize:
		return s.authorize(ctx, tx, w, cmd, now)
	case settlement.OpCapture:
		return s.capture(ctx, tx, w, cmd, now)
	case settlement.OpVoid:
		return s.void(ctx, tx, w, cmd, now)
	case settlement.OpReverse:
		return s.reverse(ctx, tx, w, cmd, now)
	default:
		return settlement.Outcome{}, fmt.Errorf("unknown op %q", cmd.Op)
	}
}

// insertKeySQL stores an idempotency record with an outcome.
const insertKeySQL = `INSERT INTO idempotency_keys (partner_id, key, op, fingerprint, outcome, created_at)
	VALUES ($1, $2, $3, $4, $5, $6)`

// lookupKey reads an idempotency record in a READ COMMITTED read-only transaction, sent as one
// round trip; it takes no predicate locks.
func (s *Store) lookupKey(ctx context.Context, partnerID, key string) (keyRecord, bool, error) {
	var b pgx.Batch
	var r keyRecord
	found := false
	queueLookupKey(&b, partnerID, key, &r, &found)
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return keyRecord{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	return r, found, nil
}

// queueLookupKey queues lookupKey's READ COMMITTED read-only transaction on b; r and found are
// set when b has run.
func queueLookupKey(b *pgx.Batch, partnerID, key string, r *keyRecord, found *bool) {
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY`)
	b.Queue(`SELECT fingerprint, outcome, error_reason, error_message FROM idempotency_keys WHERE partner_id = $1 AND key = $2`,
		partnerID, key).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&r.fingerprint, &r.outcome, &r.errorReason, &r.errorMessage)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("look up idempotency key: %w", err)
		}
		*found = true
		return nil
	})
	b.Queue(`COMMIT`)
}

func readKey(ctx context.Context, tx pgx.Tx, partnerID, key string) (keyRecord, bool, error) {
	var r keyRecord
	err := tx.QueryRow(ctx, `SELECT fingerprint, outcome, error_reason, error_message
		FROM idempotency_keys WHERE partner_id = $1 AND key = $2`, partnerID, key).
		Scan(&r.fingerprint, &r.outcome, &r.errorReason, &r.errorMessage)
	if errors.Is(err, pgx.ErrNoRows) {
		return keyRecord{}, false, nil
	}
	if err != nil {
		return keyRecord{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	return r, true, nil
}

// replay returns the recorded outcome or error, or ErrIdempotencyKeyReused when fp differs.
func (r keyRecord) replay(fp []byte) (settlement.Outcome, error) {
	if !bytes.Equal(r.fingerprint, fp) {
		return settlement.Outcome{}, settlement.ErrIdempotencyKeyReused
	}
	if r.errorReason != nil {
		msg := ""
		if r.errorMessage != nil {
			msg = *r.errorMessage
		}
		return settlement.Outcome{}, settlement.ReplayError(*r.errorReason, msg)
	}
	var out settlement.Outcome
	if err := json.Unmarshal(r.outcome, &out); err != nil {
		return settlement.Outcome{}, fmt.Errorf("decode idempotency record: %w", err)
	}
	out.Replayed = true
	return out, nil
}

// replay reads back the record a concurrent request with the same key committed.
func (s *Store) replay(ctx context.Context, cmd settlement.Command, fp []byte) (settlement.Outcome, error) {
	var out settlement.Outcome
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rec, found, err := readKey(ctx, tx, cmd.PartnerID, cmd.IdempotencyKey)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("idempotency key %q vanished after a conflict", cmd.IdempotencyKey)
		}
		out, err = rec.replay(fp)
		return err
	})
	return out, err
}

// recordRefusalSQL stores a refusal under its key unless the key is already stored; its
// arguments are refusalArgs.
const recordRefusalSQL = `INSERT INTO idempotency_keys (partner_id, key, op, fingerprint, error_reason, error_message, created_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (partner_id, key) DO NOTHING`

func refusalArgs(cmd settlement.Command, fp []byte, cause error, now time.Time) []any {
	de, _ := settlement.AsError(cause)
	return []any{cmd.PartnerID, cmd.IdempotencyKey, string(cmd.Op), fp, de.Reason, cause.Error(), now}
}

// recordFailure stores a business error under the key, so a retry of the same request gets
// the same answer even if the books have changed since. If another request stored the key
// first, that request's record wins.
func (s *Store) recordFailure(ctx context.Context, cmd settlement.Command, fp []byte, cause error, now time.Time) (settlement.Outcome, error) {
	var out settlement.Outcome
	var result error
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		out, result = settlement.Outcome{}, cause
		tag, err := tx.Exec(ctx, recordRefusalSQL, refusalArgs(cmd, fp, cause, now)...)
		if err != nil {
			return fmt.Errorf("record failure: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		rec, _, err := readKey(ctx, tx, cmd.PartnerID, cmd.IdempotencyKey)
		if err != nil {
			return err
		}
		out, result = rec.replay(fp)
		return nil
	})
	if err != nil {
		return settlement.Outcome{}, err
	}
	return out, result
}
