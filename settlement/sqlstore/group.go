package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/coalitionexchange/coalition/settlement"
)

// Group commit defaults and bounds.
const (
	DefaultGroupCommitMaxBatch = 32
	// Committers when GroupCommitConfig.Committers is 0: on PostgreSQL one, because SSI locks
	// index pages a transaction reads, so two concurrent batches of random members conflicted
	// in about a quarter of them (measured); CockroachDB tracks read key spans instead, and
	// more committers keep more of a cluster busy.
	defaultCommittersPostgreSQL = 1
	defaultCommittersCockroach  = 4
	// MaxGroupCommitBatch bounds MaxBatch: every command of a batch other than its plain
	// awards (which share one) runs under its own savepoint, and PostgreSQL caches at most 64
	// subtransactions per backend before every snapshot in the server gets slower (a command
	// refused after writing uses two).
	MaxGroupCommitBatch = 32
	// groupBatchTimeout bounds one batch, which runs on its own context: one caller giving up
	// must not cancel the others' commands.
	groupBatchTimeout = 30 * time.Second
	// groupBatchAttempts is how often a batch runs after serialization failures before its
	// commands are applied one by one.
	groupBatchAttempts = 3
)

// GroupCommitConfig configures group commit: concurrent Apply calls are applied in one database
// transaction, its plain awards first and then the other commands, each in the order they
// arrived (plainAwardsFirst), each under its own savepoint (the plain awards under one, see
// fastAwards) with its own idempotency record and outcome. They share the transaction's BEGIN,
// its settlement-period read and its COMMIT — one durable WAL flush instead of one per
// command — and their idempotency keys are looked up in one query.
//
// A command refused for a business reason (insufficient points, a limit…) is rolled back to its
// savepoint and its refusal recorded; the others commit. If the batch transaction itself fails
// (an unexpected database error, or serialization conflicts three times running), every command
// of it is applied again on its own, with the usual retries, so one command can never fail
// another. If COMMIT's outcome is unknown, every command of the batch gets
// settlement.ErrAmbiguousCommit, as a single command would.
type GroupCommitConfig struct {
	// MaxBatch is the most commands one transaction applies: 0 means
	// DefaultGroupCommitMaxBatch, 1 turns group commit off, at most MaxGroupCommitBatch.
	MaxBatch int
	// Window is how long a committer holding fewer than MaxBatch commands waits for more before
	// it starts, and only while another batch is running (the database is busy anyway). Zero
	// (the default) never waits: a batch is what queued while the committers were busy, so a
	// lone request at low load starts at once.
	Window time.Duration
	// Committers is how many batches run at once (write connections in use); 0 means 1 on
	// PostgreSQL and 4 on CockroachDB.
	Committers int
	// OnBatch, when set, is told each batch's size (commands that needed the database) and
	// whether it fell back to applying them one by one (metrics, tests).
	OnBatch func(size int, split bool)
}

func (c GroupCommitConfig) normalize() (GroupCommitConfig, error) {
	if c.MaxBatch < 0 || c.MaxBatch > MaxGroupCommitBatch {
		return c, fmt.Errorf("sqlstore: group commit batch size %d: want 1 to %d (0: default %d)", c.MaxBatch, MaxGroupCommitBatch, DefaultGroupCommitMaxBatch)
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultGroupCommitMaxBatch
	}
	if c.Window < 0 || c.Window > time.Second {
		return c, fmt.Errorf("sqlstore: group commit window %s: want 0 to 1s", c.Window)
	}
	if c.Committers < 0 || c.Committers > 256 {
		return c, fmt.Errorf("sqlstore: group commit committers %d: want 1 to 256 (0: by database engine)", c.Committers)
	}
	return c, nil
}

// pending is one Apply call waiting for its batch.
type pending struct {
	ctx context.Context
	cmd settlement.Command
	fp  []byte
	now time.Time

	done chan struct{}
	out  settlement.Outcome
	err  error
	// set by a batch attempt
	taken bool // the key was stored by a concurrent request: replay it after COMMIT
}

func (p *pending) finish(out settlement.Outcome, err error) {
	p.out, p.err = out, err
	close(p.done)
}

