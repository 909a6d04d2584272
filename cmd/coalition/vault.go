package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/localsign"
	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	"github.com/coalitionexchange/coalition/settlement"
)

// vaultOptions are the flags that reach Vault: its address and how to log in.
// Without --vault-approle-role-id, the token comes from VAULT_TOKEN (operators).
type vaultOptions struct {
	addr           string
	pkiMount       string
	approleRoleID  string
	approleSecret  string
	approleMount   string
	role           string
	certNames      []string
	certIPs        []string
	certTTL        time.Duration
	databaseRole   string
	databaseMount  string
	trustDomainURI string
	transitMount   string
	transitKey     string
	kvMount        string
}

// registerClient adds the flags every command that talks to Vault needs.
func (v *vaultOptions) registerClient(f *pflag.FlagSet) {
	f.StringVar(&v.addr, "vault-addr", "", "Vault address, e.g. https://vault.internal:8200 (default $VAULT_ADDR for partner commands)")
	f.StringVar(&v.pkiMount, "vault-pki-mount", "pki_int", "Vault PKI mount that issues gateway and partner certificates")
	f.StringVar(&v.approleRoleID, "vault-approle-role-id", "", "AppRole role id; without it the token comes from VAULT_TOKEN")
	f.StringVar(&v.approleSecret, "vault-approle-secret-id-file", "", "file holding the AppRole secret id (re-read at every login)")
	f.StringVar(&v.approleMount, "vault-approle-mount", "approle", "Vault AppRole auth mount")
}

// registerServe adds the flags of the gateway's certificate and database user.
func (v *vaultOptions) registerServe(f *pflag.FlagSet) {
	v.registerClient(f)
	f.StringVar(&v.role, "vault-role", "gateway", "PKI role the gateway certificate is issued from")
	f.StringSliceVar(&v.certNames, "vault-cert-names", []string{"localhost"}, "DNS names of the gateway certificate (the first is its common name)")
	f.StringSliceVar(&v.certIPs, "vault-cert-ips", nil, "IP SANs of the gateway certificate")
	f.DurationVar(&v.certTTL, "vault-cert-ttl", 24*time.Hour, "gateway certificate TTL; re-issued at 2/3 of it")
	f.StringVar(&v.databaseRole, "vault-database-role", "", "database secrets role: connect as users from <mount>/creds/<role>")
	f.StringVar(&v.databaseMount, "vault-database-mount", "database", "Vault database secrets mount")
	f.StringVar(&v.kvMount, "vault-kv-mount", "secret", "Vault KV v2 mount holding partners' call credentials at coalition/partners/<id>")
	f.StringVar(&v.transitMount, "vault-transit-mount", "transit", "Vault Transit mount that signs settlement statements")
	f.StringVar(&v.transitKey, "vault-transit-key", "statements", "Transit key that signs settlement statements (empty: statements are not signed)")
}

// client builds and starts a Vault client from the flags.
func (v *vaultOptions) client(ctx context.Context, e *env, log *slog.Logger) (*vault.Client, error) {
	addr := v.addr
	if addr == "" {
		addr = e.getenv("VAULT_ADDR")
	}
	if addr == "" {
		return nil, errors.New("--vault-addr (or COALITION_VAULT_ADDR, VAULT_ADDR) is required")
	}
	cfg := vault.Config{Address: addr, AppRoleMount: v.approleMount, Logger: log}
	if v.approleRoleID != "" {
		cfg.RoleID, cfg.SecretIDFile = v.approleRoleID, v.approleSecret
	} else {
		cfg.Token = e.getenv("VAULT_TOKEN")
	}
	c, err := vault.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// vaultRuntime is what serve gets from Vault: the certificate source and,
// when configured, the database user. Run keeps them fresh.
type vaultRuntime struct {
	client *vault.Client
	certs  *vault.CertSource
	db     *vault.DatabaseCredentials // nil without --vault-database-role
	signer *vault.TransitSigner       // nil without --vault-transit-key
	kv     *vault.KV                  // partners' call credentials (KV v2)
}

// startVault logs in, issues the gateway certificate and reads the CA chain,
// and fetches a database user when asked.
func startVault(ctx context.Context, e *env, v vaultOptions, trustDomain string, log *slog.Logger) (*vaultRuntime, error) {
	if len(v.certNames) == 0 || v.certNames[0] == "" {
		return nil, errors.New("--vault-cert-names needs at least one name")
	}
	c, err := v.client(ctx, e, log)
	if err != nil {
		return nil, err
	}
	certs, err := vault.NewCertSource(ctx, vault.CertSourceConfig{
		Client: c, Mount: v.pkiMount, Role: v.role, CommonName: v.certNames[0], DNSNames: v.certNames,
		IPs: v.certIPs, URI: "spiffe://" + trustDomain + "/gateway", TTL: v.certTTL, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	rt := &vaultRuntime{client: c, certs: certs}
	if rt.kv, err = vault.NewKV(c, v.kvMount); err != nil {
		return nil, err
	}
	if v.transitKey != "" {
		if rt.signer, err = vault.NewTransitSigner(c, v.transitMount, v.transitKey); err != nil {
			return nil, err
		}
	}
	if v.databaseRole != "" {
		if rt.db, err = vault.NewDatabaseCredentials(ctx, c, v.databaseMount, v.databaseRole); err != nil {
			return nil, err
		}
	}
	return rt, nil
}

// errDatabaseUserReplaced stops serve when Vault had to issue a new database
// user: the pool was built with the old one, so the process restarts (under
// its supervisor) to connect as the new one. Renewals keep this rare: the
// role's max_ttl bounds it.
var errDatabaseUserReplaced = errors.New("vault: database user reached its max ttl and was replaced; restarting to use the new one")

// run keeps the token, the certificate and the database lease alive until
// ctx ends.
func (rt *vaultRuntime) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.client.Run(gctx) })
	g.Go(func() error { return rt.certs.Run(gctx) })
	if rt.db != nil {
		replaced := make(chan struct{}, 1)
		rt.db.OnChange = func() { replaced <- struct{}{} }
		g.Go(func() error { return rt.db.Run(gctx) })
		g.Go(func() error {
			select {
			case <-replaced:
				return errDatabaseUserReplaced
			case <-gctx.Done():
				return nil
			}
		})
	}
	return g.Wait()
}

