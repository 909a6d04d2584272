package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultLotLifetime is how long awarded points live before they expire (coalition policy).
const DefaultLotLifetime = 2 * 365 * 24 * time.Hour

// Config configures a Store.
type Config struct {
	Pool        *pgxpool.Pool // required
	Runner      RunnerConfig
	Logger      *slog.Logger  // default slog.Default()
	LotLifetime time.Duration // default DefaultLotLifetime
	// Now is the clock of reads that depend on the time (points expiring soon); default time.Now.
	Now func() time.Time
	// GroupCommit applies concurrent commands in shared transactions (group.go); the zero
	// value turns it on with its defaults, MaxBatch 1 turns it off.
	GroupCommit GroupCommitConfig
	// SettleParallelWorkers bounds the parallel workers PostgreSQL may give each aggregation
	// of a settlement run (max_parallel_workers_per_gather, set for the run's snapshot only):
	// 0 (the default) aggregates on one backend, leaving the other cores to live traffic;
	// SettleParallelWorkersDatabase keeps the database's own setting. CockroachDB plans its
	// distribution itself and ignores it.
	SettleParallelWorkers int
	// SettleDutyCycle paces a settlement run like PostgreSQL's vacuum_cost_delay paces
	// autovacuum: after each heavy step the run pauses so that its statements take at most this
	// fraction of its time (0.5: it pauses as long as the step took), leaving the rest to live
	// traffic. 0 or 1 means full speed; at most 1.
	SettleDutyCycle float64
}

// SettleParallelWorkersDatabase leaves a settlement run's parallelism to the database.
const SettleParallelWorkersDatabase = -1

// maxSettleParallelWorkers bounds Config.SettleParallelWorkers.
const maxSettleParallelWorkers = 64

// Store implements settlement.Store on SQL.
type Store struct {
	pool        *pgxpool.Pool
	runner      *Runner
	log         *slog.Logger
	lotLifetime time.Duration
	now         func() time.Time

	group    *grouper // nil: group commit off
	groupCfg GroupCommitConfig

	settleWorkers int     // Config.SettleParallelWorkers
	settleDuty    float64 // Config.SettleDutyCycle, 1 when unset

	engineMu sync.Mutex
	engine   string // set by Engine

	// lastLookupFound: the last key lookup found its key (or some of a batch's). The next
	// then looks up its keys first, alone, instead of with its transaction's BEGIN (apply.go).
	lastLookupFound atomic.Bool
}

// New returns a Store.
func New(cfg Config) (*Store, error) {
	if cfg.Pool == nil {
		return nil, errors.New("sqlstore: Config.Pool is required")
	}
	runner, err := NewRunner(cfg.Pool, cfg.Runner)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LotLifetime <= 0 {
		cfg.LotLifetime = DefaultLotLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	gc, err := cfg.GroupCommit.normalize()
	if err != nil {
		return nil, err
	}
	if w := cfg.SettleParallelWorkers; w < SettleParallelWorkersDatabase || w > maxSettleParallelWorkers {
		return nil, fmt.Errorf("sqlstore: settlement parallel workers %d: want 0 to %d, or %d for the database's setting",
			w, maxSettleParallelWorkers, SettleParallelWorkersDatabase)
	}
	if d := cfg.SettleDutyCycle; d < 0 || d > 1 || d != d {
		return nil, fmt.Errorf("sqlstore: settlement duty cycle %v: want a fraction in [0, 1] (0: full speed)", d)
	}
	if cfg.SettleDutyCycle == 0 {
		cfg.SettleDutyCycle = 1
	}
	s := &Store{pool: cfg.Pool, runner: runner, log: cfg.Logger, lotLifetime: cfg.LotLifetime, now: cfg.Now, groupCfg: gc,
		settleWorkers: cfg.SettleParallelWorkers, settleDuty: cfg.SettleDutyCycle}
	if gc.MaxBatch > 1 {
		s.group = newGrouper(gc, s)
	}
	return s, nil
}

// Open connects a pool to url with at most maxConns connections (0 = pgx's default) and
// checks the connection.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	return OpenWithTracer(ctx, url, maxConns, nil)
}