// grouper queues Apply calls on cfg.Committers queues and runs each queue's batches on one
// goroutine, which exists only while its queue has work. A command goes to the queue of its
// member (or, without one, of its key): commands on one member share a transaction or run one
// after the other, and concurrent batches rarely write the same rows, which under SERIALIZABLE
// would fail one of them.
type grouper struct {
	cfg   GroupCommitConfig
	store *Store

	mu      sync.Mutex
	queues  [][]*pending
	running []bool
	busy    int // batches executing
}

func newGrouper(cfg GroupCommitConfig, s *Store) *grouper {
	g := &grouper{cfg: cfg, store: s}
	if cfg.Committers > 0 {
		g.size(cfg.Committers)
	}
	return g
}

func (g *grouper) size(n int) {
	g.queues, g.running = make([][]*pending, n), make([]bool, n)
}

// sized makes sure the queues exist, sized by the engine when Committers is 0.
func (g *grouper) sized(ctx context.Context) error {
	g.mu.Lock()
	ok := g.queues != nil
	g.mu.Unlock()
	if ok {
		return nil
	}
	engine, err := g.store.Engine(ctx)
	if err != nil {
		return fmt.Errorf("group commit: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queues == nil {
		n := defaultCommittersPostgreSQL
		if engine == EngineCockroach {
			n = defaultCommittersCockroach
		}
		g.size(n)
	}
	return nil
}

func (g *grouper) route(cmd settlement.Command) int {
	h := fnv.New32a()
	if cmd.MemberID != "" {
		h.Write([]byte(cmd.MemberID))
	} else {
		h.Write([]byte(cmd.PartnerID + "\x00" + cmd.IdempotencyKey))
	}
	return int(h.Sum32() % uint32(len(g.queues)))
}

// claim marks p's queue busy when it is idle (empty, no committer), for p to run alone.
func (g *grouper) claim(p *pending) (int, bool) {
	q := g.route(p.cmd)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running[q] || len(g.queues[q]) > 0 {
		return q, false
	}
	g.running[q] = true
	g.busy++
	return q, true
}

// release ends a claim: what queued meanwhile goes to a committer.
func (g *grouper) release(q int) {
	g.mu.Lock()
	g.busy--
	start := len(g.queues[q]) > 0
	g.running[q] = start
	g.mu.Unlock()
	if start {
		go g.commit(q)
	}
}

// submit queues p and starts its queue's committer if none runs.
func (g *grouper) submit(p *pending) {
	q := g.route(p.cmd)
	g.mu.Lock()
	g.queues[q] = append(g.queues[q], p)
	start := !g.running[q]
	g.running[q] = true
	g.mu.Unlock()
	if start {
		go g.commit(q)
	}
}

func (g *grouper) commit(q int) {
	for {
		batch := g.take(q)
		if batch == nil {
			return
		}
		g.store.applyBatch(batch, q)
		g.mu.Lock()
		g.busy--
		g.mu.Unlock()
	}
}

// take returns queue q's next batch, or nil (and retires its committer) when it is empty.
func (g *grouper) take(q int) []*pending {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queues[q]) == 0 {
		g.running[q] = false
		return nil
	}
	if g.cfg.Window > 0 && len(g.queues[q]) < g.cfg.MaxBatch && g.busy > 0 {
		deadline := time.Now().Add(g.cfg.Window)
		for len(g.queues[q]) < g.cfg.MaxBatch && g.busy > 0 && time.Now().Before(deadline) {
			g.mu.Unlock()
			time.Sleep(min(g.cfg.Window/4+time.Microsecond, time.Until(deadline)))
			g.mu.Lock()
		}
	}
	n := min(len(g.queues[q]), g.cfg.MaxBatch)
	batch := make([]*pending, n)
	copy(batch, g.queues[q])
	clear(g.queues[q][:n])
	g.queues[q] = g.queues[q][n:]
	g.busy++
	return batch
}

// withdraw removes p from its queue if no batch has taken it yet.
func (g *grouper) withdraw(p *pending) bool {
	q := g.route(p.cmd)
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.queues[q] {
		if x == p {
			g.queues[q] = append(g.queues[q][:i], g.queues[q][i+1:]...)
			return true
		}
	}
	return false
}

