package sqlstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// campaignFlowsSQL aggregates the period's bonuses and bonus reversals from campaign_bonuses
// alone: each row carries its period, time, the time of the bonus it undoes (late adjustments)
// and the sponsors' shares and price versions at issuance.
var campaignFlowsSQL = `SELECT b.campaign_id, b.sponsors, b.kind = 'bonus_reversal',
	(b.created_at <= $2 OR b.origin_created_at <= $2), sum(b.points)::INT8, count(*)
FROM campaign_bonuses b
WHERE ` + membershipOf("b") + `
GROUP BY 1, 2, 3, 4`

// readCampaigns reads the period's campaign aggregates and every campaign's sponsors (shares
// never change after creation, so a re-run reads the same) into d.
func readCampaigns(ctx context.Context, tx pgx.Tx, args []any, d *settlement.PeriodData) error {
	rows, err := tx.Query(ctx, campaignFlowsSQL, args...)
	if err != nil {
		return fmt.Errorf("aggregate campaigns: %w", err)
	}
	d.Campaigns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.CampaignAggregate, error) {
		var g settlement.CampaignAggregate
		var sponsors string
		if err := r.Scan(&g.CampaignID, &sponsors, &g.Reversal, &g.Late, &g.Points, &g.Txns); err != nil {
			return g, err
		}
		g.Sponsors, err = parseSponsors(sponsors)
		return g, err
	})
	if err != nil {
		return fmt.Errorf("aggregate campaigns: %w", err)
	}
	for _, g := range d.Campaigns {
		d.Transactions += g.Txns
		if g.Late {
			d.Late += g.Txns
		}
	}
	rows, err = tx.Query(ctx, `SELECT campaign_id, partner_id, share_bps FROM campaign_sponsors ORDER BY campaign_id, partner_id`)
	if err != nil {
		return fmt.Errorf("read campaign sponsors: %w", err)
	}
	d.CampaignSponsors = map[string][]settlement.Sponsor{}
	var id string
	var s settlement.Sponsor
	_, err = pgx.ForEachRow(rows, []any{&id, &s.PartnerID, &s.ShareBps}, func() error {
		d.CampaignSponsors[id] = append(d.CampaignSponsors[id], s)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read campaign sponsors: %w", err)
	}
	return nil
}