// OpenWithTracer is Open with a pgx tracer on every connection (nil: none), for telemetry.
func OpenWithTracer(ctx context.Context, url string, maxConns int32, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}

// Ping checks the database, for readiness probes.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Runner returns the store's transaction runner.
func (s *Store) Runner() *Runner { return s.runner }

// newID returns a random (version 4) UUID. Random keys spread writes across CockroachDB ranges.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("sqlstore: crypto/rand: " + err.Error()) // never fails on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Account names of the double-entry ledger (DESIGN.md §4).
func memberAccount(id string) string          { return "member:" + id }
func memberHoldsAccount(id string) string     { return "member:" + id + ":holds" }
func partnerIssuedAccount(id string) string   { return "partner:" + id + ":issued" }
func partnerRedeemedAccount(id string) string { return "partner:" + id + ":redeemed" }
func partnerIssuer(id string) string          { return "partner:" + id }

// writes queues a transaction's writes to send in one round trip (pgx batch).
type writes struct {
	stamp *stamp // period and price version every transaction row is stamped with
	batch pgx.Batch
	want  []int64 // expected rows affected per statement; -1 means any
	what  []string
	// enforced per statement: it fails rather than affect other than want rows (an INSERT
	// without ON CONFLICT), so it needs no check after the fact.
	enforced []bool
	// then are statements sent after the queued ones in the same round trip (a group commit's
	// next savepoint); they are not counted.
	then []string
	// deferTo, when set, collects the queued statements instead of sending them (a group
	// commit's plain awards, group.go).
	deferTo *writes
	// bulk are plain awards' rows, queued as multi-row statements when w is sent (bulk.go).
	bulk *awardBulk
	// last, when set, is the round trip that carries COMMIT (Pipeline.Last): writes that
	// need no check after the fact (foldable) go there instead of a round trip of their own.
	last *pgx.Batch
}

// foldable reports whether every queued statement either may affect any number of rows or
// enforces its count itself, so w can go out with COMMIT (Pipeline.Last).
func (w *writes) foldable() bool {
	for i, want := range w.want {
		if want >= 0 && !w.enforced[i] {
			return false
		}
	}
	return true
}

// moveToLast moves w's queued statements, then-statements included, to the end of last.
func (w *writes) moveToLast(last *pgx.Batch) {
	last.QueuedQueries = append(last.QueuedQueries, w.batch.QueuedQueries...)
	for _, sql := range w.then {
		last.Queue(sql)
	}
	w.batch, w.want, w.what, w.enforced, w.then = pgx.Batch{}, nil, nil, nil, nil
}

// queueBulk queues w.bulk's statement after those already queued (awardBulk.queue).
func (w *writes) queueBulk() {
	if w.bulk != nil && w.bulk.n > 0 {
		w.bulk.queue(w)
	}
	w.bulk = nil
}

// pending reports whether w has anything to send.
func (w *writes) pending() bool { return len(w.want) > 0 || w.bulk != nil && w.bulk.n > 0 }

// exec queues a statement expected to affect exactly wantRows rows (-1: any).
func (w *writes) exec(what string, wantRows int64, sql string, args ...any) {
	w.batch.Queue(sql, args...)
	w.want = append(w.want, wantRows)
	w.what = append(w.what, what)
	w.enforced = append(w.enforced, false)
}

// insert queues an INSERT without ON CONFLICT that writes wantRows rows or fails (a row of
// VALUES, or a SELECT of wantRows rows): it enforces its count itself.
func (w *writes) insert(what string, wantRows int64, sql string, args ...any) {
	w.exec(what, wantRows, sql, args...)
	w.enforced[len(w.enforced)-1] = true
}