// applyGrouped queues the command for a batch and waits for its outcome. A caller that gives
// up while the command is still queued withdraws it (nothing happened); once its batch runs,
// the caller waits for the batch and gets the real outcome.
func (s *Store) applyGrouped(ctx context.Context, cmd settlement.Command, fp []byte, now time.Time) (settlement.Outcome, error) {
	if err := s.group.sized(ctx); err != nil {
		return settlement.Outcome{}, err
	}
	p := &pending{ctx: ctx, cmd: cmd, fp: fp, now: now, done: make(chan struct{})}
	if q, ok := s.group.claim(p); ok {
		// Nothing queued and no batch running on its queue: apply it at once, in the caller's
		// goroutine, as without group commit. Commands arriving meanwhile queue behind it.
		out, err := s.applyOne(ctx, cmd, fp, now)
		s.reportBatch(1, false)
		s.group.release(q)
		return out, err
	}
	s.group.submit(p)
	select {
	case <-p.done:
	case <-ctx.Done():
		if s.group.withdraw(p) {
			return settlement.Outcome{}, ctx.Err() // never applied
		}
		<-p.done // its batch is running: wait for the real outcome, bounded by groupBatchTimeout
	}
	return p.out, p.err
}

// applyBatch applies a batch: replays answered from one key lookup, the rest in one
// transaction; see GroupCommitConfig for what happens on failures.
func (s *Store) applyBatch(batch []*pending, committer int) {
	ctx, cancel := context.WithTimeout(context.Background(), groupBatchTimeout)
	defer cancel()
	live := batch[:0:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.finish(settlement.Outcome{}, err) // gave up before its batch started: nothing happened
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	todo := live
	if s.lastLookupFound.Load() {
		// After replays, the keys are looked up first, alone: a batch of replays then begins
		// no transaction. Otherwise the lookup travels with BEGIN, below.
		recs, err := s.lookupKeys(ctx, live)
		if err != nil {
			for _, p := range live {
				p.finish(settlement.Outcome{}, err)
			}
			return
		}
		s.lastLookupFound.Store(len(recs) > 0)
		todo = live[:0:0]
		for i, p := range live {
			if rec, ok := recs[i]; ok {
				p.finish(rec.replay(p.fp))
				continue
			}
			todo = append(todo, p)
		}
		if len(todo) == 0 {
			return
		}
	}
	// One transaction for the batch. Its first round trip carries the keys' lookup, BEGIN,
	// the stamps, the awards' terms and the first savepoint; a plain award's credit goes out
	// in a second, and the batch's writes with COMMIT in a third. Even one command goes
	// through batchTx.
	var err error
	for attempt := 1; ; attempt++ {
		var found map[int]keyRecord
		var stamped func() ([]*stamp, error)
		var soloReads *redeemReads
		err = s.runner.oncePipelined(ctx, func(p *Pipeline) {
			found = map[int]keyRecord{}
			queueLookupKeys(&p.Before, todo, found)
			stamped = queueStamps(&p.First, todo, committer%exposureShards, len(todo) > 1)
			soloReads = nil
			if len(todo) == 1 && todo[0].cmd.Op == settlement.OpRedeem {
				soloReads = queueRedeemReads(&p.First, todo[0].cmd, todo[0].now)
			}
		}, func(ctx context.Context, tx pgx.Tx, p *Pipeline) error {
			stamps, err := stamped()
			if err != nil {
				return err
			}
			if soloReads != nil {
				stamps[0].redeemReads = soloReads
			}
			s.lastLookupFound.Store(len(found) > 0)
			if len(found) > 0 {
				// Replays: answered now, whatever becomes of the batch.
				rest, restStamps := todo[:0:0], stamps[:0:0]
				for i, p := range todo {
					if rec, ok := found[i]; ok {
						p.finish(rec.replay(p.fp))
						continue
					}
					rest, restStamps = append(rest, p), append(restStamps, stamps[i])
				}
				todo, stamps = rest, restStamps
				if len(todo) == 0 {
					return errAllReplayed
				}
			}
			return s.batchTx(ctx, tx, todo, stamps, &p.Last)
		})
		if attempt == groupBatchAttempts || !isSerializationFailure(err) {
			break
		}
		// Conflicts between batches are PostgreSQL SSI's page-granular read locks, mostly: the
		// batch again costs one transaction where splitting it costs one per command.
		if s.runner.cfg.OnRetry != nil {
			s.runner.cfg.OnRetry(attempt, err)
		}
		if err := s.runner.sleep(ctx, attempt); err != nil {
			break
		}
	}
	switch {
	case errors.Is(err, errAllReplayed):
		return
	case err == nil:
		s.reportBatch(len(todo), false)
		for _, p := range todo {
			if p.taken {
				p.finish(s.replay(ctx, p.cmd, p.fp))
			} else {
				close(p.done)
			}
		}
	case errors.Is(err, errSoloRefused):
		s.reportBatch(1, false)
		s.applySingle(ctx, todo[0])
	case errors.Is(err, settlement.ErrAmbiguousCommit):
		s.reportBatch(len(todo), false)
		for _, p := range todo {
			p.finish(settlement.Outcome{}, err)
		}
	default:
		// Nothing of the batch committed. Apply each command alone, with the runner's retries,
		// so a conflict or a fault of one command cannot fail the others.
		s.reportBatch(len(todo), true)
		for _, p := range todo { // in arrival order, as the batch would have
			s.applySingle(ctx, p)
		}
	}
}

func (s *Store) reportBatch(size int, split bool) {
	if s.groupCfg.OnBatch != nil {
		s.groupCfg.OnBatch(size, split)
	}
}

// applySingle applies p, whose key the batch did not find, in its own transaction.
func (s *Store) applySingle(ctx context.Context, p *pending) {
	p.finish(s.applyFresh(ctx, p.cmd, p.fp, p.now))
}

// errAllReplayed rolls back a batch whose keys were all found by the lookup that travelled
// with its BEGIN: every command was answered as a replay.
var errAllReplayed = errors.New("every command of the batch replayed")

// errSoloRefused rolls back a batch of one whose command was refused (or whose key was stored
// meanwhile): applyFresh applies it again and records or replays.
var errSoloRefused = errors.New("lone command refused")

// isSerializationFailure reports a SQLSTATE 40001 (or a deadlock, which retryable presents
// as one).
func isSerializationFailure(err error) bool {
	var coded interface{ SQLState() string }
	return errors.As(err, &coded) && coded.SQLState() == sqlstateSerializationFailure
}

// savepoint names the savepoint of the i-th command of a batch. Names are distinct, so rolling
// back to command i's savepoint also discards the later ones.
func savepoint(i int) string { return "group_cmd_" + strconv.Itoa(i) }

// batchTx is one attempt at a batch, whose stamps were read (queueStamps): its plain awards
// first (plainAwardsFirst), each command under its own savepoint. It sets each pending's
// out/err (or taken); a returned error means the whole transaction must not commit. The last
// writes go out with COMMIT (last) when they can.
func (s *Store) batchTx(ctx context.Context, tx pgx.Tx, ps []*pending, stamps []*stamp, last *pgx.Batch) error {
	// A batch of one needs no savepoint: a refusal rolls the transaction back, and the command
	// is applied again alone (applyFresh records the refusal).
	solo := len(ps) == 1
	// Savepoint n exists (and is the newest) once established == n; queueStamps set 0.
	established := 0
	// deferred holds the writes of plain awards (fastAward), sent together before the next
	// command that may read them and before COMMIT.
	var deferred writes
	if solo {
		p := ps[0]
		p.out, p.err, p.taken = settlement.Outcome{}, nil, false
		w := writes{stamp: stamps[0]}
		if fastAward(p.cmd, stamps[0]) {
			w.deferTo = &deferred
		}
		out, err := s.applyStamped(ctx, tx, &w, p.cmd, p.fp, p.now)
		if errors.Is(err, errKeyTaken) || settlement.IsRecorded(err) {
			return errSoloRefused
		}
		if err != nil {
			return err
		}
		p.out = out
		return flushDeferred(ctx, tx, &deferred, last)
	}
	ps, stamps = plainAwardsFirst(ps, stamps)
	// Commands before readAhead had their reads sent (redemptionRun), each under its own
	// savepoint, the one of readAhead-1 the newest.
	readAhead := 0
	for i := 0; i < len(ps); i++ {
		p := ps[i]
		if fastAward(p.cmd, stamps[i]) {
			j := i + 1
			for j < len(ps) && fastAward(ps[j].cmd, stamps[j]) {
				j++
			}
			if err := s.fastAwards(ctx, tx, ps[i:j], stamps[i:j], i, &established, &deferred); err != nil {
				return err
			}
			i = j - 1
			continue
		}
		// Any other command: the deferred writes go out first (it may read them), with its
		// savepoint, and a redemption's debit and first lots (queueRedeemReads) in the same
		// round trip, with those of the redemptions of other members right after it, each
		// under its own savepoint (redemptionRun). A redemption's own writes are deferred in
		// turn; any other command's go out with the next savepoint.
		p.out, p.err, p.taken = settlement.Outcome{}, nil, false
		redemption := p.cmd.Op == settlement.OpRedeem
		if i >= readAhead {
			deferred.queueBulk() // before the savepoint: a refusal of command i must not undo them
			if established != i {
				deferred.exec("savepoint", -1, "SAVEPOINT "+savepoint(i))
			}
			var reads pgx.Batch
			readAhead = i + 1
			if redemption {
				stamps[i].redeemReads = queueRedeemReads(&reads, p.cmd, p.now)
				for end := redemptionRun(ps, i); readAhead < end; readAhead++ {
					k := readAhead
					reads.Queue("SAVEPOINT " + savepoint(k))
					stamps[k].redeemReads = queueRedeemReads(&reads, ps[k].cmd, ps[k].now)
				}
			}
			if deferred.pending() || reads.Len() > 0 {
				if _, err := deferred.sendWith(ctx, tx, &reads); err != nil {
					return err
				}
				deferred = writes{}
			}
			established = readAhead - 1
		}
		if redemption && !stamps[i].redeemReads.debited && readAhead > i+1 {
			// Read ahead, but its debit failed: debitAvailable finds out why and may release
			// expired holds first, writes that must come under this redemption's savepoint,
			// the newest. Undo the debits read ahead after it; those redemptions read again.
			var b pgx.Batch
			b.Queue("ROLLBACK TO SAVEPOINT " + savepoint(i+1))
			b.Queue("RELEASE SAVEPOINT " + savepoint(i+1))
			if err := tx.SendBatch(ctx, &b).Close(); err != nil {
				return fmt.Errorf("undo read-ahead debits: %w", err)
			}
			readAhead, established = i+1, i
		}
		w := writes{stamp: stamps[i], then: []string{"SAVEPOINT " + savepoint(i+1)}}
		if redemption {
			// Sent before the next command's reads, or COMMIT: a key stored meanwhile by a
			// concurrent request then fails the batch, which runs one by one (storeKey).
			w.then, w.deferTo = nil, &deferred
		}
		out, err := s.applyStamped(ctx, tx, &w, p.cmd, p.fp, p.now)
		switch {
		case err == nil && redemption:
			p.out = out // its savepoint stays (the newest, unless later ones were read ahead)
			continue
		case err == nil:
			p.out = out
			established = i + 1 // the trailer went out with its writes
			continue
		case errors.Is(err, errKeyTaken):
			p.taken = true
		case settlement.IsRecorded(err):
			p.err = err
		default:
			return err
		}
		// Undo this command's writes (and the next savepoint), then record its refusal under
		// its key, in the same transaction as the others.
		var b pgx.Batch
		b.Queue("ROLLBACK TO SAVEPOINT " + savepoint(i))
		var inserted int64
		if p.err != nil {
			b.Queue(recordRefusalSQL, refusalArgs(p.cmd, p.fp, p.err, p.now)...).Exec(func(tag pgconn.CommandTag) error {
				inserted = tag.RowsAffected()
				return nil
			})
		}
		if !deferred.pending() {
			b.Queue("SAVEPOINT " + savepoint(i+1))
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("roll back refused command: %w", err)
		}
		if deferred.pending() {
			// The writes of the redemptions read ahead with this one, before it: their debits
			// came before its savepoint and stay. They go before the next savepoint, which a
			// later refusal may roll back to.
			deferred.then = []string{"SAVEPOINT " + savepoint(i+1)}
			if _, err := deferred.send(ctx, tx); err != nil {
				return err
			}
			deferred = writes{}
		}
		// The debits read ahead after this command were rolled back too: read them again.
		readAhead, established = i+1, i+1
		if p.err != nil && inserted != 1 {
			p.err, p.taken = nil, true // a concurrent request stored the key first: its record wins
		}
	}
	return flushDeferred(ctx, tx, &deferred, last)
}

// redemptionRun returns the end of the run of redemptions that starts at ps[i]: they have
// distinct members, so each one's debit and lots can be read before the earlier ones write
// (their lots are the earlier ones' too otherwise).
func redemptionRun(ps []*pending, i int) int {
	members := map[string]bool{}
	j := i
	for ; j < len(ps) && ps[j].cmd.Op == settlement.OpRedeem && !members[ps[j].cmd.MemberID]; j++ {
		members[ps[j].cmd.MemberID] = true
	}
	return j
}

// plainAwardsFirst orders a batch for batchTx: its plain awards (fastAward) first, then the
// other commands, each group in arrival order. Every command of a batch was in flight at
// once, with no answer yet, so any order is one the callers could have observed, and this
// one costs least: all plain awards form one run, credited by one statement and written by
// one, where awards interleaved with redemptions made a run each (two statements and a round
// trip per run). A redemption then also sees the points awarded in its batch. ps and stamps
// are not modified: on a failure the batch's commands are applied one by one, in arrival
// order.
func plainAwardsFirst(ps []*pending, stamps []*stamp) ([]*pending, []*stamp) {
	ordered, orderedStamps := make([]*pending, 0, len(ps)), make([]*stamp, 0, len(ps))
	for _, plain := range []bool{true, false} {
		for i, p := range ps {
			if fastAward(p.cmd, stamps[i]) == plain {
				ordered, orderedStamps = append(ordered, p), append(orderedStamps, stamps[i])
			}
		}
	}
	return ordered, orderedStamps
}

// flushDeferred sends a batch's deferred writes before COMMIT: with COMMIT, in one round trip,
// when every statement enforces its own count (the keys inserted without ON CONFLICT: a key
// stored meanwhile by a concurrent request fails the batch, which then runs one by one), or
// else in a round trip of their own, checked.
func flushDeferred(ctx context.Context, tx pgx.Tx, d *writes, last *pgx.Batch) error {
	d.queueBulk()
	if !d.pending() {
		return nil
	}
	if d.foldable() {
		d.moveToLast(last)
		return nil
	}
	_, err := d.send(ctx, tx)
	return err
}

// fastAwards applies a run of plain awards (fastAward), ps[k] being the batch's command base+k:
// the members of the whole run are credited by one statement (creditManySQL), under one
// savepoint, and the awards' writes are deferred. Each award still gets the outcome it would
// get alone, in arrival order (creditRun). A member found blocked rolls the run back to its
// savepoint; that member's awards are refused and the others are credited again.
func (s *Store) fastAwards(ctx context.Context, tx pgx.Tx, ps []*pending, stamps []*stamp, base int, established *int, deferred *writes) error {
	live := make([]int, 0, len(ps)) // the awards to credit, in arrival order
	for k, p := range ps {
		p.out, p.err, p.taken = settlement.Outcome{}, nil, false
		limits, _, _ := stamps[k].awardTerms.get()
		w := writes{stamp: stamps[k]}
		// With the limits fastAward allows, this checks without a statement.
		if err := s.checkAwardLimits(ctx, tx, &w, p.cmd, limits, p.now); err != nil {
			if !settlement.IsRecorded(err) {
				return err
			}
			p.err = err
			continue
		}
		live = append(live, k)
	}
	var credits []credit
	for len(live) > 0 {
		var err error
		credits, err = creditRun(ctx, tx, ps, live, savepoint(base), *established != base)
		if err != nil {
			return err
		}
		*established = base
		blocked := map[string]bool{}
		for _, k := range live {
			if credits[k].status != "active" {
				blocked[ps[k].cmd.MemberID] = true
			}
		}
		if len(blocked) == 0 {
			break
		}
		// Refused after their credit: undo the run's credits and credit the others again.
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+savepoint(base)); err != nil {
			return fmt.Errorf("roll back refused award: %w", err)
		}
		rest := live[:0]
		for _, k := range live {
			if blocked[ps[k].cmd.MemberID] {
				ps[k].err = memberBlocked(ps[k].cmd.MemberID)
				continue
			}
			rest = append(rest, k)
		}
		live = rest
	}
	for k, p := range ps {
		if p.err == nil {
			if deferred.bulk == nil {
				deferred.bulk = &awardBulk{}
			}
			out, err := s.bulkAward(deferred.bulk, stamps[k], p, credits[k])
			if err != nil {
				return err // the member was active: not a refusal
			}
			p.out = out
			continue
		}
		// The refusal is recorded with the deferred writes; a key stored meanwhile by a
		// concurrent request fails the batch (want 1), which then runs one by one.
		deferred.exec("record refusal", 1, recordRefusalSQL, refusalArgs(p.cmd, p.fp, p.err, p.now)...)
	}
	return nil
}

