package tlsconfig

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
)

// FuzzFromVerifiedChains: any URI SAN either yields an identity whose URI is exactly
// spiffe://<trust domain>/<known role>/<valid name>, or an error wrapping ErrNoIdentity.
func FuzzFromVerifiedChains(f *testing.F) {
	for _, s := range []string{
		"spiffe://coalition.local/partner/acme-air", "spiffe://coalition.local/finance/finance",
		"spiffe://other/partner/x", "spiffe://coalition.local/partner/a/b", "https://coalition.local/partner/x",
		"spiffe://coalition.local/partner/%41", "spiffe://coalition.local/root/x", "spiffe://coalition.local//x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		leaf := &x509.Certificate{URIs: []*url.URL{u}}
		id, err := FromVerifiedChains([][]*x509.Certificate{{leaf}}, "coalition.local")
		if err != nil {
			return
		}
		want := "spiffe://coalition.local/" + string(id.Role) + "/" + id.Name
		if id.URI != want || strings.Count(id.URI, "/") != 4 {
			t.Fatalf("FromVerifiedChains(%q) = %+v, want URI %q", raw, id, want)
		}
		switch id.Role {
		case RolePartner, RoleFinance, RoleOperator:
		default:
			t.Fatalf("FromVerifiedChains(%q) accepted role %q", raw, id.Role)
		}
	})
}
