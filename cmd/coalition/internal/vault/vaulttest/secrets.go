package vaulttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// kvEntry is one KV v2 secret's latest version.
type kvEntry struct {
	data    map[string]any
	version int
	created time.Time
}

// PutKV writes a new version of the KV v2 secret at path (below the mount's
// data/, e.g. "coalition/partners/acme-air").
func (s *Server) PutKV(path string, data map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.kv[path]
	s.kv[path] = kvEntry{data: data, version: prev.version + 1, created: s.cfg.Now()}
}

// readKV answers <kv>/data/<path>: 404 with no errors when absent, as Vault does.
func (s *Server) readKV(path string) (int, any) {
	e, ok := s.kv[path]
	if !ok {
		return http.StatusNotFound, errorsBody()
	}
	return http.StatusOK, map[string]any{
		"lease_id": "", "renewable": false, "lease_duration": 0,
		"data": map[string]any{
			"data": e.data,
			"metadata": map[string]any{
				"created_time": e.created.UTC().Format(time.RFC3339Nano), "custom_metadata": nil,
				"deletion_time": "", "destroyed": false, "version": e.version,
			},
		},
	}
}

// transitKey is a Transit signing key: ECDSA P-256 versions, newest last.
type transitKey struct {
	versions []*ecdsa.PrivateKey
}

// RotateTransitKey adds a version to key name (creating it at v1).
func (s *Server) RotateTransitKey(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateLocked(name)
}

func (s *Server) rotateLocked(name string) *transitKey {
	k := s.transit[name]
	if k == nil {
		k = &transitKey{}
		s.transit[name] = k
	}
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.versions = append(k.versions, priv)
	return k
}

// transitSign answers <transit>/sign/<key>; the key is created on first use
// here, where Vault would need it created first.
func (s *Server) transitSign(name string, body map[string]any) (int, any) {
	if h := str(body, "hash_algorithm"); h != "" && h != "sha2-256" {
		return http.StatusBadRequest, errorsBody("unsupported hash algorithm " + h)
	}
	input, err := base64.StdEncoding.DecodeString(str(body, "input"))
	if err != nil {
		return http.StatusBadRequest, errorsBody("unable to decode input as base64")
	}
	k := s.transit[name]
	if k == nil {
		k = s.rotateLocked(name)
	}
	digest := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, k.versions[len(k.versions)-1], digest[:])
	if err != nil {
		return http.StatusInternalServerError, errorsBody(err.Error())
	}
	v := len(k.versions)
	return http.StatusOK, map[string]any{"data": map[string]any{
		"signature":   "vault:v" + strconv.Itoa(v) + ":" + base64.StdEncoding.EncodeToString(sig),
		"key_version": v,
	}}
}

// transitVerify answers <transit>/verify/<key>.
func (s *Server) transitVerify(name string, body map[string]any) (int, any) {
	k := s.transit[name]
	if k == nil {
		return http.StatusBadRequest, errorsBody("signature verification failed: key not found")
	}
	input, err := base64.StdEncoding.DecodeString(str(body, "input"))
	if err != nil {
		return http.StatusBadRequest, errorsBody("unable to decode input as base64")
	}
	parts := strings.SplitN(str(body, "signature"), ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || !strings.HasPrefix(parts[1], "v") {
		return http.StatusBadRequest, errorsBody("invalid signature: no prefix")
	}
	v, err := strconv.Atoi(parts[1][1:])
	if err != nil || v < 1 || v > len(k.versions) {
		return http.StatusBadRequest, errorsBody("invalid key version")
	}
	sig, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return http.StatusBadRequest, errorsBody("invalid base64 signature value")
	}
	digest := sha256.Sum256(input)
	valid := ecdsa.VerifyASN1(&k.versions[v-1].PublicKey, digest[:], sig)
	return http.StatusOK, map[string]any{"data": map[string]any{"valid": valid}}
}

// databaseCreds answers <database>/creds/<role> with a new user and lease.
func (s *Server) databaseCreds(role string) (int, any) {
	now := s.cfg.Now()
	id := s.cfg.DatabaseMount + "/creds/" + role + "/" + randomHex(8)
	s.leases[id] = &lease{expires: now.Add(s.cfg.LeaseTTL), maxExpires: now.Add(s.cfg.LeaseMaxTTL)}
	return http.StatusOK, map[string]any{
		"lease_id": id, "renewable": true, "lease_duration": seconds(s.cfg.LeaseTTL),
		"data": map[string]any{"username": "v-approle-" + role + "-" + randomHex(4), "password": "A1a-" + randomHex(10)},
	}
}