// creditManySQL credits members $1 with $2 points each, at $3 (first award) to $4 (last),
// as creditSQL does for one; it returns each member's credit.
const creditManySQL = `INSERT INTO members (id, posted, created_at, updated_at)
	SELECT u.id, u.points, u.first, u.last FROM unnest($1::TEXT[], $2::INT8[], $3::TIMESTAMPTZ[], $4::TIMESTAMPTZ[]) AS u (id, points, first, last)
	ON CONFLICT (id) DO UPDATE SET
		posted = members.posted + excluded.posted,
		debt = CASE WHEN members.debt > excluded.posted THEN members.debt - excluded.posted ELSE 0 END,
		last_repaid = LEAST(members.debt, excluded.posted),
		updated_at = excluded.updated_at
	RETURNING id, posted, held, status, last_repaid`

// creditRun credits the awards ps[k], k in live, in one round trip (after savepoint sp when
// establish): one row per member, in member order, with the sum of its awards. It returns
// each award's credit (indexed like ps) as a lone award in arrival order would have seen it:
// the member's balance after that award, and the debt that award paid back (the debt a run
// pays back is paid by its awards in order, as one award after another pays it).
func creditRun(ctx context.Context, tx pgx.Tx, ps []*pending, live []int, sp string, establish bool) ([]credit, error) {
	type member struct {
		points      int64
		first, last time.Time
	}
	byID := map[string]*member{}
	ids := make([]string, 0, len(live))
	for _, k := range live {
		c := ps[k].cmd
		m, ok := byID[c.MemberID]
		if !ok {
			m = &member{first: ps[k].now, last: ps[k].now}
			byID[c.MemberID] = m
			ids = append(ids, c.MemberID)
		}
		m.points += c.Points
		m.first, m.last = minTime(m.first, ps[k].now), maxTime(m.last, ps[k].now)
	}
	slices.Sort(ids) // one lock order for every batch
	points := make([]int64, len(ids))
	firsts := make([]time.Time, len(ids))
	lasts := make([]time.Time, len(ids))
	for i, id := range ids {
		points[i], firsts[i], lasts[i] = byID[id].points, byID[id].first, byID[id].last
	}
	after := make(map[string]credit, len(ids))
	var b pgx.Batch
	if establish {
		b.Queue("SAVEPOINT " + sp)
	}
	b.Queue(creditManySQL, ids, points, firsts, lasts).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var c credit
			if err := rows.Scan(append([]any{&id}, c.dest()...)...); err != nil {
				return err
			}
			after[id] = c
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("credit members: %w", err)
	}
	if len(after) != len(ids) {
		return nil, fmt.Errorf("credit members: %d rows for %d members", len(after), len(ids))
	}
	// Walk the awards in arrival order: each sees the balance before the run plus the awards
	// up to and including it, and pays back what is left of the run's repayment.
	// after[id] then holds the balance after the awards walked so far, and the repayment left.
	credits := make([]credit, len(ps))
	for _, id := range ids {
		c := after[id]
		c.bal.Posted -= byID[id].points // the balance before the run
		after[id] = c
	}
	for _, k := range live {
		id, pts := ps[k].cmd.MemberID, ps[k].cmd.Points
		left := after[id]
		left.bal.Posted += pts
		credits[k] = left
		credits[k].repaid = min(left.repaid, pts)
		left.repaid -= credits[k].repaid
		after[id] = left
	}
	return credits, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// fastAward reports an award whose only statement before its writes is the member's credit:
