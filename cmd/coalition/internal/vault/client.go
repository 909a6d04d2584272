package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Config configures a Client. Either RoleID and SecretIDFile (AppRole, for
// services) or Token (an operator's VAULT_TOKEN) must be set.
type Config struct {
	// Address of Vault, e.g. https://vault.internal:8200. Required.
	Address string
	// RoleID is the AppRole role id. With it, SecretIDFile is required.
	RoleID string
	// SecretIDFile holds the AppRole secret id. It is read at every login,
	// so a secret id rotated on disk is picked up without a restart.
	SecretIDFile string
	// AppRoleMount is the AppRole auth mount; default "approle".
	AppRoleMount string
	// Token is an operator token, used when RoleID is empty. It cannot be
	// renewed past its max TTL: there is no login to fall back on.
	Token string
	// HTTPClient replaces the client vault/api builds from VAULT_CACERT and
	// friends; tests use it to reach an in-process server.
	HTTPClient *http.Client
	// Timeout bounds each request; default 30s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the waits between failed logins;
	// defaults 1s and 1m.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger // default slog.Default()
	Clock                  Clock        // default the system clock
}

// Client is a Vault client whose token stays valid while Run runs. It is safe
// for concurrent use.
type Client struct {
	api   *vaultapi.Client
	cfg   Config
	log   *slog.Logger
	clock Clock

	mu           sync.Mutex
	auth         *vaultapi.Secret // the login Run keeps alive
	failingSince time.Time        // zero while Vault answers
	lastErr      error
	tokenExpires time.Time // zero for a token that never expires

	logins, renewals atomic.Int64
}

// Status is a snapshot of the client's health, for readiness and tests.
type Status struct {
	Logins   int64 // successful logins (or token lookups), the first included
	Renewals int64 // successful token renewals
	// FailingSince is when Vault stopped answering; zero while it answers.
	FailingSince time.Time
	// LastError is the latest failure to reach Vault, nil once it answers.
	LastError error
	// TokenExpiresAt is when the current token's lease ends (zero: never), for the
	// coalition_vault_token_expiry_seconds metric.
	TokenExpiresAt time.Time
}

// New checks cfg and builds the client. It does not contact Vault: call
// Start, then Run.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Address == "":
		return nil, errors.New("vault: Config.Address is required")
	case cfg.RoleID == "" && cfg.Token == "":
		return nil, errors.New("vault: an approle role id and secret id file, or a token (VAULT_TOKEN), is required")
	case cfg.RoleID != "" && cfg.SecretIDFile == "":
		return nil, errors.New("vault: an approle role id needs a secret id file")
	}
	if cfg.AppRoleMount == "" {
		cfg.AppRoleMount = "approle"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	apiCfg := vaultapi.DefaultConfig()
	if apiCfg.Error != nil {
		return nil, fmt.Errorf("vault: client config: %w", apiCfg.Error)
	}
	apiCfg.Address = cfg.Address
	apiCfg.Timeout = cfg.Timeout
	apiCfg.MaxRetries = 0 // one retry layer only: ours, with its own backoff
	if cfg.HTTPClient != nil {
		apiCfg.HttpClient = cfg.HTTPClient
	}
	api, err := vaultapi.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("vault: new client: %w", err)
	}
	api.ClearToken() // NewClient reads VAULT_TOKEN; we use only what cfg names
	return &Client{api: api, cfg: cfg, log: cfg.Logger, clock: cfg.Clock}, nil
}

// Start logs in (AppRole) or checks the operator token (lookup-self) once.
// It fails when Vault refuses or cannot be reached.
func (c *Client) Start(ctx context.Context) error {
	auth, err := c.login(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.auth = auth
	c.mu.Unlock()
	return nil
}

// Run keeps the token alive until ctx ends: it renews it with a
// LifetimeWatcher and, with AppRole, logs in again when the token reaches
// its max TTL or renewal stops, retrying failed logins with bounded backoff.
// It returns nil when ctx ends. Start must have succeeded.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	auth := c.auth
	c.mu.Unlock()
	if auth == nil {
		return errors.New("vault: Run before a successful Start")
	}
	b := newBackoff(c.cfg.MinBackoff, c.cfg.MaxBackoff)
	for {
		c.watch(ctx, auth)
		if ctx.Err() != nil {
			return nil
		}
		if c.cfg.RoleID == "" {
			c.log.Warn("vault: operator token can no longer be renewed; log in again and restart")
			<-ctx.Done()
			return nil
		}
		for {
			next, err := c.login(ctx)
			if err == nil {
				auth = next
				b.reset()
				break
			}
			c.log.Warn("vault: login failed; retrying", "err", err)
			if sleep(ctx, c.clock, b.wait()) != nil {
				return nil
			}
		}
	}
}

