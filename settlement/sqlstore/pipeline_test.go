package sqlstore_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// wire counts the round trips of a pool's connections: a client write that follows a read (or
// opens the connection's conversation) starts one. It can also cut a connection right after
// its next write, as a network failure would.
type wire struct {
	trips atomic.Int64
	cut   atomic.Bool // close the connection after its next write
}

type wireConn struct {
	net.Conn
	w       *wire
	mu      sync.Mutex
	writing bool
}

func (c *wireConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if !c.writing {
		c.writing = true
		c.w.trips.Add(1)
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(b)
	if err == nil && c.w.cut.CompareAndSwap(true, false) {
		_ = c.Conn.Close() // the request went out; its answer never comes back
	}
	return n, err
}

func (c *wireConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
	return c.Conn.Read(b)
}

// wiredPool opens a pool of at most maxConns connections on url whose traffic w sees. It never
// pings on acquire, so the counts are the code's own round trips.
func wiredPool(t *testing.T, url string, maxConns int32) (*pgxpool.Pool, *wire) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	w := &wire{}
	var d net.Dialer
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &wireConn{Conn: c, w: w}, nil
	}
	pool, err := pgxpool.NewWithConfig(ctxFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	return pool, w
}

// trips returns how many round trips fn took.
func (w *wire) count(fn func()) int64 {
	before := w.trips.Load()
	fn()
	return w.trips.Load() - before
}