// its terms were read ahead, no campaign applies and no per-member daily limit counts it.
func fastAward(cmd settlement.Command, st *stamp) bool {
	if cmd.Op != settlement.OpAward {
		return false
	}
	limits, camps, err := st.awardTerms.get()
	return err == nil && len(camps) == 0 && (limits == nil || limits.maxDay == nil)
}

// queueStamps queues on b the read of one settlement_state shard FOR SHARE (see readStamp) and
// each command's partner price version at its time, with the awards' limits and campaigns
// (readAwardTerms, read ahead for all of them in two statements), and the first savepoint.
// The returned function gives the stamps, indexed like ps, once b has run. The batch's awards take exposure allowance from
// exposureShard first (its committer's own), so concurrent batches do not update the same
// shard.
func queueStamps(b *pgx.Batch, ps []*pending, exposureShard int, savepoint0 bool) func() ([]*stamp, error) {
	partners := make([]string, len(ps))
	ats := make([]time.Time, len(ps))
	for i, p := range ps {
		partners[i], ats[i] = p.cmd.PartnerID, p.now
	}
	stamps := make([]*stamp, len(ps))
	b.Queue(`SELECT r.ord, s.open_period, s.open_epoch,
			COALESCE((SELECT max(p.version) FROM price_terms p WHERE p.partner_id = r.partner AND p.effective_at <= r.at), 0)
		FROM settlement_state s, unnest($2::TEXT[], $3::TIMESTAMPTZ[]) WITH ORDINALITY AS r (partner, at, ord)
		WHERE s.shard = $1 ORDER BY r.ord FOR SHARE OF s`, rand.IntN(stateShards), partners, ats).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var ord, period, epoch, version int64
			if err := rows.Scan(&ord, &period, &epoch, &version); err != nil {
				return err
			}
			if ord < 1 || ord > int64(len(ps)) {
				return fmt.Errorf("stamp row %d of %d", ord, len(ps))
			}
			stamps[ord-1] = &stamp{period: period, epoch: epoch, priceVersion: version, partnerID: partners[ord-1], at: ats[ord-1], exposureShard: exposureShard}
		}
		return rows.Err()
	})
	terms := make([]*awardTerms, len(ps))
	queueBatchAwardTerms(b, ps, terms)
	if savepoint0 {
		b.Queue("SAVEPOINT " + savepoint(0))
	}
	return func() ([]*stamp, error) {
		for i, st := range stamps {
			if st == nil {
				return nil, fmt.Errorf("read settlement period: no stamp for command %d", i)
			}
			st.awardTerms = terms[i]
		}
		return stamps, nil
	}
}

