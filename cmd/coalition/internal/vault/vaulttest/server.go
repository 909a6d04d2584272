package vaulttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config configures a Server. Zero fields take the defaults named.
type Config struct {
	Now           func() time.Time // default time.Now
	RoleID        string           // default "gateway-role-id"
	SecretID      string           // default "gateway-secret-id"
	TokenTTL      time.Duration    // default 1h
	TokenMaxTTL   time.Duration    // default 24h
	PKIMount      string           // default "pki"
	KVMount       string           // default "secret"
	TransitMount  string           // default "transit"
	DatabaseMount string           // default "database"
	LeaseTTL      time.Duration    // database lease, default 1h
	LeaseMaxTTL   time.Duration    // database lease, default 24h
}

// Server is a fake Vault. Every method is safe for concurrent use.
type Server struct {
	// URL is the address to give vault/api; HTTPClient reaches it.
	URL        string
	HTTPClient *http.Client

	cfg Config
	ca  *pki

	mu       sync.Mutex
	tokens   map[string]*lease
	leases   map[string]*lease
	roles    map[string]Role
	kv       map[string]kvEntry
	transit  map[string]*transitKey
	down     bool
	failNext map[string]int
	counts   map[string]int
}

// lease is a token or a database lease.
type lease struct {
	expires, maxExpires time.Time
}

// Start serves a new fake Vault on a real 127.0.0.1 port until t ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := newServer(t, cfg)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	s.URL, s.HTTPClient = hs.URL, hs.Client()
	return s
}

// StartPipe serves a new fake Vault on an in-memory network until t ends,
// for tests inside a testing/synctest bubble. Keep-alives are off so that no
// idle connection outlives a request.
func StartPipe(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := newServer(t, cfg)
	lis := NewPipeListener()
	hs := &http.Server{Handler: s}
	go hs.Serve(lis) //nolint:errcheck // returns ErrServerClosed at cleanup
	tr := &http.Transport{DialContext: lis.DialContext, DisableKeepAlives: true}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		hs.Close()
	})
	s.URL, s.HTTPClient = "http://vault.pipe", &http.Client{Transport: tr}
	return s
}

func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RoleID, "gateway-role-id")
	def(&cfg.SecretID, "gateway-secret-id")
	def(&cfg.PKIMount, "pki")
	def(&cfg.KVMount, "secret")
	def(&cfg.TransitMount, "transit")
	def(&cfg.DatabaseMount, "database")
	defDur(&cfg.TokenTTL, time.Hour)
	defDur(&cfg.TokenMaxTTL, 24*time.Hour)
	defDur(&cfg.LeaseTTL, time.Hour)
	defDur(&cfg.LeaseMaxTTL, 24*time.Hour)
	ca, err := newPKI(cfg.Now())
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	return &Server{
		cfg: cfg, ca: ca,
		tokens: map[string]*lease{}, leases: map[string]*lease{}, roles: map[string]Role{},
		kv: map[string]kvEntry{}, transit: map[string]*transitKey{},
		failNext: map[string]int{}, counts: map[string]int{},
	}
}

// SetDown makes every request fail with 503 while down is true, as a sealed
// or unreachable Vault would look to a client with retries off.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// FailNext makes the next n requests of endpoint (a Count name) fail with 500.
func (s *Server) FailNext(endpoint string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[endpoint] += n
}

// Count returns how many requests endpoint has answered successfully. The
// names are: login, renew-self, lookup-self, issue, sign, ca_chain, kv,
// transit-sign, transit-verify, db-creds, lease-renew.
func (s *Server) Count(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[endpoint]
}

// OperatorToken returns a new token valid for ttl, renewable up to the
// configured max TTL, as an operator's VAULT_TOKEN.
func (s *Server) OperatorToken(ttl time.Duration) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newTokenLocked(ttl)
}

