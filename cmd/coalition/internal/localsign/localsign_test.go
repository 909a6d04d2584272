package localsign

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/coalitionexchange/coalition/settlement"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys", "statements.key")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode: got %v, want 0600", got)
	}
	payload := []byte(`{"run":1,"partner":"acme-air","net":"-12.50"}`)
	sig, err := s.Sign(ctx, payload)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if sig.KeyName != KeyName || sig.KeyVersion != 1 || !bytes.HasPrefix([]byte(sig.Value), []byte("vault:v1:")) {
		t.Errorf("got signature %+v, want key %s v1 with a vault:v1: value", sig, KeyName)
	}
	if err := s.Verify(ctx, payload, sig); err != nil {
		t.Errorf("Verify original: %v", err)
	}

	// The same file, opened again, is the same key.
	again, err := Open(path)
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	if err := again.Verify(ctx, payload, sig); err != nil {
		t.Errorf("Verify with reopened key: %v", err)
	}

	tampered := bytes.Replace(payload, []byte("-12.50"), []byte("-1.50"), 1)
	if err := s.Verify(ctx, tampered, sig); !errors.Is(err, settlement.ErrBadSignature) {
		t.Errorf("Verify tampered payload: got %v, want ErrBadSignature", err)
	}
	other := sig
	other.KeyName = "statements"
	if err := s.Verify(ctx, payload, other); !errors.Is(err, settlement.ErrBadSignature) {
		t.Errorf("Verify foreign key name: got %v, want ErrBadSignature", err)
	}
}

func TestOpenRefusesNonKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statements.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("Open of a non-key file: got nil error, want error")
	}
	data, _ := os.ReadFile(path)
	if string(data) != "not a key" {
		t.Errorf("Open replaced the file: got %q", data)
	}
}
