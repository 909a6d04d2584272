package localsign

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/coalitionexchange/coalition/settlement"
)

// KeyName is the name local signatures carry.
const KeyName = "local-statements"

// keyVersion is the only version a local key has.
const keyVersion = 1

// prefix starts every local signature value.
const prefix = "vault:v1:"

// Signer signs with an ed25519 key read from, or created in, a file. It is
// safe for concurrent use.
type Signer struct {
	key ed25519.PrivateKey
}

var _ settlement.StatementSigner = (*Signer)(nil)

// Open returns a signer for the PKCS#8 PEM ed25519 key at path, creating the
// key (0600, and its directory 0700) when the file does not exist. An
// existing file that is not such a key is an error, never replaced: it may
// have signed statements that partners hold.
func Open(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("localsign: read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("localsign: %s is not a PEM PRIVATE KEY", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("localsign: parse key %s: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("localsign: key in %s is %T, want ed25519", path, parsed)
	}
	return &Signer{key: key}, nil
}

// create writes a new key to path without replacing a file that appeared
// meanwhile (O_EXCL), then reads back what is there.
func create(path string) (*Signer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("localsign: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("localsign: marshal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("localsign: create key dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("localsign: create key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("localsign: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("localsign: write key: %w", err)
	}
	return &Signer{key: key}, nil
}

// Sign implements settlement.StatementSigner.
func (s *Signer) Sign(_ context.Context, payload []byte) (settlement.Signature, error) {
	sig := ed25519.Sign(s.key, payload)
	return settlement.Signature{
		KeyName: KeyName, KeyVersion: keyVersion, Value: prefix + base64.StdEncoding.EncodeToString(sig),
	}, nil
}

// Verify implements settlement.StatementSigner.
func (s *Signer) Verify(_ context.Context, payload []byte, sig settlement.Signature) error {
	if sig.KeyName != KeyName || sig.KeyVersion != keyVersion || !strings.HasPrefix(sig.Value, prefix) {
		return fmt.Errorf("%w: want key %s v%d", settlement.ErrBadSignature, KeyName, keyVersion)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig.Value, prefix))
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", settlement.ErrBadSignature)
	}
	if !ed25519.Verify(s.key.Public().(ed25519.PublicKey), payload, raw) {
		return settlement.ErrBadSignature
	}
	return nil
}
