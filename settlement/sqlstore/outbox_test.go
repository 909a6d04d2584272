package sqlstore_test

import (
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

// TestOutboxWrittenWithTheChange: an event row exists exactly when its ledger change
// committed, for subscribed partners only: awards notify the others, redemptions the issuers
// of the consumed lots, and a refused redemption writes nothing.
func TestOutboxWrittenWithTheChange(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := ctxFor(t)
	const city = "city-fuel"
	for _, id := range []string{acme, bean, city} {
		if _, err := e.store.EnsurePartner(ctx, settlement.Partner{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ep := range []settlement.PartnerEndpoint{
		{PartnerID: acme, Endpoint: "acme.test:443", Events: []string{settlement.EventPointsRedeemed, settlement.EventPointsAwardedElsewhere}},
		{PartnerID: city, Endpoint: "city.test:443", Events: []string{settlement.EventPointsAwardedElsewhere}},
	} {
		if _, err := e.store.SetPartnerEndpoint(ctx, ep.WithDefaults(), time.Now()); err != nil {
			t.Fatalf("SetPartnerEndpoint %s: %v", ep.PartnerID, err)
		}
	}
	award := e.must(t, settlement.Command{Op: settlement.OpAward, PartnerID: acme, IdempotencyKey: "a-1", MemberID: "M-1", Points: 100})
	e.must(t, settlement.Command{Op: settlement.OpAward, PartnerID: bean, IdempotencyKey: "a-2", MemberID: "M-2", Points: 100})
	redeem := e.must(t, settlement.Command{Op: settlement.OpRedeem, PartnerID: bean, IdempotencyKey: "r-1", MemberID: "M-1", Points: 30})
	e.must(t, settlement.Command{Op: settlement.OpRedeem, PartnerID: bean, IdempotencyKey: "r-2", MemberID: "M-2", Points: 30})
	e.fails(t, settlement.Command{Op: settlement.OpRedeem, PartnerID: bean, IdempotencyKey: "r-3", MemberID: "M-1", Points: 1000}, settlement.ErrInsufficientPoints)

	count := func(partner, typ, txn string) int64 {
		return e.queryInt(t, `SELECT count(*) FROM outbox_events WHERE partner_id = $1 AND event_type = $2 AND ($3 = '' OR txn_id::TEXT = $3)`, partner, typ, txn)
	}
	tests := []struct {
		what         string
		partner, typ string
		txn          string
		want         int64
	}{
		{"acme's own award is not elsewhere", acme, settlement.EventPointsAwardedElsewhere, award.Transaction.ID, 0},
		{"city hears of acme's award", city, settlement.EventPointsAwardedElsewhere, award.Transaction.ID, 1},
		{"acme hears of bean's award", acme, settlement.EventPointsAwardedElsewhere, "", 1},
		{"bean subscribed to nothing", bean, settlement.EventPointsAwardedElsewhere, "", 0},
		{"acme hears its lot redeemed", acme, settlement.EventPointsRedeemed, redeem.Transaction.ID, 1},
		{"acme hears only of its own lots", acme, settlement.EventPointsRedeemed, "", 1},
		{"city is not subscribed to redemptions", city, settlement.EventPointsRedeemed, "", 0},
	}
	for _, tt := range tests {
		if got := count(tt.partner, tt.typ, tt.txn); got != tt.want {
			t.Errorf("%s: got %d events, want %d", tt.what, got, tt.want)
		}
	}
	if got := e.queryInt(t, `SELECT count(*) FROM outbox_events`); got != 4 {
		t.Errorf("outbox rows: got %d, want 4 (the refused redemption wrote none)", got)
	}
}
