package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/coalitionexchange/coalition/settlement"
)

// TransitSigner signs settlement statements with a Vault Transit key
// (transit/sign/<key>, sha2-256) and verifies them (transit/verify/<key>).
// It implements settlement.StatementSigner. The key never leaves Vault.
type TransitSigner struct {
	client *Client
	mount  string
	key    string
}

var _ settlement.StatementSigner = (*TransitSigner)(nil)

// NewTransitSigner returns a signer using key on the Transit mount (default
// "transit").
func NewTransitSigner(client *Client, mount, key string) (*TransitSigner, error) {
	if client == nil || key == "" {
		return nil, errors.New("vault: transit signer needs a client and a key name")
	}
	if mount == "" {
		mount = "transit"
	}
	return &TransitSigner{client: client, mount: mount, key: key}, nil
}

// Sign implements settlement.StatementSigner.
func (t *TransitSigner) Sign(ctx context.Context, payload []byte) (settlement.Signature, error) {
	path := t.mount + "/sign/" + t.key
	s, err := t.client.write(ctx, path, map[string]any{
		"input":          base64.StdEncoding.EncodeToString(payload),
		"hash_algorithm": "sha2-256",
	})
	if err != nil {
		return settlement.Signature{}, fmt.Errorf("vault: %s: %w", path, err)
	}
	value, err := stringField(s, "signature")
	if err != nil {
		return settlement.Signature{}, fmt.Errorf("vault: %s: %w", path, err)
	}
	version, err := signatureVersion(value)
	if err != nil {
		return settlement.Signature{}, fmt.Errorf("vault: %s: %w", path, err)
	}
	if n, ok := s.Data["key_version"].(json.Number); ok && n.String() != strconv.Itoa(version) {
		return settlement.Signature{}, fmt.Errorf("vault: %s: key_version %s does not match signature v%d", path, n, version)
	}
	return settlement.Signature{KeyName: t.key, KeyVersion: version, Value: value}, nil
}

// Verify implements settlement.StatementSigner. A signature by another key
// name, or one Vault finds invalid, wraps settlement.ErrBadSignature.
func (t *TransitSigner) Verify(ctx context.Context, payload []byte, sig settlement.Signature) error {
	if sig.KeyName != t.key {
		return fmt.Errorf("%w: signed by key %q, this signer holds %q", settlement.ErrBadSignature, sig.KeyName, t.key)
	}
	if v, err := signatureVersion(sig.Value); err != nil || v != sig.KeyVersion {
		return fmt.Errorf("%w: signature value does not match key version %d", settlement.ErrBadSignature, sig.KeyVersion)
	}
	path := t.mount + "/verify/" + t.key
	s, err := t.client.write(ctx, path, map[string]any{
		"input":          base64.StdEncoding.EncodeToString(payload),
		"signature":      sig.Value,
		"hash_algorithm": "sha2-256",
	})
	if err != nil {
		return fmt.Errorf("vault: %s: %w", path, err)
	}
	if s == nil || s.Data == nil {
		return fmt.Errorf("vault: %s: empty answer", path)
	}
	if valid, _ := s.Data["valid"].(bool); !valid {
		return settlement.ErrBadSignature
	}
	return nil
}

// signatureVersion parses N out of "vault:vN:<base64>".
func signatureVersion(value string) (int, error) {
	parts := strings.SplitN(value, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || !strings.HasPrefix(parts[1], "v") || parts[2] == "" {
		return 0, errors.New("signature is not vault:v<N>:<base64>")
	}
	n, err := strconv.Atoi(strings.TrimPrefix(parts[1], "v"))
	if err != nil || n < 1 {
		return 0, errors.New("signature is not vault:v<N>:<base64>")
	}
	return n, nil
}
