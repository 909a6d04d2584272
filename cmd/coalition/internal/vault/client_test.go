package vault_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault/vaulttest"
)

// appRoleClient returns a started AppRole client of srv, with its logs in
// logs when that is not nil.
func appRoleClient(t *testing.T, srv *vaulttest.Server, clock vault.Clock, logs io.Writer) *vault.Client {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte("gateway-secret-id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if logs == nil {
		logs = io.Discard
	}
	c, err := vault.New(vault.Config{
		Address: srv.URL, HTTPClient: srv.HTTPClient, RoleID: "gateway-role-id", SecretIDFile: secretFile,
		Clock: clock, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

// runInBackground runs fn until the test ends, then cancels it and waits.
func runInBackground(t *testing.T, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// TestTokenRenewalAndRelogin: the token is renewed before it expires, a new
// login happens when it reaches its max TTL, and a Vault outage shorter than
// the token's remaining life needs no new login.
func TestTokenRenewalAndRelogin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := vaulttest.StartPipe(t, vaulttest.Config{TokenTTL: time.Hour, TokenMaxTTL: 4 * time.Hour})
		var logs strings.Builder
		c := appRoleClient(t, srv, nil, &logs)
		runInBackground(t, c.Run)

		time.Sleep(150 * time.Minute)
		synctest.Wait()
		st := c.Status()
		if st.Logins != 1 || st.Renewals < 2 {
			t.Errorf("after 2.5h of a 1h token: got %d logins and %d renewals, want 1 login and at least 2 renewals", st.Logins, st.Renewals)
		}

		time.Sleep(2 * time.Hour) // past the 4h max TTL of the first token
		synctest.Wait()
		if st := c.Status(); st.Logins < 2 {
			t.Errorf("after the max ttl: got %d logins, want a new login", st.Logins)
		}
		if got := srv.Count("login"); got != int(c.Status().Logins) {
			t.Errorf("server saw %d logins, client counted %d", got, c.Status().Logins)
		}

		// An outage of 20 minutes: renewals fail meanwhile; afterwards the
		// client holds a valid token again (renewed, or from a new login) and
		// calls succeed.
		srv.PutKV("coalition/partners/acme-air", map[string]any{"endpoint": "https://acme.example"})
		kv, err := vault.NewKV(c, "secret")
		if err != nil {
			t.Fatal(err)
		}
		srv.SetDown(true)
		time.Sleep(20 * time.Minute)
		synctest.Wait()
		if _, err := kv.PartnerSecret(context.Background(), "acme-air"); err == nil || c.Status().FailingSince.IsZero() {
			t.Errorf("during the outage: got err %v and status %+v, want a failure recorded", err, c.Status())
		}
		srv.SetDown(false)
		time.Sleep(90 * time.Minute)
		synctest.Wait()
		if _, err := kv.PartnerSecret(context.Background(), "acme-air"); err != nil {
			t.Errorf("after the outage: %v", err)
		}
		if st := c.Status(); !st.FailingSince.IsZero() {
			t.Errorf("after the outage: still failing since %v: %v", st.FailingSince, st.LastError)
		}
		if strings.Contains(logs.String(), "hvs.") || strings.Contains(logs.String(), "gateway-secret-id") {
			t.Errorf("logs contain a token or secret id:\n%s", logs.String())
		}
	})
}

// TestReloginBacksOffWhileLoginFails: when the token reaches its max TTL and
// logins fail, the client retries with bounded backoff and recovers.
func TestReloginBacksOffWhileLoginFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := vaulttest.StartPipe(t, vaulttest.Config{TokenTTL: time.Hour, TokenMaxTTL: time.Hour})
		c := appRoleClient(t, srv, nil, nil)
		srv.FailNext("login", 5)
		runInBackground(t, c.Run)

		time.Sleep(time.Hour) // the token ends; five failed logins, then one succeeds
		synctest.Wait()
		st := c.Status()
		if st.Logins != 2 {
			t.Fatalf("got %d logins, want 2 (the first and one after five failures)", st.Logins)
		}
		if !st.FailingSince.IsZero() {
			t.Errorf("client still failing since %v after a successful login", st.FailingSince)
		}
	})
}

func TestOperatorToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := vaulttest.StartPipe(t, vaulttest.Config{TokenMaxTTL: 3 * time.Hour})
		c, err := vault.New(vault.Config{Address: srv.URL, HTTPClient: srv.HTTPClient, Token: srv.OperatorToken(time.Hour),
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("vault.New: %v", err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		runInBackground(t, c.Run)
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if st := c.Status(); st.Logins != 1 || st.Renewals < 1 || srv.Count("lookup-self") != 1 {
			t.Errorf("got %+v and %d lookups, want 1 lookup and renewals", st, srv.Count("lookup-self"))
		}
		// The metric's source: a renewed token expires in the future, never past its max TTL.
		if left := time.Until(c.Status().TokenExpiresAt); left <= 0 || left > 3*time.Hour {
			t.Errorf("token expires in %s, want within (0, 3h]", left)
		}
	})
}

func TestNewChecksConfig(t *testing.T) {
	tests := map[string]vault.Config{
		"no address":        {Token: "t"},
		"no credentials":    {Address: "http://vault"},
		"role without file": {Address: "http://vault", RoleID: "r"},
	}
	for name, cfg := range tests {
		if _, err := vault.New(cfg); err == nil {
			t.Errorf("%s: got nil error, want error", name)
		}
	}
}

func TestStartFailsOnBadSecretID(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.Config{SecretID: "other"})
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte("gateway-secret-id"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := vault.New(vault.Config{Address: srv.URL, HTTPClient: srv.HTTPClient, RoleID: "gateway-role-id", SecretIDFile: secretFile})
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	err = c.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "approle login") {
		t.Fatalf("got %v, want an approle login error", err)
	}
	if strings.Contains(err.Error(), "gateway-secret-id") {
		t.Errorf("error reveals the secret id: %v", err)
	}
}