// lookupKeys reads the idempotency records of a batch's keys in one READ COMMITTED read-only
// round trip (see lookupKey); the result is indexed like ps.
func (s *Store) lookupKeys(ctx context.Context, ps []*pending) (map[int]keyRecord, error) {
	found := map[int]keyRecord{}
	var b pgx.Batch
	queueLookupKeys(&b, ps, found)
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("look up idempotency keys: %w", err)
	}
	return found, nil
}

// queueLookupKeys queues lookupKeys' READ COMMITTED read-only transaction on b; found is
// filled, indexed like ps, when b has run.
func queueLookupKeys(b *pgx.Batch, ps []*pending, found map[int]keyRecord) {
	partners := make([]string, len(ps))
	keys := make([]string, len(ps))
	for i, p := range ps {
		partners[i], keys[i] = p.cmd.PartnerID, p.cmd.IdempotencyKey
	}
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY`)
	// LATERAL … LIMIT 1 keeps one primary-key lookup per key: as a plain semi-join, a cached
	// generic plan (which cannot know the arrays are short) scanned the whole table.
	b.Queue(`SELECT r.ord, k.fingerprint, k.outcome, k.error_reason, k.error_message
		FROM unnest($1::TEXT[], $2::TEXT[]) WITH ORDINALITY AS r (partner, key, ord),
		LATERAL (SELECT x.fingerprint, x.outcome, x.error_reason, x.error_message FROM idempotency_keys x
			WHERE x.partner_id = r.partner AND x.key = r.key LIMIT 1) AS k`, partners, keys).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var ord int
			var r keyRecord
			if err := rows.Scan(&ord, &r.fingerprint, &r.outcome, &r.errorReason, &r.errorMessage); err != nil {
				return fmt.Errorf("look up idempotency keys: %w", err)
			}
			if ord < 1 || ord > len(ps) {
				return fmt.Errorf("key row %d of %d", ord, len(ps))
			}
			found[ord-1] = r
		}
		return rows.Err()
	})
	b.Queue(`COMMIT`)
}