// pipelinedIncrement is a RunPipelined transaction in the shape of an award: a READ COMMITTED
// read before BEGIN, a read after it, and a write sent with COMMIT. It records the isolation
// levels each read ran at.
func pipelinedIncrement(r *sqlstore.Runner, ctx context.Context, k string, levels *[2]string) error {
	return r.RunPipelined(ctx, func(p *sqlstore.Pipeline) {
		p.Before.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY`)
		p.Before.Queue(`SELECT current_setting('transaction_isolation')`).QueryRow(func(row pgx.Row) error {
			return row.Scan(&levels[0])
		})
		p.Before.Queue(`COMMIT`)
		p.First.Queue(`SELECT current_setting('transaction_isolation')`).QueryRow(func(row pgx.Row) error {
			return row.Scan(&levels[1])
		})
	}, func(ctx context.Context, tx pgx.Tx, p *sqlstore.Pipeline) error {
		p.Last.Queue(`UPDATE kv SET v = v + 1 WHERE k = $1`, k)
		return nil
	})
}

// TestRunPipelinedTwoRoundTrips: the read before BEGIN runs READ COMMITTED, the one after it
// SERIALIZABLE (whatever the server's default), and the whole transaction is two round trips.
func TestRunPipelinedTwoRoundTrips(t *testing.T) {
	url := kvURL(t, "a")
	pool, w := wiredPool(t, url, 1)
	r := newRunner(t, pool, sqlstore.RunnerConfig{})
	ctx := ctxFor(t)
	if _, err := pool.Exec(ctx, `SET default_transaction_isolation = 'read committed'`); err != nil {
		t.Fatal(err)
	}
	var levels [2]string
	if err := pipelinedIncrement(r, ctx, "a", &levels); err != nil { // prepares the statements
		t.Fatalf("RunPipelined: %v", err)
	}
	var err error
	trips := w.count(func() { err = pipelinedIncrement(r, ctx, "a", &levels) })
	if err != nil {
		t.Fatalf("RunPipelined: %v", err)
	}
	if trips != 2 {
		t.Errorf("round trips: got %d, want 2 (BEGIN with the reads, the write with COMMIT)", trips)
	}
	if levels != [2]string{"read committed", "serializable"} {
		t.Errorf("isolation before and after BEGIN: got %q, want [read committed serializable]", levels)
	}
	if v, err := kvGet(ctx, pool, "a"); err != nil || v != 2 {
		t.Errorf("a: got %d (%v), want 2", v, err)
	}
}

// kvURL is kvPool's database, for tests that open their own pool on it.
func kvURL(t *testing.T, keys ...string) string {
	t.Helper()
	pool := kvPool(t, keys...)
	return pool.Config().ConnString()
}

// TestRunPipelinedRetriesCommitTimeSerializationFailure is the write skew of
// TestRunnerRetriesCommitTimeSerializationFailure with the reads in the first round trip and
// the writes sent with COMMIT: T2 fails in its last round trip, after T1 committed, and the
// runner must run all of T2 again (its reads too) instead of reporting success.
func TestRunPipelinedRetriesCommitTimeSerializationFailure(t *testing.T) {
	pool := kvPool(t, "x", "y")
	var log1, log2 retryLog
	r1 := newRunner(t, pool, sqlstore.RunnerConfig{BackoffBase: time.Millisecond, OnRetry: log1.onRetry})
	r2 := newRunner(t, pool, sqlstore.RunnerConfig{BackoffBase: time.Millisecond, OnRetry: log2.onRetry})
	read1, read2, t1Done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var attempts1, attempts2 atomic.Int32
	ctx := ctxFor(t)

	// skew reads from in the first round trip and writes to = read + add with COMMIT.
	skew := func(r *sqlstore.Runner, attempts *atomic.Int32, from, to string, add int64, wait func(n int32)) error {
		var v int64
		return r.RunPipelined(ctx, func(p *sqlstore.Pipeline) {
			p.First.Queue(`SELECT v FROM kv WHERE k = $1`, from).QueryRow(func(row pgx.Row) error { return row.Scan(&v) })
		}, func(ctx context.Context, tx pgx.Tx, p *sqlstore.Pipeline) error {
			wait(attempts.Add(1))
			p.Last.Queue(`UPDATE kv SET v = $2 WHERE k = $1`, to, v+add)
			return nil
		})
	}
	var wg sync.WaitGroup
	var err1, err2 error
	wg.Go(func() {
		defer close(t1Done)
		err1 = skew(r1, &attempts1, "x", "y", 10, func(n int32) {
			if n == 1 {
				close(read1)
				<-read2
			}
		})
	})
	wg.Go(func() {
		err2 = skew(r2, &attempts2, "y", "x", 100, func(n int32) {
			if n == 1 {
				close(read2)
				<-read1
				<-t1Done // commit only once T1 has
			}
		})
	})
	wg.Wait()
	if err1 != nil || err2 != nil {
		t.Fatalf("RunPipelined: got %v and %v, want nil and nil", err1, err2)
	}
	if got := attempts2.Load(); got != 2 {
		t.Errorf("T2 attempts: got %d, want 2 (the first failed in its commit round trip)", got)
	}
	codes, errs := log2.snapshot()
	if len(codes) != 1 || codes[0] != "40001" || !strings.Contains(errs[0].Error(), "commit") {
		t.Errorf("T2 retried: got %q (%v), want one 40001 raised in the commit round trip", codes, errs)
	}
	if codes, _ := log1.snapshot(); len(codes) != 0 || attempts1.Load() != 1 {
		t.Errorf("T1: %d attempts, retries %q; want 1 attempt, no retry", attempts1.Load(), codes)
	}
	x, errX := kvGet(ctx, pool, "x")
	y, errY := kvGet(ctx, pool, "y")
	if errX != nil || errY != nil || x != 110 || y != 10 {
		t.Errorf("final x, y: got %d, %d (%v, %v); want 110, 10 (T1 then T2)", x, y, errX, errY)
	}
}

// TestRunPipelinedRollsBackFailures: a failure anywhere (a statement of the first round trip,
// the closure, a statement sent with COMMIT) leaves nothing of the transaction, is not retried,
// and leaves the pool's one connection usable.
func TestRunPipelinedRollsBackFailures(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		first   string // queued after BEGIN
		fnErr   error  // returned by the closure after its own write
		last    string // queued with COMMIT
		wantErr func(error) bool
	}{
		{"first round trip", `SELECT 1 / (v - v) FROM kv WHERE k = 'a'`, nil, `SELECT 1`, isPgCode("22012")},
		{"closure", `SELECT 1`, boom, `SELECT 1`, func(err error) bool { return errors.Is(err, boom) }},
		{"with commit", `SELECT 1`, nil, `INSERT INTO kv (k, v) VALUES ('a', 7)`, isPgCode("23505")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := openPool(t, kvURL(t, "a"), 1)
			r := newRunner(t, pool, sqlstore.RunnerConfig{})
			ctx := ctxFor(t)
			attempts := 0
			err := r.RunPipelined(ctx, func(p *sqlstore.Pipeline) {
				p.First.Queue(`UPDATE kv SET v = 42 WHERE k = 'a'`)
				p.First.Queue(tt.first)
			}, func(ctx context.Context, tx pgx.Tx, p *sqlstore.Pipeline) error {
				attempts++
				if _, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('b', 1)`); err != nil {
					return err
				}
				p.Last.Queue(`UPDATE kv SET v = v + 1 WHERE k = 'b'`)
				p.Last.Queue(tt.last)
				return tt.fnErr
			})
			if !tt.wantErr(err) || attempts > 1 {
				t.Fatalf("RunPipelined: got %v after %d attempts, want the %s failure after at most 1", err, attempts, tt.name)
			}
			if v, err := kvGet(ctx, pool, "a"); err != nil || v != 0 {
				t.Errorf("a: got %d (%v), want 0: the transaction's writes must be rolled back", v, err)
			}
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM kv`).Scan(&n); err != nil || n != 1 {
				t.Errorf("rows: got %d (%v), want 1", n, err)
			}
		})
	}
}

func isPgCode(code string) func(error) bool {
	return func(err error) bool {
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == code
	}
}

// TestRunPipelinedAmbiguousCommit: the connection breaks after the round trip that carries
// COMMIT went out. The runner cannot know whether it committed: it reports
// ErrAmbiguousCommit and does not run the transaction again.
func TestRunPipelinedAmbiguousCommit(t *testing.T) {
	url := kvURL(t, "a")
	pool, w := wiredPool(t, url, 1)
	r := newRunner(t, pool, sqlstore.RunnerConfig{BackoffBase: time.Millisecond})
	ctx := ctxFor(t)
	run := func(cut bool) (int, error) {
		attempts := 0
		err := r.RunPipelined(ctx, func(p *sqlstore.Pipeline) {
			p.First.Queue(`SELECT 1`)
		}, func(ctx context.Context, tx pgx.Tx, p *sqlstore.Pipeline) error {
			attempts++
			p.Last.Queue(`UPDATE kv SET v = v + 1 WHERE k = 'a'`)
			w.cut.Store(cut)
			return nil
		})
		return attempts, err
	}
	if _, err := run(false); err != nil { // prepares the statements: the cut then hits COMMIT's round trip
		t.Fatalf("RunPipelined: %v", err)
	}
	attempts, err := run(true)
	if !errors.Is(err, settlement.ErrAmbiguousCommit) || attempts != 1 {
		t.Fatalf("RunPipelined with the connection cut at COMMIT: got %v after %d attempts, want ErrAmbiguousCommit after 1", err, attempts)
	}
	// The pool replaced the broken connection; the increment is there or not, never twice.
	v, err := kvGet(ctx, pool, "a")
	if err != nil || v < 1 || v > 2 {
		t.Errorf("a: got %d (%v), want 1 or 2", v, err)
	}
}

// TestRunPipelinedInjectFailureRate: the test hook works on the pipelined runner as on Run:
// retried serialization failures, ambiguous outcomes committed or not, never a double effect.
func TestRunPipelinedInjectFailureRate(t *testing.T) {
	pool := kvPool(t, "a")
	var log retryLog
	r := newRunner(t, pool, sqlstore.RunnerConfig{InjectFailureRate: 0.5, OnRetry: log.onRetry})
	ctx := ctxFor(t)
	var levels [2]string
	ok, ambiguous := countInjected(t, 200, func() error { return pipelinedIncrement(r, ctx, "a", &levels) })
	v, err := kvGet(ctx, pool, "a")
	if err != nil {
		t.Fatal(err)
	}
	codes, _ := log.snapshot()
	if ambiguous == 0 || len(codes) == 0 {
		t.Fatalf("%d ambiguous outcomes, %d retries: the hook did not fire", ambiguous, len(codes))
	}
	if v < int64(ok) || v > int64(ok+ambiguous) {
		t.Errorf("value %d after %d ok and %d ambiguous runs: want between %d and %d", v, ok, ambiguous, ok, ok+ambiguous)
	}
}

// TestPipelinedTxRefusesTransactionControl: the closure may run statements, never end or nest
// the transaction, which the runner owns.
func TestPipelinedTxRefusesTransactionControl(t *testing.T) {
	pool := kvPool(t, "a")
	r := newRunner(t, pool, sqlstore.RunnerConfig{})
	err := r.RunPipelined(ctxFor(t), func(*sqlstore.Pipeline) {}, func(ctx context.Context, tx pgx.Tx, _ *sqlstore.Pipeline) error {
		if _, err := tx.Exec(ctx, `UPDATE kv SET v = 5 WHERE k = 'a'`); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err == nil {
		t.Fatal("RunPipelined with a closure that commits: got nil, want an error")
	}
	if v, err := kvGet(ctxFor(t), pool, "a"); err != nil || v != 0 {
		t.Errorf("a: got %d (%v), want 0", v, err)
	}
}
