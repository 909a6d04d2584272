package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
)

// secretsByPartner stands in for Vault KV at the PartnerSecrets seam.
type secretsByPartner map[string]map[string]string

func (s secretsByPartner) PartnerSecret(_ context.Context, id string) (vault.PartnerSecret, error) {
	if id == "down" {
		return vault.PartnerSecret{}, errors.New("vault unreachable")
	}
	data, ok := s[id]
	if !ok {
		return vault.PartnerSecret{}, fmt.Errorf("read: %w", vault.ErrPartnerSecretNotFound)
	}
	return vault.PartnerSecret{PartnerID: id, Data: data}, nil
}

func TestKVCredentials(t *testing.T) {
	creds := kvCredentials(secretsByPartner{"acme-air": {"api_key": "k1"}, "bean-coffee": {"note": "no key"}})
	tests := []struct {
		partner string
		want    string
		wantErr bool
	}{
		{"acme-air", "Bearer k1", false},
		{"bean-coffee", "", false},
		{"city-fuel", "", false}, // no secret: no credentials
		{"down", "", true},
	}
	for _, tt := range tests {
		md, err := creds(context.Background(), tt.partner)
		if (err != nil) != tt.wantErr || md["authorization"] != tt.want {
			t.Errorf("%s: got %v, %v; want authorization %q, error %v", tt.partner, md, err, tt.want, tt.wantErr)
		}
	}
}
