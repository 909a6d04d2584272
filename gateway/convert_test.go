package gateway

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

func TestPageTokenRoundTrip(t *testing.T) {
	want := &settlement.Page{CreatedAt: time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC), ID: "0b6f3c52-6f0e-4d56-9a51-3d2b1b8f4a10"}
	got, err := decodePageToken(encodePageToken(want))
	if err != nil || !got.CreatedAt.Equal(want.CreatedAt) || got.ID != want.ID {
		t.Errorf("decode(encode(%v)) = %v, %v", want, got, err)
	}
	if tok := encodePageToken(nil); tok != "" {
		t.Errorf("encodePageToken(nil) = %q, want empty", tok)
	}
	if p, err := decodePageToken(""); p != nil || err != nil {
		t.Errorf(`decodePageToken("") = %v, %v; want nil, nil`, p, err)
	}
}

func TestDecodePageTokenRejectsMalformed(t *testing.T) {
	enc := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	const at = "2025-03-04T05:06:07Z"
	tests := []struct{ name, token string }{
		{"not base64", "!!!"},
		{"padded base64", base64.URLEncoding.EncodeToString([]byte(at + "|x"))},
		{"no separator", enc(at)},
		{"bad time", enc("yesterday|0b6f3c52-6f0e-4d56-9a51-3d2b1b8f4a10")},
		{"id not a uuid", enc(at + "|" + strings.Repeat("z", 36))},
		{"uppercase id", enc(at + "|0B6F3C52-6F0E-4D56-9A51-3D2B1B8F4A10")},
		{"short id", enc(at + "|0b6f3c52")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodePageToken(tt.token); !errors.Is(err, settlement.ErrInvalidPageToken) {
				t.Errorf("decodePageToken(%q) error = %v, want ErrInvalidPageToken", tt.token, err)
			}
		})
	}
}
