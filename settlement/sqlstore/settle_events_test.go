package sqlstore_test

import (
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

// A published run queues settlement.statement_ready, in the run's own transaction, for the
// subscribed partners that have a statement in it, naming the run; a re-run queues its own.
func TestSettlementQueuesStatementReady(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	for _, p := range []string{acme, fuel} {
		_, err := e.store.SetPartnerEndpoint(ctxFor(t), settlement.PartnerEndpoint{PartnerID: p, Endpoint: "127.0.0.1:9",
			Events: []string{settlement.EventStatementReady}}.WithDefaults(), e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	e.must(t, award(acme, "M-1", "a-1", 100)) // bean-coffee subscribes to nothing; city-fuel has no statement
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	run := e.settle(t, cutoff)
	events, err := e.store.ListOutbox(ctxFor(t), "", settlement.OutboxPending, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ready []settlement.OutboxEvent
	for _, ev := range events {
		if ev.Type == settlement.EventStatementReady {
			ready = append(ready, ev)
		}
	}
	if len(ready) != 1 || ready[0].PartnerID != acme || ready[0].RunID != run.ID {
		t.Fatalf("statement_ready events = %+v, want one for %s naming run %d", ready, acme, run.ID)
	}
	// A re-run of the closed period (identical statements, or a client retrying a run whose
	// answer it lost) tells nobody again.
	rerun := e.settle(t, cutoff)
	if rerun.ID == run.ID || rerun.Period != run.Period {
		t.Fatalf("re-run: run %d of period %d, want a new run of period %d", rerun.ID, rerun.Period, run.Period)
	}
	events, err = e.store.ListOutbox(ctxFor(t), "", settlement.OutboxPending, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range events {
		if ev.Type == settlement.EventStatementReady {
			n++
		}
	}
	if n != 1 {
		t.Errorf("statement_ready events after a re-run: %d, want still 1", n)
	}
}
