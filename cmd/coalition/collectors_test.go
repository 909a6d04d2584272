package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

// TestOutboxCollector: the outbox depth and oldest age per partner come from pending events.
func TestOutboxCollector(t *testing.T) {
	requirePostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := sqlstore.Open(ctx, sqlstoretest.NewDatabase(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := sqlstore.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, state := range []string{"pending", "pending", "delivered"} {
		_, err := pool.Exec(ctx, `INSERT INTO outbox_events (id, partner_id, event_type, member_id, points, at_partner_id, txn_id, created_at, state, next_attempt_at)
			VALUES (gen_random_uuid(), 'acme-air', 'points.redeemed', 'M-1', 10, 'city-fuel', gen_random_uuid(), $1, $2, $1)`,
			old.Add(time.Duration(i)*time.Minute), state)
		if err != nil {
			t.Fatal(err)
		}
	}
	c := newOutboxCollector(store)
	c.now = func() time.Time { return old.Add(time.Hour) }
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"coalition_outbox_depth/acme-air": 2, "coalition_outbox_oldest_age_seconds/acme-air": 3600}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