// watch renews auth until the watcher gives up (max TTL reached, renewal
// failing past the lease) or ctx ends.
func (c *Client) watch(ctx context.Context, auth *vaultapi.Secret) {
	if auth.Auth.LeaseDuration == 0 { // a token that never expires, e.g. root
		<-ctx.Done()
		return
	}
	w, err := c.api.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{
		Secret: auth, RenewBehavior: vaultapi.RenewBehaviorIgnoreErrors,
	})
	if err != nil { // only on a nil secret, which login never returns
		c.log.Error("vault: token watcher", "err", err)
		return
	}
	go w.Start()
	for {
		select {
		case <-ctx.Done():
			w.Stop()
			<-w.DoneCh()
			return
		case err := <-w.DoneCh():
			if err != nil {
				c.log.Warn("vault: token renewal stopped", "err", err)
			}
			return
		case r := <-w.RenewCh():
			c.renewals.Add(1)
			c.observe(nil)
			c.setTokenLease(r.Secret.Auth.LeaseDuration)
			c.log.Debug("vault: token renewed", "ttl_seconds", r.Secret.Auth.LeaseDuration)
		}
	}
}

// login returns a fresh AppRole login, or the operator token looked up, and
// installs its token in the client.
func (c *Client) login(ctx context.Context) (*vaultapi.Secret, error) {
	var auth *vaultapi.Secret
	var err error
	if c.cfg.RoleID != "" {
		auth, err = c.appRoleLogin(ctx)
	} else {
		auth, err = c.tokenLookup(ctx)
	}
	c.observe(err)
	if err != nil {
		return nil, err
	}
	c.api.SetToken(auth.Auth.ClientToken)
	c.logins.Add(1)
	c.setTokenLease(auth.Auth.LeaseDuration)
	c.log.Info("vault: logged in", "ttl_seconds", auth.Auth.LeaseDuration, "renewable", auth.Auth.Renewable)
	return auth, nil
}

func (c *Client) appRoleLogin(ctx context.Context) (*vaultapi.Secret, error) {
	raw, err := os.ReadFile(c.cfg.SecretIDFile)
	if err != nil {
		return nil, fmt.Errorf("vault: read approle secret id file: %w", err)
	}
	secretID := strings.TrimSpace(string(raw))
	if secretID == "" {
		return nil, fmt.Errorf("vault: approle secret id file %s is empty", c.cfg.SecretIDFile)
	}
	anon, err := c.api.Clone() // no token: a stale one must not ride along
	if err != nil {
		return nil, fmt.Errorf("vault: clone client: %w", err)
	}
	anon.ClearToken()
	path := "auth/" + c.cfg.AppRoleMount + "/login"
	auth, err := anon.Logical().WriteWithContext(ctx, path, map[string]any{
		"role_id": c.cfg.RoleID, "secret_id": secretID,
	})
	if err != nil {
		return nil, fmt.Errorf("vault: approle login: %w", err)
	}
	if auth == nil || auth.Auth == nil || auth.Auth.ClientToken == "" {
		return nil, errors.New("vault: approle login returned no token")
	}
	return auth, nil
}

func (c *Client) tokenLookup(ctx context.Context) (*vaultapi.Secret, error) {
	c.api.SetToken(c.cfg.Token)
	info, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: look up token: %w", err)
	}
	ttl, err := info.TokenTTL()
	if err != nil {
		return nil, fmt.Errorf("vault: look up token: ttl: %w", err)
	}
	renewable, err := info.TokenIsRenewable()
	if err != nil {
		return nil, fmt.Errorf("vault: look up token: renewable: %w", err)
	}
	return &vaultapi.Secret{Auth: &vaultapi.SecretAuth{
		ClientToken: c.cfg.Token, Renewable: renewable, LeaseDuration: int(ttl / time.Second),
	}}, nil
}

// Status returns the client's health now.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Logins: c.logins.Load(), Renewals: c.renewals.Load(), FailingSince: c.failingSince, LastError: c.lastErr,
		TokenExpiresAt: c.tokenExpires}
}

// observe records whether a call reached Vault. An answer refusing the call
// (4xx) shows that Vault is reachable; transport errors and 5xx do not.
func (c *Client) observe(err error) {
	var re *vaultapi.ResponseError
	reachable := err == nil || (errors.As(err, &re) && re.StatusCode < 500)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case reachable:
		c.failingSince, c.lastErr = time.Time{}, nil
	case c.failingSince.IsZero():
		c.failingSince, c.lastErr = c.clock.Now(), err
	default:
		c.lastErr = err
	}
}

// write and read call Vault with the current token and record reachability.
func (c *Client) write(ctx context.Context, path string, data map[string]any) (*vaultapi.Secret, error) {
	s, err := c.api.Logical().WriteWithContext(ctx, path, data)
	c.observe(err)
	return s, err
}

func (c *Client) read(ctx context.Context, path string) (*vaultapi.Secret, error) {
	s, err := c.api.Logical().ReadWithContext(ctx, path)
	c.observe(err)
	return s, err
}

// setTokenLease records when the current token expires, leaseSeconds from now (0: never).
func (c *Client) setTokenLease(leaseSeconds int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokenExpires = time.Time{}
	if leaseSeconds > 0 {
		c.tokenExpires = c.clock.Now().Add(time.Duration(leaseSeconds) * time.Second)
	}
}
