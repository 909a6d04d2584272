package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// maxCampaignsListed bounds ListCampaigns.
const maxCampaignsListed = 1000

// CreateCampaign stores a validated campaign (active) with its sponsors, partners and budget
// split over the budget shards. It returns settlement.ErrCampaignExists when the id is taken
// and settlement.ErrCampaignRejected when a sponsor or partner is not registered.
func (s *Store) CreateCampaign(ctx context.Context, c settlement.Campaign, now time.Time) (settlement.Campaign, error) {
	var multiplier, fixed any
	if c.Multiplier.IsZero() {
		fixed = c.FixedBonusPoints
	} else {
		multiplier = c.Multiplier.Text('f')
	}
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := checkRegistered(ctx, tx, c); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO campaigns (id, name, status, starts_at, ends_at, multiplier, fixed_bonus_points,
				min_base_points, member_cap_points, budget_points, lot_lifetime_ms, created_at)
			VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING`,
			c.ID, c.Name, c.StartsAt, c.EndsAt, multiplier, fixed, c.MinBasePoints, c.MemberCapPoints, c.BudgetPoints,
			c.LotLifetime.Milliseconds(), now)
		if err != nil {
			return fmt.Errorf("insert campaign: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s", settlement.ErrCampaignExists, c.ID)
		}
		var w writes
		for _, sp := range c.Sponsors {
			w.exec("insert sponsor", 1, `INSERT INTO campaign_sponsors (campaign_id, partner_id, share_bps) VALUES ($1, $2, $3)`, c.ID, sp.PartnerID, sp.ShareBps)
		}
		for _, p := range c.Partners {
			w.exec("insert partner", 1, `INSERT INTO campaign_partners (partner_id, campaign_id) VALUES ($1, $2)`, p, c.ID)
		}
		for shard := range int64(budgetShards) {
			part := c.BudgetPoints / budgetShards
			if shard < c.BudgetPoints%budgetShards {
				part++
			}
			w.exec("insert budget shard", 1, `INSERT INTO campaign_budget_shards (campaign_id, shard, remaining) VALUES ($1, $2, $3)`, c.ID, shard, part)
		}
		_, err = w.send(ctx, tx)
		return err
	})
	if err != nil {
		return settlement.Campaign{}, err
	}
	return s.GetCampaign(ctx, c.ID)
}

// checkRegistered refuses a campaign naming a sponsor or partner that is not registered.
func checkRegistered(ctx context.Context, tx pgx.Tx, c settlement.Campaign) error {
	want := map[string]bool{}
	for _, sp := range c.Sponsors {
		want[sp.PartnerID] = true
	}
	for _, p := range c.Partners {
		want[p] = true
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	rows, err := tx.Query(ctx, `SELECT id FROM partners WHERE id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("read partners: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read partners: %w", err)
	}
	for _, id := range found {
		delete(want, id)
	}
	if len(want) == 0 {
		return nil
	}
	var missing []string
	for id := range want {
		missing = append(missing, id)
	}
	sort.Strings(missing)
	return fmt.Errorf("%w: partners not registered: %s", settlement.ErrCampaignRejected, strings.Join(missing, ", "))
}

// GetCampaign reads one campaign with the budget left. It returns
// settlement.ErrCampaignNotFound when there is none.
func (s *Store) GetCampaign(ctx context.Context, id string) (settlement.Campaign, error) {
	cs, err := s.readCampaigns(ctx, id)
	if err != nil {
		return settlement.Campaign{}, err
	}
	if len(cs) == 0 {
		return settlement.Campaign{}, fmt.Errorf("%w: %s", settlement.ErrCampaignNotFound, id)
	}
	return cs[0], nil
}

// ListCampaigns reads every campaign (at most 1000) by id.
func (s *Store) ListCampaigns(ctx context.Context) ([]settlement.Campaign, error) {
	return s.readCampaigns(ctx, "")
}

// SetCampaignStatus pauses, resumes or ends a campaign; it applies to the next award. It
// returns settlement.ErrCampaignNotFound, or settlement.ErrCampaignEnded once it has ended.
func (s *Store) SetCampaignStatus(ctx context.Context, id string, status settlement.CampaignStatus) (settlement.Campaign, error) {
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var old string
		err := tx.QueryRow(ctx, `SELECT status FROM campaigns WHERE id = $1 FOR UPDATE`, id).Scan(&old)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%w: %s", settlement.ErrCampaignNotFound, id)
		case err != nil:
			return fmt.Errorf("read campaign: %w", err)
		case settlement.CampaignStatus(old) == settlement.CampaignEnded:
			return fmt.Errorf("%w: %s", settlement.ErrCampaignEnded, id)
		}
		_, err = tx.Exec(ctx, `UPDATE campaigns SET status = $2 WHERE id = $1`, id, string(status))
		return err
	})
	if err != nil {
		return settlement.Campaign{}, err
	}
	return s.GetCampaign(ctx, id)
}

// readCampaigns reads one campaign (id) or all, with sponsors, partners and budget left, on
// one snapshot.
func (s *Store) readCampaigns(ctx context.Context, id string) ([]settlement.Campaign, error) {
	var out []settlement.Campaign
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.id, c.name, c.status, c.starts_at, c.ends_at, COALESCE(c.multiplier::TEXT, ''),
				COALESCE(c.fixed_bonus_points, 0), c.min_base_points, c.member_cap_points, c.budget_points, c.lot_lifetime_ms, c.created_at,
				(SELECT COALESCE(sum(b.remaining), 0)::INT8 FROM campaign_budget_shards b WHERE b.campaign_id = c.id),
				(SELECT COALESCE(string_agg(s.partner_id || ':' || s.share_bps::TEXT || ':0', ',' ORDER BY s.partner_id), '') FROM campaign_sponsors s WHERE s.campaign_id = c.id),
				ARRAY(SELECT p.partner_id FROM campaign_partners p WHERE p.campaign_id = c.id ORDER BY p.partner_id)
			FROM campaigns c WHERE $1 = '' OR c.id = $1 ORDER BY c.id LIMIT $2`, id, maxCampaignsListed)
		if err != nil {
			return fmt.Errorf("read campaigns: %w", err)
		}
		out, err = pgx.CollectRows(rows, scanCampaign)
		return err
	})
	return out, err
}

func scanCampaign(r pgx.CollectableRow) (settlement.Campaign, error) {
	var c settlement.Campaign
	var status, multiplier, sponsors string
	var lifetimeMs int64
	err := r.Scan(&c.ID, &c.Name, &status, &c.StartsAt, &c.EndsAt, &multiplier, &c.FixedBonusPoints, &c.MinBasePoints,
		&c.MemberCapPoints, &c.BudgetPoints, &lifetimeMs, &c.CreatedAt, &c.BudgetRemainingPoints, &sponsors, &c.Partners)
	if err != nil {
		return c, fmt.Errorf("read campaign: %w", err)
	}
	c.Status, c.LotLifetime = settlement.CampaignStatus(status), time.Duration(lifetimeMs)*time.Millisecond
	if multiplier != "" {
		if _, _, err := c.Multiplier.SetString(multiplier); err != nil {
			return c, fmt.Errorf("campaign %s multiplier %q: %w", c.ID, multiplier, err)
		}
		c.Multiplier.Reduce(&c.Multiplier)
	}
	if sponsors != "" {
		terms, err := parseSponsors(sponsors)
		if err != nil {
			return c, err
		}
		for _, t := range terms {
			c.Sponsors = append(c.Sponsors, settlement.Sponsor{PartnerID: t.PartnerID, ShareBps: t.ShareBps})
		}
	}
	return c, nil
}
