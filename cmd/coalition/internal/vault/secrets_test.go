package vault_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault/vaulttest"
	"github.com/coalitionexchange/coalition/settlement"
)

// TestTransitSignVerify: a statement signed by Transit verifies; a tampered
// payload, a foreign key name or a signature from a rotated-away version
// mismatch does not.
func TestTransitSignVerify(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.Config{})
	signer, err := vault.NewTransitSigner(operatorClient(t, srv), "transit", "statements")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	payload := []byte(`{"run":7,"partner":"acme-air","net":"-1250.00"}`)
	sig, err := signer.Sign(ctx, payload)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if sig.KeyName != "statements" || sig.KeyVersion != 1 || !bytes.HasPrefix([]byte(sig.Value), []byte("vault:v1:")) {
		t.Errorf("got %+v, want key statements v1 with a vault:v1: value", sig)
	}
	if err := signer.Verify(ctx, payload, sig); err != nil {
		t.Errorf("Verify original: %v", err)
	}
	tampered := bytes.Replace(payload, []byte("1250"), []byte("1200"), 1)
	if err := signer.Verify(ctx, tampered, sig); !errors.Is(err, settlement.ErrBadSignature) {
		t.Errorf("Verify tampered: got %v, want ErrBadSignature", err)
	}
	foreign := sig
	foreign.KeyName = "other"
	if err := signer.Verify(ctx, payload, foreign); !errors.Is(err, settlement.ErrBadSignature) {
		t.Errorf("Verify foreign key: got %v, want ErrBadSignature", err)
	}

	srv.RotateTransitKey("statements")
	sig2, err := signer.Sign(ctx, payload)
	if err != nil || sig2.KeyVersion != 2 {
		t.Fatalf("Sign after rotation: got %+v, %v; want version 2", sig2, err)
	}
	for _, s := range []settlement.Signature{sig, sig2} {
		if err := signer.Verify(ctx, payload, s); err != nil {
			t.Errorf("Verify v%d after rotation: %v", s.KeyVersion, err)
		}
	}
}

func TestKVPartnerSecret(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.Config{})
	srv.PutKV("coalition/partners/acme-air", map[string]any{"endpoint": "https://acme.example:443", "api_key": "s3cret"})
	srv.PutKV("coalition/partners/acme-air", map[string]any{"endpoint": "https://acme.example:8443", "api_key": "s3cret2"})
	srv.PutKV("coalition/partners/bad", map[string]any{"timeout": 5})
	kv, err := vault.NewKV(operatorClient(t, srv), "secret")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := kv.PartnerSecret(ctx, "acme-air")
	if err != nil {
		t.Fatalf("PartnerSecret: %v", err)
	}
	if got.Version != 2 || got.Data["endpoint"] != "https://acme.example:8443" || got.Data["api_key"] != "s3cret2" {
		t.Errorf("got %+v, want version 2 with the new endpoint", got)
	}
	if _, err := kv.PartnerSecret(ctx, "nobody"); !errors.Is(err, vault.ErrPartnerSecretNotFound) {
		t.Errorf("missing partner: got %v, want ErrPartnerSecretNotFound", err)
	}
	if _, err := kv.PartnerSecret(ctx, "../sys"); !errors.Is(err, vault.ErrInvalidPartnerID) {
		t.Errorf("path escape: got %v, want ErrInvalidPartnerID", err)
	}
	if _, err := kv.PartnerSecret(ctx, "bad"); err == nil {
		t.Errorf("non-string field: got nil error")
	}
}

// TestDatabaseCredentials: the lease is renewed while it may be, a new user
// is fetched at its max TTL, and the URL carries the current user.
func TestDatabaseCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := vaulttest.StartPipe(t, vaulttest.Config{LeaseTTL: time.Hour, LeaseMaxTTL: 3 * time.Hour, TokenMaxTTL: 100 * time.Hour})
		c, err := vault.New(vault.Config{Address: srv.URL, HTTPClient: srv.HTTPClient, Token: srv.OperatorToken(100 * time.Hour), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		db, err := vault.NewDatabaseCredentials(context.Background(), c, "database", "coalition")
		if err != nil {
			t.Fatalf("NewDatabaseCredentials: %v", err)
		}
		firstUser, _ := db.Current()
		raw, err := db.URL("postgres://ignored:old@db.internal:26257/coalition?sslmode=verify-full")
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(raw)
		if pw, _ := u.User.Password(); u.User.Username() != firstUser || pw == "old" || u.Host != "db.internal:26257" || u.RawQuery != "sslmode=verify-full" {
			t.Errorf("URL: got %s, want the issued user on the same host and options", u.Redacted())
		}
		runInBackground(t, db.Run)
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if fetches, renewals := db.Counts(); fetches != 1 || renewals < 1 {
			t.Errorf("after 2h of a 1h lease: got %d fetches and %d renewals, want 1 and some", fetches, renewals)
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if fetches, _ := db.Counts(); fetches < 2 {
			t.Errorf("after the 3h max ttl: got %d fetches, want a new user", fetches)
		}
		if user, _ := db.Current(); user == firstUser {
			t.Errorf("still using the first user %s after its lease ended", user)
		}
	})
}
