package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/coalitionexchange/coalition/settlement"
)

// Pipeline is what one attempt of Runner.RunPipelined sends around its closure. Each attempt
// gets a fresh one.
type Pipeline struct {
	// Before are statements sent in the first round trip ahead of BEGIN, in transactions of
	// their own: a READ COMMITTED read between its own BEGIN and COMMIT, for example. They
	// must leave the connection outside a transaction.
	Before pgx.Batch
	// First are statements sent in the first round trip right after BEGIN, inside the
	// transaction.
	First pgx.Batch
	// Last are statements sent in the last round trip, right before COMMIT. Each must fail,
	// not merely affect fewer rows than expected, when the transaction must not commit: the
	// runner commits when they all succeed and checks nothing else.
	Last pgx.Batch
}

// beginSerializable begins a pipelined transaction. The server's default isolation may be
// anything; SERIALIZABLE is explicit, as in Run.
const beginSerializable = "BEGIN ISOLATION LEVEL SERIALIZABLE"

// RunPipelined is Run with fewer round trips, over one pooled connection: prepare queues on
// p.Before and p.First the statements that go in the first round trip with BEGIN (p.Before,
// BEGIN, p.First); fn then runs in the transaction, with the results of that round trip (the
// queued statements' callbacks have run), and may queue statements on p.Last, which are sent
// with COMMIT in one round trip. With nothing on p.Last, COMMIT goes alone.
//
// The guarantees are Run's: the whole attempt (prepare, the first round trip, fn, COMMIT) is
// run again on 40001 and 40P01, including failures raised by p.Last or COMMIT; a failed
// statement or an error from fn rolls the transaction back; COMMIT and p.Last run on a context
// detached from the caller's, bounded by commitTimeout; an outcome the runner cannot know is
// settlement.ErrAmbiguousCommit; InjectFailureRate applies. Errors: as Run.
func (r *Runner) RunPipelined(ctx context.Context, prepare func(p *Pipeline), fn func(ctx context.Context, tx pgx.Tx, p *Pipeline) error) error {
	return r.retry(ctx, func(ctx context.Context) error { return r.oncePipelined(ctx, prepare, fn) })
}

func (r *Runner) oncePipelined(ctx context.Context, prepare func(p *Pipeline), fn func(ctx context.Context, tx pgx.Tx, p *Pipeline) error) error {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return retryable(fmt.Errorf("begin: %w", err))
	}
	// The pool closes a connection released inside a transaction (one whose ROLLBACK failed).
	defer conn.Release()
	tx := &pipeTx{conn: conn.Conn()}
	var p Pipeline
	prepare(&p)
	var b pgx.Batch
	b.QueuedQueries = append(b.QueuedQueries, p.Before.QueuedQueries...)
	b.Queue(beginSerializable)
	b.QueuedQueries = append(b.QueuedQueries, p.First.QueuedQueries...)
	if err := tx.conn.SendBatch(ctx, &b).Close(); err != nil {
		tx.abort()
		return retryable(fmt.Errorf("begin: %w", err))
	}
	if status := tx.conn.PgConn().TxStatus(); status != 'T' {
		tx.abort()
		return fmt.Errorf("begin: connection status %q after the first round trip, want a transaction", status)
	}
	if err := fn(ctx, tx, &p); err != nil {
		tx.abort()
		return retryable(err)
	}
	failBefore, failAfter := r.inject()
	if failBefore != nil {
		// As in once: fail the attempt before COMMIT. The last statements still run, so the
		// attempt exercises them.
		var lastErr error
		if len(p.Last.QueuedQueries) > 0 {
			lastErr = tx.conn.SendBatch(ctx, &p.Last).Close()
		}
		tx.abort()
		if lastErr != nil {
			return retryable(lastErr)
		}
		return failBefore
	}
	if err := tx.commit(ctx, &p.Last); err != nil {
		return err
	}
	if failAfter {
		return errInjectedAfterCommit
	}
	return nil
}

// pipeTx is a transaction begun by RunPipelined on a pooled connection (pgx's own Tx can only
// begin with the first statement of a batch, and RunPipelined's BEGIN comes after p.Before).
// The runner commits and rolls back; fn may only run statements.
type pipeTx struct {
	conn *pgx.Conn
}

var _ pgx.Tx = (*pipeTx)(nil)

// errPipeTxControl is what a closure gets for trying to end or nest a pipelined transaction.
var errPipeTxControl = errors.New("sqlstore: the runner begins, commits and rolls back a pipelined transaction")

func (t *pipeTx) Begin(context.Context) (pgx.Tx, error) { return nil, errPipeTxControl }
func (t *pipeTx) Commit(context.Context) error          { return errPipeTxControl }
func (t *pipeTx) Rollback(context.Context) error        { return errPipeTxControl }
func (t *pipeTx) Conn() *pgx.Conn                       { return t.conn }

// LargeObjects is not supported on a pipelined transaction: the returned value must not be used.
func (t *pipeTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

func (t *pipeTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return t.conn.CopyFrom(ctx, table, columns, src)
}

func (t *pipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.conn.SendBatch(ctx, b)
}

func (t *pipeTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Prepare(ctx, name, sql)
}

func (t *pipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.conn.Exec(ctx, sql, args...)
}

func (t *pipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.conn.Query(ctx, sql, args...)
}

func (t *pipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.conn.QueryRow(ctx, sql, args...)
}

// abort rolls back whatever transaction the connection is in (the pipelined one, or one of
// p.Before's left open by a failed statement). A failed ROLLBACK leaves the connection in a
// transaction, and the pool then closes it on release.
func (t *pipeTx) abort() {
	if t.conn.IsClosed() || t.conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	_, _ = t.conn.Exec(ctx, "ROLLBACK")
}

// commit sends last and COMMIT in one round trip, on a context detached from the caller's
// (see commitTimeout), and classifies the outcome as once does.
func (t *pipeTx) commit(ctx context.Context, last *pgx.Batch) error {
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	var tag pgconn.CommandTag
	committed := false
	last.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		tag, committed = ct, true
		return nil
	})
	err := t.conn.SendBatch(commitCtx, last).Close()
	var pgErr *pgconn.PgError
	switch {
	case err == nil && committed && tag.String() == "COMMIT":
		return nil
	case err == nil && committed:
		// COMMIT of a transaction that had already failed answers ROLLBACK.
		return fmt.Errorf("commit rolled back: %w", pgx.ErrTxCommitRollback)
	case isAmbiguousResult(err):
		// CockroachDB answered that it does not know whether the transaction committed.
		t.abort()
		return fmt.Errorf("%w: commit: %v", settlement.ErrAmbiguousCommit, err)
	case errors.As(err, &pgErr):
		// The server answered with an error: a statement of last failed, and the server skipped
		// the rest of the round trip, COMMIT included; or COMMIT itself failed. Either way the
		// transaction did not commit.
		t.abort()
		return retryable(fmt.Errorf("commit: %w", err))
	case err != nil && pgconn.SafeToRetry(err):
		t.abort()
		return fmt.Errorf("commit: nothing sent: %w", err)
	default:
		return fmt.Errorf("%w: commit: %v", settlement.ErrAmbiguousCommit, err)
	}
}
