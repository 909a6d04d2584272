package sqlstore

import (
	"encoding/json"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

// awardBulk collects the rows of a group commit's plain awards, written with one multi-row
// INSERT per table (unnest of arrays) when their writes are flushed: PostgreSQL then plans and
// executes five statements for a whole batch instead of five per award.
type awardBulk struct {
	n int
	// transactions
	txnID, partner, member, reference, key []string
	points                                 []int64
	metadata                               []*string
	occurred, created                      []time.Time
	period, version, epoch                 []int64
	expires                                []time.Time
	remaining                              []int64
	// idempotency records
	fingerprint [][]byte
	outcome     []string
}

// add collects one award (transaction, its two entries, its lot, its awarded_elsewhere events
// and its idempotency record).
func (b *awardBulk) add(st *stamp, cmd settlement.Command, fp []byte, t settlement.Transaction, occurred time.Time,
	remaining int64, expires time.Time, outcome []byte) error {
	var metadata *string
	if len(cmd.Metadata) > 0 {
		m, err := json.Marshal(cmd.Metadata)
		if err != nil {
			return err
		}
		ms := string(m)
		metadata = &ms
	}
	b.n++
	b.txnID = append(b.txnID, t.ID)
	b.partner = append(b.partner, cmd.PartnerID)
	b.member = append(b.member, cmd.MemberID)
	b.reference = append(b.reference, t.Reference)
	b.key = append(b.key, cmd.IdempotencyKey)
	b.points = append(b.points, t.Points)
	b.metadata = append(b.metadata, metadata)
	b.occurred = append(b.occurred, occurred)
	b.created = append(b.created, t.CreatedAt)
	b.period = append(b.period, st.period)
	b.epoch = append(b.epoch, st.epoch)
	b.version = append(b.version, st.priceVersion)
	b.expires = append(b.expires, expires)
	b.remaining = append(b.remaining, remaining)
	b.fingerprint = append(b.fingerprint, fp)
	b.outcome = append(b.outcome, string(outcome))
	return nil
}

// queue queues the rows on w as one statement: a multi-row INSERT per table (unnest of arrays),
// each a data-modifying CTE. PostgreSQL then plans and starts one statement for a whole batch
// instead of five (six for a lone award); the rows and their index entries cost the same
// either way (docs/BENCHMARKS.md, fifth session). Every INSERT is without ON CONFLICT, so it writes all its rows
// or fails the statement: a key stored meanwhile by a concurrent request fails the
// transaction, whose commands then run again one by one (a batch's) or replay (a lone
// award's, isKeyConflict). The statement enforces its count itself, so w can go out with
// COMMIT (writes.foldable).
//
// Transaction ids go out as TEXT[] and are cast in SQL: pgx encodes a []string for a UUID[]
// parameter only after failing in binary format, and builds (and drops) an error message
// holding the whole array each time.
func (b *awardBulk) queue(w *writes) {
	w.insert("insert awards", -1, awardBulkSQL, settlement.EventPointsAwardedElsewhere,
		b.txnID, b.partner, b.member, b.points, b.reference, b.key, b.metadata, b.occurred, b.created,
		b.period, b.version, b.epoch, b.remaining, b.expires, b.fingerprint, b.outcome)
}

// awardBulkSQL writes plain awards: $1 is the event type of outbox events, $2… one array per
// column of awardBulk.
const awardBulkSQL = `WITH u AS (
		SELECT * FROM unnest($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::INT8[], $6::TEXT[], $7::TEXT[], $8::TEXT[],
			$9::TIMESTAMPTZ[], $10::TIMESTAMPTZ[], $11::INT8[], $12::INT8[], $13::INT8[], $14::INT8[], $15::TIMESTAMPTZ[],
			$16::BYTEA[], $17::TEXT[]) WITH ORDINALITY
		AS u (id, partner, member, points, reference, key, metadata, occurred, created, period, version, epoch, remaining,
			expires, fingerprint, outcome, ord)),
	t AS (INSERT INTO transactions
		(id, partner_id, member_id, kind, points, reference, idempotency_key, metadata, occurred_at, created_at, period, price_version, epoch)
		SELECT u.id::UUID, u.partner, u.member, 'award', u.points, u.reference, u.key, u.metadata::JSONB, u.occurred, u.created, u.period, u.version, u.epoch
		FROM u RETURNING 1),
	e AS (INSERT INTO entries (txn_id, seq, account, amount, created_at, period)
		SELECT u.id::UUID, e.seq, CASE e.seq WHEN 0 THEN 'member:' || u.member ELSE 'partner:' || u.partner || ':issued' END,
			CASE e.seq WHEN 0 THEN u.points ELSE -u.points END, u.created, u.period
		FROM u, (VALUES (0), (1)) AS e (seq) RETURNING 1),
	l AS (INSERT INTO lots (id, member_id, issuer, partner_id, points, remaining, expires_at, created_at, price_version)
		SELECT u.id::UUID, u.member, 'partner:' || u.partner, u.partner, u.points, u.remaining, u.expires, u.created, u.version
		FROM u RETURNING 1),
	k AS (INSERT INTO idempotency_keys (partner_id, key, op, fingerprint, outcome, created_at)
		SELECT u.partner, u.key, 'award', u.fingerprint, u.outcome::JSONB, u.created FROM u RETURNING 1)
	INSERT INTO outbox_events (id, partner_id, event_type, member_id, points, at_partner_id, txn_id, created_at, state, next_attempt_at)
		SELECT gen_random_uuid(), s.partner_id, $1, u.member, u.points, u.partner, u.id::UUID, u.created, 'pending', u.created
		FROM u JOIN partner_subscriptions s ON s.event_type = $1 AND s.partner_id <> u.partner
		ORDER BY u.ord, s.partner_id`

// bulkAward is awardCredited and storeKey for a plain award of a group commit: its rows go to
// b, written when the batch's deferred writes are flushed.
func (s *Store) bulkAward(b *awardBulk, st *stamp, p *pending, c credit) (settlement.Outcome, error) {
	cmd, now := p.cmd, p.now
	out, occurred, err := newAward(cmd, c, now)
	if err != nil {
		return settlement.Outcome{}, err
	}
	t := out.Transaction
	body, err := json.Marshal(out)
	if err != nil {
		return settlement.Outcome{}, err
	}
	return out, b.add(st, cmd, p.fp, t, occurred, cmd.Points-c.repaid, now.Add(s.lotLifetime), body)
}