// databaseURL returns base with the Vault-issued user, or base unchanged
// without --vault-database-role.
func (rt *vaultRuntime) databaseURL(base string) (string, error) {
	if rt == nil || rt.db == nil {
		return base, nil
	}
	return rt.db.URL(base)
}

// ready combines the database check with the certificate's: not ready once
// Vault has been unreachable for longer than the certificate's life allows.
func ready(db func(context.Context) error, certs func(context.Context) error) func(context.Context) error {
	if certs == nil {
		return db
	}
	return func(ctx context.Context) error {
		if err := certs(ctx); err != nil {
			return err
		}
		return db(ctx)
	}
}

// vaultRole returns the PKI role for a partner's certificates.
func vaultRole(role, partnerID string) string {
	if role != "" {
		return role
	}
	return "partner-" + partnerID
}

// describeCert is one line about a certificate for the operator.
func describeCert(uri, serial string, notAfter time.Time) string {
	return fmt.Sprintf("signed %s, serial %s, valid until %s", uri, strings.ToLower(serial), notAfter.UTC().Format(time.RFC3339))
}

// serveCerts returns the gateway's certificate source: Vault PKI when
// --vault-addr is set, else the --tls-* files. rt is nil in file mode.
func serveCerts(ctx context.Context, e *env, o gatewayOptions, v vaultOptions, url, certFile, keyFile, caFile string, log *slog.Logger) (tlsconfig.CertSource, *vaultRuntime, error) {
	if url == "" {
		return nil, nil, errors.New("--database-url (or COALITION_DATABASE_URL) is required")
	}
	if v.addr == "" {
		if certFile == "" || keyFile == "" || caFile == "" {
			return nil, nil, errors.New("--tls-cert, --tls-key and --tls-client-ca are required unless --vault-addr is set (or COALITION_TLS_CERT, ...)")
		}
		src, err := tlsconfig.NewFileSource(certFile, keyFile, caFile)
		return src, nil, err
	}
	rt, err := startVault(ctx, e, v, o.trustDomain, log)
	if err != nil {
		return nil, nil, err
	}
	return rt.certs, rt, nil
}

// start runs rt's upkeep in the background. The returned context ends with
// ctx or when the upkeep fails; stop cancels it, waits, and returns the
// upkeep's error if it failed, else err. stop may be called more than once.
func (rt *vaultRuntime) start(ctx context.Context) (context.Context, func(err error) error) {
	if rt == nil {
		return ctx, func(err error) error { return err }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		err := rt.run(ctx)
		cancel()
		done <- err
	}()
	var once sync.Once
	var runErr error
	return ctx, func(err error) error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		if runErr != nil {
			return runErr
		}
		return err
	}
}

// readyFunc returns the certificate readiness check, nil in file mode.
func (rt *vaultRuntime) readyFunc() func(context.Context) error {
	if rt == nil {
		return nil
	}
	return rt.certs.Ready
}

// statementSigner picks who signs published statements: Vault Transit when serve runs with
// Vault, else a local key file when one is given, else nobody (statements are unsigned).
func statementSigner(rt *vaultRuntime, keyFile string) (settlement.StatementSigner, error) {
	switch {
	case rt != nil && rt.signer != nil:
		return rt.signer, nil
	case keyFile != "":
		return localsign.Open(keyFile)
	default:
		return nil, nil
	}
}
