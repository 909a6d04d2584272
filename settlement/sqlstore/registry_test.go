package sqlstore_test

import (
	"errors"
	"testing"

	"github.com/coalitionexchange/coalition/settlement"
)

func TestPartnerRegistry(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx := ctxFor(t)
	if _, err := e.store.Partner(ctx, acme); !errors.Is(err, settlement.ErrPartnerUnknown) {
		t.Fatalf("Partner(unregistered): got %v, want ErrPartnerUnknown", err)
	}
	created, err := e.store.EnsurePartner(ctx, settlement.Partner{ID: acme, Name: "Acme Air"})
	if err != nil || !created {
		t.Fatalf("EnsurePartner(new): got %v, %v; want true, nil", created, err)
	}
	if err := e.store.UpsertPartner(ctx, settlement.Partner{ID: acme, Name: "Acme Airlines", Status: settlement.PartnerSuspended}); err != nil {
		t.Fatalf("UpsertPartner: %v", err)
	}
	created, err = e.store.EnsurePartner(ctx, settlement.Partner{ID: acme, Name: "Acme Air"})
	if err != nil || created {
		t.Fatalf("EnsurePartner(existing): got %v, %v; want false, nil", created, err)
	}
	got, err := e.store.Partner(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	if want := (settlement.Partner{ID: acme, Name: "Acme Airlines", Status: settlement.PartnerSuspended}); got != want {
		t.Errorf("Partner: got %+v, want %+v (EnsurePartner leaves an existing partner alone)", got, want)
	}
	if err := e.store.UpsertPartner(ctx, settlement.Partner{ID: bean, Name: "Bean Coffee"}); err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.Partner(ctx, bean); err != nil || got.Status != settlement.PartnerActive {
		t.Errorf("Partner(%s): got %+v, %v; want active by default", bean, got, err)
	}
	if err := e.store.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}
