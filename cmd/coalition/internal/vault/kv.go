package vault

import (
	"context"
	"errors"
	"fmt"

	vaultapi "github.com/hashicorp/vault/api"
)

// PartnerSecret is what the coalition keeps in Vault about a partner's
// endpoint: where to call it and the credentials and settings to use. Values
// are secrets: never log them.
type PartnerSecret struct {
	PartnerID string
	Version   int               // the KV v2 version read
	Data      map[string]string // e.g. "endpoint", "api_key", "timeout"
}

// PartnerSecrets reads partner endpoint settings and credentials. The
// partner registry (package partners) consumes it; KV implements it.
type PartnerSecrets interface {
	// PartnerSecret returns the latest version for partner id, or an error
	// wrapping ErrPartnerSecretNotFound when there is none.
	PartnerSecret(ctx context.Context, id string) (PartnerSecret, error)
}

// ErrPartnerSecretNotFound is wrapped when a partner has no secret in KV.
var ErrPartnerSecretNotFound = errors.New("partner secret not found")

// KV reads partner secrets from a KV v2 mount at
// <mount>/data/coalition/partners/<id>.
type KV struct {
	client *Client
	mount  string
}

var _ PartnerSecrets = (*KV)(nil)

// NewKV returns a reader of the KV v2 mount (default "secret").
func NewKV(client *Client, mount string) (*KV, error) {
	if client == nil {
		return nil, errors.New("vault: kv needs a client")
	}
	if mount == "" {
		mount = "secret"
	}
	return &KV{client: client, mount: mount}, nil
}

// PartnerSecret implements PartnerSecrets. Every value must be a string:
// settings are stored as strings so that none is silently converted.
func (k *KV) PartnerSecret(ctx context.Context, id string) (PartnerSecret, error) {
	if !partnerIDPattern.MatchString(id) {
		return PartnerSecret{}, fmt.Errorf("vault: %w %q", ErrInvalidPartnerID, id)
	}
	path := "coalition/partners/" + id
	s, err := k.client.api.KVv2(k.mount).Get(ctx, path)
	k.client.observe(err)
	if errors.Is(err, vaultapi.ErrSecretNotFound) {
		return PartnerSecret{}, fmt.Errorf("vault: %s/data/%s: %w", k.mount, path, ErrPartnerSecretNotFound)
	}
	if err != nil {
		return PartnerSecret{}, fmt.Errorf("vault: read %s/data/%s: %w", k.mount, path, err)
	}
	out := PartnerSecret{PartnerID: id, Data: make(map[string]string, len(s.Data))}
	if s.VersionMetadata != nil {
		out.Version = s.VersionMetadata.Version
	}
	for name, v := range s.Data {
		str, ok := v.(string)
		if !ok { // name the field, never the value
			return PartnerSecret{}, fmt.Errorf("vault: %s/data/%s: field %q is %T, want a string", k.mount, path, name, v)
		}
		out.Data[name] = str
	}
	return out, nil
}
