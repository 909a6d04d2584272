package settlement

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeStore records calls. Apply reports each call on entered (when set) and, for acme-air,
// waits for gate to close (when set).
type fakeStore struct {
	mu       sync.Mutex
	applied  []Command
	entered  chan Command
	gate     chan struct{}
	expired  int // holds ReleaseExpiredHolds has left to release
	sweeps   int
	listArgs []int
	txns     []Transaction
}

func (f *fakeStore) Apply(ctx context.Context, cmd Command, fp []byte, now time.Time) (Outcome, error) {
	f.mu.Lock()
	f.applied = append(f.applied, cmd)
	f.mu.Unlock()
	if f.entered != nil {
		f.entered <- cmd
	}
	if f.gate != nil && cmd.PartnerID == "acme-air" {
		<-f.gate
	}
	return Outcome{Transaction: Transaction{ID: "t-" + cmd.IdempotencyKey}}, nil
}

func (f *fakeStore) Balance(ctx context.Context, memberID string) (Balance, error) {
	return Balance{MemberID: memberID}, nil
}

func (f *fakeStore) ListTransactions(ctx context.Context, partnerID, memberID string, limit int, after *Page) ([]Transaction, error) {
	f.listArgs = append(f.listArgs, limit)
	return f.txns[:min(limit, len(f.txns))], nil
}

func (f *fakeStore) ReleaseExpiredHolds(ctx context.Context, now time.Time, limit int) (int, error) {
	f.sweeps++
	n := min(f.expired, limit)
	f.expired -= n
	return n, nil
}

func newTestLedger(t *testing.T, store Store) *Ledger {
	t.Helper()
	l, err := New(Config{Store: store, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func TestNewRequiresStore(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a store: got nil error, want one")
	}
}

func TestApplyValidatesBeforeTheStore(t *testing.T) {
	store := &fakeStore{}
	l := newTestLedger(t, store)
	cmd := validCommand(OpRedeem)
	cmd.Points = 0
	_, err := l.Apply(t.Context(), cmd)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Apply(invalid): got %v, want *ValidationError", err)
	}
	if got := len(store.applied); got != 0 {
		t.Errorf("store calls: got %d, want 0", got)
	}
}

func TestApplyInFlightGuard(t *testing.T) {
	store := &fakeStore{entered: make(chan Command, 8), gate: make(chan struct{})}
	l := newTestLedger(t, store)
	cmd := validCommand(OpAward)
	done := make(chan error)
	go func() {
		_, err := l.Apply(context.Background(), cmd)
		done <- err
	}()
	<-store.entered // the first request is inside the store, waiting on the gate

	if _, err := l.Apply(t.Context(), cmd); !errors.Is(err, ErrIdempotencyKeyInFlight) {
		t.Errorf("same key while in flight: got %v, want ErrIdempotencyKeyInFlight", err)
	}
	other := cmd
	other.PartnerID = "bean-coffee"
	if _, err := l.Apply(t.Context(), other); err != nil {
		t.Errorf("same key, other partner: got %v, want nil", err)
	}
	close(store.gate)
	if err := <-done; err != nil {
		t.Fatalf("first request: got %v, want nil", err)
	}
	if _, err := l.Apply(t.Context(), cmd); err != nil {
		t.Errorf("same key after completion: got %v, want nil (the store replays it)", err)
	}
	if got := len(store.applied); got != 3 {
		t.Errorf("store calls: got %d, want 3 (the in-flight duplicate never reaches it)", got)
	}
}

func TestListTransactionsPaging(t *testing.T) {
	at := testNow
	store := &fakeStore{txns: []Transaction{{ID: "c", CreatedAt: at}, {ID: "b", CreatedAt: at}, {ID: "a", CreatedAt: at}}}
	l := newTestLedger(t, store)

	page, next, err := l.ListTransactions(t.Context(), "acme-air", "m-1", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(page); got != 2 {
		t.Errorf("page length: got %d, want 2", got)
	}
	if next == nil || next.ID != "b" {
		t.Errorf("next page: got %+v, want after b", next)
	}
	page, next, err = l.ListTransactions(t.Context(), "acme-air", "m-1", 3, nil)
	if err != nil || len(page) != 3 || next != nil {
		t.Errorf("exact page: got %d transactions, next %+v, err %v; want 3, nil, nil", len(page), next, err)
	}
	if _, _, err := l.ListTransactions(t.Context(), "acme-air", "m-1", 0, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := store.listArgs, []int{3, 4, DefaultPageSize + 1}; !slices.Equal(got, want) {
		t.Errorf("store limits: got %v, want %v", got, want)
	}

	_, _, err = l.ListTransactions(t.Context(), "acme-air", "", -1, nil)
	if got, want := violatedFields(t, err), []string{"member_id", "page_size"}; !slices.Equal(got, want) {
		t.Errorf("violations: got %q, want %q", got, want)
	}
}

func TestSweepHoldsBatches(t *testing.T) {
	tests := []struct {
		name       string
		expired    int
		batch      int
		want       int
		wantSweeps int
	}{
		{"none", 0, 10, 0, 1},
		{"less than a batch", 7, 10, 7, 1},
		{"exact batches", 20, 10, 20, 3},
		{"several batches", 25, 10, 25, 3},
		{"batch size 0 uses a default", 250, 0, 250, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &fakeStore{expired: tt.expired}
			l := newTestLedger(t, store)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			got, err := l.SweepHolds(ctx, tt.batch)
			if err != nil {
				t.Fatalf("SweepHolds: %v", err)
			}
			if got != tt.want || store.sweeps != tt.wantSweeps {
				t.Errorf("SweepHolds: got %d released in %d calls, want %d in %d", got, store.sweeps, tt.want, tt.wantSweeps)
			}
		})
	}
}
