package vault

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// DatabaseCredentials keeps a dynamic database user from
// <mount>/creds/<role>: it renews the lease while Vault allows and fetches a
// new user when the lease reaches its max TTL. Connections opened before a
// change keep working until Vault revokes the old user; new connections read
// Current (for example from pgxpool's BeforeConnect). It is safe for
// concurrent use.
type DatabaseCredentials struct {
	client *Client
	path   string
	cur    atomic.Pointer[vaultapi.Secret]
	// OnChange, when set before Run, is called after Run puts a new user in
	// use (the old lease could not be renewed any further).
	OnChange func()

	fetches, renewals atomic.Int64
}

// NewDatabaseCredentials fetches a first user from <mount>/creds/<role>
// (mount default "database").
func NewDatabaseCredentials(ctx context.Context, client *Client, mount, role string) (*DatabaseCredentials, error) {
	if client == nil || role == "" {
		return nil, errors.New("vault: database credentials need a client and a role")
	}
	if mount == "" {
		mount = "database"
	}
	d := &DatabaseCredentials{client: client, path: mount + "/creds/" + role}
	if err := d.fetch(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Current returns the user to open new connections with.
func (d *DatabaseCredentials) Current() (username, password string) {
	s := d.cur.Load()
	username, _ = s.Data["username"].(string)
	password, _ = s.Data["password"].(string)
	return username, password
}

// Counts returns how many users were fetched and lease renewals succeeded.
func (d *DatabaseCredentials) Counts() (fetches, renewals int64) {
	return d.fetches.Load(), d.renewals.Load()
}

// URL returns base (a postgres:// URL naming host, database and options)
// with the current user and password in place of any it had.
func (d *DatabaseCredentials) URL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", errors.New("vault: database url does not parse") // the url may hold a password
	}
	user, password := d.Current()
	u.User = url.UserPassword(user, password)
	return u.String(), nil
}

// Run keeps the credentials valid until ctx ends, then returns nil.
func (d *DatabaseCredentials) Run(ctx context.Context) error {
	c := d.client
	b := newBackoff(c.cfg.MinBackoff, c.cfg.MaxBackoff)
	for {
		d.watch(ctx)
		for {
			if ctx.Err() != nil {
				return nil
			}
			err := d.fetch(ctx)
			if err == nil {
				b.reset()
				if d.OnChange != nil {
					d.OnChange()
				}
				break
			}
			c.log.Warn("vault: database credentials not renewed; retrying", "err", err)
			if sleep(ctx, c.clock, b.wait()) != nil {
				return nil
			}
		}
	}
}

// watch renews the current lease until it can no longer be renewed.
func (d *DatabaseCredentials) watch(ctx context.Context) {
	s := d.cur.Load()
	if s.LeaseDuration == 0 {
		<-ctx.Done()
		return
	}
	w, err := d.client.api.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{
		Secret: s, RenewBehavior: vaultapi.RenewBehaviorIgnoreErrors,
	})
	if err != nil {
		d.client.log.Error("vault: database lease watcher", "err", err)
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
				d.client.log.Warn("vault: database lease renewal stopped", "err", err)
			}
			return
		case <-w.RenewCh():
			d.renewals.Add(1)
		}
	}
}

// fetch reads a new user and puts it in use.
func (d *DatabaseCredentials) fetch(ctx context.Context) error {
	s, err := d.client.read(ctx, d.path)
	if err != nil {
		return fmt.Errorf("vault: read %s: %w", d.path, err)
	}
	if _, err := stringField(s, "username"); err != nil {
		return fmt.Errorf("vault: read %s: %w", d.path, err)
	}
	if _, err := stringField(s, "password"); err != nil {
		return fmt.Errorf("vault: read %s: %w", d.path, err)
	}
	d.cur.Store(s)
	d.fetches.Add(1)
	d.client.log.Info("vault: database credentials issued", "lease_seconds", s.LeaseDuration,
		"lease_duration", (time.Duration(s.LeaseDuration) * time.Second).String())
	return nil
}