func (s *Server) newTokenLocked(ttl time.Duration) string {
	token := "hvs." + randomHex(12)
	now := s.cfg.Now()
	s.tokens[token] = &lease{expires: now.Add(ttl), maxExpires: now.Add(s.cfg.TokenMaxTTL)}
	return token
}

// ServeHTTP routes a request the way Vault's /v1 API does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	var body map[string]any
	if r.Body != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name, handle := s.route(r.Method, path)
	switch {
	case s.down:
		writeErrors(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	case handle == nil:
		writeErrors(w, http.StatusNotFound, "no handler for route "+path)
		return
	case s.failNext[name] > 0:
		s.failNext[name]--
		writeErrors(w, http.StatusInternalServerError, "injected failure")
		return
	case name != "login" && !s.validTokenLocked(r.Header.Get("X-Vault-Token")):
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	status, resp := handle(r, body)
	if status == http.StatusOK {
		s.counts[name]++
	}
	if resp == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

// handler answers one request with a status and a JSON body (nil for none).
type handler func(r *http.Request, body map[string]any) (int, any)

// route maps a method and path to an endpoint name and its handler.
func (s *Server) route(method, path string) (string, handler) {
	rest := func(prefix string) (string, bool) { return strings.CutPrefix(path, prefix) }
	write := method == http.MethodPost || method == http.MethodPut
	switch {
	case write && path == "auth/approle/login":
		return "login", s.login
	case write && path == "auth/token/renew-self":
		return "renew-self", s.renewSelf
	case method == http.MethodGet && path == "auth/token/lookup-self":
		return "lookup-self", s.lookupSelf
	case write && path == "sys/leases/renew":
		return "lease-renew", s.renewLease
	case method == http.MethodGet && path == s.cfg.PKIMount+"/cert/ca_chain":
		return "ca_chain", s.caChain
	}
	if role, ok := rest(s.cfg.PKIMount + "/issue/"); ok && write {
		return "issue", func(r *http.Request, b map[string]any) (int, any) { return s.issue(role, b) }
	}
	if role, ok := rest(s.cfg.PKIMount + "/sign/"); ok && write {
		return "sign", func(r *http.Request, b map[string]any) (int, any) { return s.sign(role, b) }
	}
	if p, ok := rest(s.cfg.KVMount + "/data/"); ok && method == http.MethodGet {
		return "kv", func(*http.Request, map[string]any) (int, any) { return s.readKV(p) }
	}
	if key, ok := rest(s.cfg.TransitMount + "/sign/"); ok && write {
		return "transit-sign", func(r *http.Request, b map[string]any) (int, any) { return s.transitSign(key, b) }
	}
	if key, ok := rest(s.cfg.TransitMount + "/verify/"); ok && write {
		return "transit-verify", func(r *http.Request, b map[string]any) (int, any) { return s.transitVerify(key, b) }
	}
	if role, ok := rest(s.cfg.DatabaseMount + "/creds/"); ok && method == http.MethodGet {
		return "db-creds", func(*http.Request, map[string]any) (int, any) { return s.databaseCreds(role) }
	}
	return "", nil
}

func (s *Server) validTokenLocked(token string) bool {
	l, ok := s.tokens[token]
	return ok && s.cfg.Now().Before(l.expires)
}

// errorsBody is Vault's error answer: {"errors": [...]}.
func errorsBody(msgs ...string) map[string]any { return map[string]any{"errors": msgs} }

func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorsBody(msgs...))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// str returns body[name] as a string ("" when absent or not a string).
func str(body map[string]any, name string) string {
	v, _ := body[name].(string)
	return v
}

// parseTTL reads a Vault duration: "90s", "24h" or a number of seconds.
func parseTTL(v any) (time.Duration, bool) {
	switch t := v.(type) {
	case nil:
		return 0, true
	case float64:
		return time.Duration(t) * time.Second, true
	case string:
		if t == "" {
			return 0, true
		}
		d, err := time.ParseDuration(t)
		if err != nil {
			d, err = time.ParseDuration(t + "s")
		}
		return d, err == nil
	}
	return 0, false
}