// updateRead queues an UPDATE of one row by its primary key that this transaction read, whose
// CHECK constraints keep it valid (lots_remaining_bound for a lot: remaining never below zero):
// it enforces its count itself. Under SERIALIZABLE, on both engines, the row cannot have
// changed since it was read without the UPDATE failing with 40001, and the rows it is used on
// are never deleted.
func (w *writes) updateRead(what string, sql string, args ...any) {
	w.insert(what, 1, sql, args...)
}

// moveTo appends w's queued statements to d, to be sent with d's.
func (w *writes) moveTo(d *writes) {
	d.batch.QueuedQueries = append(d.batch.QueuedQueries, w.batch.QueuedQueries...)
	d.want = append(d.want, w.want...)
	d.what = append(d.what, w.what...)
	d.enforced = append(d.enforced, w.enforced...)
	w.batch, w.want, w.what, w.enforced = pgx.Batch{}, nil, nil, nil
}

// send runs the queued statements and returns the rows affected by the last one.
func (w *writes) send(ctx context.Context, tx pgx.Tx) (int64, error) {
	return w.sendWith(ctx, tx, nil)
}

// sendWith is send with reads, queries answered through their callbacks, sent after the
// queued statements in the same round trip (a group commit's next command's reads).
func (w *writes) sendWith(ctx context.Context, tx pgx.Tx, reads *pgx.Batch) (int64, error) {
	w.queueBulk()
	if len(w.want) == 0 && (reads == nil || reads.Len() == 0) {
		return 0, nil
	}
	for _, sql := range w.then {
		w.batch.Queue(sql)
	}
	if reads != nil {
		w.batch.QueuedQueries = append(w.batch.QueuedQueries, reads.QueuedQueries...)
	}
	br := tx.SendBatch(ctx, &w.batch)
	var last int64
	for i, want := range w.want {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return 0, fmt.Errorf("%s: %w", w.what[i], err)
		}
		last = tag.RowsAffected()
		if want >= 0 && last != want {
			_ = br.Close()
			return 0, fmt.Errorf("%s: affected %d rows, want %d", w.what[i], last, want)
		}
	}
	for range w.then {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return 0, err
		}
	}
	return last, br.Close()
}

type entry struct {
	account string
	amount  int64
}

// txnRow is a transactions row about to be written.
type txnRow struct {
	id, partnerID, memberID, kind string
	points                        int64
	reference, reason, key        string
	reversesID, holdID            *string
	metadata                      map[string]string
	occurredAt, createdAt         time.Time
}

// addTxn queues the transaction row and its entries, which must sum to zero.
func (w *writes) addTxn(t txnRow, entries ...entry) error {
	var sum int64
	for _, e := range entries {
		sum += e.amount
	}
	if sum != 0 || len(entries) < 2 {
		return fmt.Errorf("transaction %s: %d entries sum to %d, want 0", t.id, len(entries), sum)
	}
	if w.stamp == nil {
		return fmt.Errorf("transaction %s: not stamped with a settlement period", t.id)
	}
	var metadata any
	if len(t.metadata) > 0 {
		metadata = t.metadata
	}
	w.insert("insert transaction", 1, `INSERT INTO transactions
		(id, partner_id, member_id, kind, points, reference, reverses_id, hold_id, reason, idempotency_key, metadata, occurred_at, created_at, period, price_version, epoch)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		t.id, t.partnerID, t.memberID, t.kind, t.points, t.reference, t.reversesID, t.holdID, t.reason, t.key, metadata, t.occurredAt, t.createdAt,
		w.stamp.period, w.stamp.priceVersion, w.stamp.epoch)
	for i, e := range entries {
		w.insert("insert entry", 1, `INSERT INTO entries (txn_id, seq, account, amount, created_at, period) VALUES ($1, $2, $3, $4, $5, $6)`,
			t.id, i, e.account, e.amount, t.createdAt, w.stamp.period)
	}
	return nil
}

func strPtr(s string) *string { return &s }
