package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/vault"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// outboxCollector exports the outbox backlog per partner, read from the database at scrape
// time: coalition_outbox_depth and coalition_outbox_oldest_age_seconds.
type outboxCollector struct {
	store      *sqlstore.Store
	now        func() time.Time
	depth, age *prometheus.Desc
}

func newOutboxCollector(store *sqlstore.Store) *outboxCollector {
	return &outboxCollector{store: store, now: time.Now,
		depth: prometheus.NewDesc("coalition_outbox_depth", "Events waiting for delivery, by receiving partner.", []string{"partner"}, nil),
		age:   prometheus.NewDesc("coalition_outbox_oldest_age_seconds", "Age of the oldest undelivered event, by receiving partner.", []string{"partner"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth; ch <- c.age }

// Collect implements prometheus.Collector; a failed read exports nothing rather than zeros.
func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	backlog, err := c.store.OutboxBacklog(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.depth, err)
		return
	}
	now := c.now()
	for _, b := range backlog {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(b.Pending), b.PartnerID)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(b.Oldest).Seconds(), b.PartnerID)
	}
}

// vaultTokenCollector exports coalition_vault_token_expiry_seconds from the client's status.
type vaultTokenCollector struct {
	client *vault.Client
	now    func() time.Time
	desc   *prometheus.Desc
}

func newVaultTokenCollector(client *vault.Client) *vaultTokenCollector {
	return &vaultTokenCollector{client: client, now: time.Now,
		desc: prometheus.NewDesc("coalition_vault_token_expiry_seconds", "Seconds until the gateway's Vault token expires (absent for a token that never does).", nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *vaultTokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *vaultTokenCollector) Collect(ch chan<- prometheus.Metric) {
	at := c.client.Status().TokenExpiresAt
	if at.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, at.Sub(c.now()).Seconds())
}
