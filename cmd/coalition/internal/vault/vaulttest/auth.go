package vaulttest

import (
	"net/http"
	"time"
)

// The policies every fake token carries.
var tokenPolicies = []string{"default", "coalition-gateway"}

// login answers auth/approle/login.
func (s *Server) login(_ *http.Request, body map[string]any) (int, any) {
	if str(body, "role_id") != s.cfg.RoleID || str(body, "secret_id") != s.cfg.SecretID {
		return http.StatusBadRequest, errorsBody("invalid role or secret ID")
	}
	token := s.newTokenLocked(s.cfg.TokenTTL)
	return http.StatusOK, authBody(token, s.cfg.TokenTTL)
}

// renewSelf answers auth/token/renew-self: the TTL is extended by the
// increment (default the token TTL) but never past the max TTL.
func (s *Server) renewSelf(r *http.Request, body map[string]any) (int, any) {
	token := r.Header.Get("X-Vault-Token")
	l := s.tokens[token]
	inc, ok := parseTTL(body["increment"])
	if !ok {
		return http.StatusBadRequest, errorsBody("invalid increment")
	}
	if inc <= 0 {
		inc = s.cfg.TokenTTL
	}
	now := s.cfg.Now()
	l.expires = minTime(now.Add(inc), l.maxExpires)
	resp := authBody(token, l.expires.Sub(now))
	if l.expires.Equal(l.maxExpires) {
		resp["warnings"] = []string{"TTL of \"" + inc.String() + "\" exceeded the effective max_ttl; TTL value is capped accordingly"}
	}
	return http.StatusOK, resp
}

// lookupSelf answers auth/token/lookup-self.
func (s *Server) lookupSelf(r *http.Request, _ map[string]any) (int, any) {
	token := r.Header.Get("X-Vault-Token")
	l := s.tokens[token]
	now := s.cfg.Now()
	return http.StatusOK, map[string]any{
		"lease_id": "", "renewable": false, "lease_duration": 0,
		"data": map[string]any{
			"id": token, "accessor": "acc." + token[len(token)-6:], "display_name": "token",
			"policies": tokenPolicies, "renewable": true, "type": "service", "orphan": false,
			"ttl": seconds(l.expires.Sub(now)), "expire_time": l.expires.UTC().Format(time.RFC3339Nano),
			"creation_ttl": seconds(s.cfg.TokenTTL), "explicit_max_ttl": 0, "num_uses": 0, "path": "auth/token/create",
		},
	}
}

// renewLease answers sys/leases/renew for database leases.
func (s *Server) renewLease(_ *http.Request, body map[string]any) (int, any) {
	id := str(body, "lease_id")
	l, ok := s.leases[id]
	now := s.cfg.Now()
	if !ok || !now.Before(l.expires) {
		return http.StatusBadRequest, errorsBody("lease not found or lease is not renewable")
	}
	inc, _ := parseTTL(body["increment"])
	if inc <= 0 {
		inc = s.cfg.LeaseTTL
	}
	l.expires = minTime(now.Add(inc), l.maxExpires)
	return http.StatusOK, map[string]any{
		"lease_id": id, "renewable": true, "lease_duration": seconds(l.expires.Sub(now)), "data": nil,
	}
}

func authBody(token string, ttl time.Duration) map[string]any {
	return map[string]any{
		"lease_id": "", "renewable": false, "lease_duration": 0, "data": nil, "warnings": nil,
		"auth": map[string]any{
			"client_token": token, "accessor": "acc." + token[len(token)-6:],
			"policies": tokenPolicies, "token_policies": tokenPolicies,
			"metadata":       map[string]string{"role_name": "coalition-gateway"},
			"lease_duration": seconds(ttl), "renewable": true, "token_type": "service", "orphan": true,
		},
	}
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
