package sqlstore_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

func TestListTransactionsPaging(t *testing.T) {
	e := newEnv(t, envConfig{})
	const member = "m-list"
	var want []string // acme's transactions with member, oldest first
	e.must(t, award(bean, member, "bean-award", 1000))
	e.must(t, award(acme, "m-other", "other-award", 10))
	for i := range 7 {
		out := e.must(t, award(acme, member, fmt.Sprintf("a-%d", i), int64(10+i)))
		want = append(want, out.Transaction.ID)
		if i%3 != 2 { // some share a timestamp: the id breaks the tie
			e.clock.Advance(time.Second)
		}
	}
	h := e.must(t, authorize(acme, member, "h-1", 5))
	v := e.must(t, void(acme, "v-1", h.Hold.ID))
	r := e.must(t, redeem(acme, member, "r-1", 3))
	rev := e.must(t, reverse(acme, "rev-1", r.Transaction.ID, 0))
	want = append(want, h.Transaction.ID, v.Transaction.ID, r.Transaction.ID, rev.Transaction.ID)
	e.must(t, redeem(bean, member, "bean-redeem", 1))
	slices.Reverse(want) // newest first...
	// ...and within one timestamp, the larger id first.
	created := map[string]time.Time{}
	for _, id := range want {
		var at time.Time
		if err := e.pool.QueryRow(ctxFor(t), `SELECT created_at FROM transactions WHERE id = $1`, id).Scan(&at); err != nil {
			t.Fatal(err)
		}
		created[id] = at
	}
	slices.SortStableFunc(want, func(a, b string) int {
		if c := created[b].Compare(created[a]); c != 0 {
			return c
		}
		switch {
		case a > b:
			return -1
		case a < b:
			return 1
		}
		return 0
	})

	var got []string
	var pages []int
	var after *settlement.Page
	for range len(want) + 1 { // bounded: one page per transaction at most
		page, next, err := e.ledger.ListTransactions(ctxFor(t), acme, member, 3, after)
		if err != nil {
			t.Fatalf("ListTransactions: %v", err)
		}
		pages = append(pages, len(page))
		for _, txn := range page {
			got = append(got, txn.ID)
			if txn.PartnerID != acme || txn.MemberID != member {
				t.Errorf("transaction %s: got partner %s member %s, want %s, %s", txn.ID, txn.PartnerID, txn.MemberID, acme, member)
			}
		}
		if next == nil {
			break
		}
		after = next
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed ids:\n got %q\nwant %q", got, want)
	}
	if wantPages := []int{3, 3, 3, 2}; !slices.Equal(pages, wantPages) {
		t.Errorf("page sizes: got %v, want %v", pages, wantPages)
	}

	all, next, err := e.ledger.ListTransactions(ctxFor(t), acme, member, 0, nil)
	if err != nil || next != nil || len(all) != len(want) {
		t.Fatalf("default page: got %d transactions, next %v, err %v; want %d, nil, nil", len(all), next, err, len(want))
	}
	byID := map[string]settlement.Transaction{}
	for _, txn := range all {
		byID[txn.ID] = txn
	}
	if got := byID[rev.Transaction.ID]; got.Kind != settlement.KindReversal || got.ReversesID != r.Transaction.ID || got.Points != 3 {
		t.Errorf("listed reversal: got %+v, want a reversal of 3 of %s", got, r.Transaction.ID)
	}
	if got := byID[r.Transaction.ID]; got.ReversedPoints != 3 || got.Status() != settlement.StatusReversed || got.Reference != "redeem r-1" {
		t.Errorf("listed redemption: got %+v (status %s), want reversed 3 with its reference", got, got.Status())
	}
	if got := byID[v.Transaction.ID]; got.Kind != settlement.KindRelease || got.HoldID != h.Hold.ID {
		t.Errorf("listed void: got %+v, want a release of hold %s", got, h.Hold.ID)
	}
	if got := byID[want[len(want)-1]]; got.HoldID != "" || got.ReversesID != "" {
		t.Errorf("listed award: got %+v, want no hold and no reversed id", got)
	}

	none, next, err := e.ledger.ListTransactions(ctxFor(t), acme, "m-nobody", 10, nil)
	if err != nil || len(none) != 0 || next != nil {
		t.Errorf("unknown member: got %d transactions, next %v, err %v; want none", len(none), next, err)
	}
	var ve *settlement.ValidationError
	if _, _, err := e.ledger.ListTransactions(ctxFor(t), acme, member, settlement.MaxPageSize+1, nil); !errors.As(err, &ve) {
		t.Errorf("page size too big: got %v, want *ValidationError", err)
	}
}
