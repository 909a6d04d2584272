package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// budgetShards is how many rows hold each campaign's budget (campaign_budget_shards), so 64
// concurrent awards do not all update one row.
const budgetShards = 16

// maxCampaignsPerAward bounds how many campaigns one award can earn bonuses from.
const maxCampaignsPerAward = 16

// campaignIssuer is the lot issuer (and ledger account) of a campaign's bonuses.
func campaignIssuer(id string) string { return settlement.CampaignAccount(id) }

// applicable is what an award needs of a campaign that applies to it.
type applicable struct {
	campaign settlement.Campaign
	sponsors string // "partner:bps:version,..." at issuance, for settlement
}

// applyCampaigns credits the bonuses of the active campaigns of the awarding partner whose
// window contains now, in the award's transaction, each as its own transaction (kind bonus:
// member +bonus, campaign:<id> −bonus) and lot (issuer campaign:<id>). The member's cap is
// taken first (a conditional upsert of one row per member), then the budget (one random shard,
// several only when that one cannot cover it); a bonus larger than what is left of either gets
// what is left, so neither is ever exceeded.
func (s *Store) applyCampaigns(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, camps []applicable, out *settlement.Outcome, now time.Time) error {
	for _, a := range camps {
		c := a.campaign
		want := c.BonusPoints(cmd.Points)
		if want <= 0 {
			continue
		}
		granted, err := takeCap(ctx, tx, c, cmd.MemberID, want)
		if err != nil {
			return err
		}
		if granted == 0 {
			continue
		}
		got, err := takeBudget(ctx, tx, c.ID, granted)
		if err != nil {
			return err
		}
		if got < granted {
			w.exec("return cap", 1, `UPDATE campaign_member_caps SET awarded = awarded - $3
				WHERE campaign_id = $1 AND member_id = $2 AND awarded >= $3`, c.ID, cmd.MemberID, granted-got)
		}
		if got == 0 {
			continue
		}
		b, err := s.creditBonus(ctx, tx, w, cmd, out.Transaction.ID, a, got, &out.Balance, now)
		if err != nil {
			return err
		}
		out.Bonuses = append(out.Bonuses, b)
	}
	return nil
}

// applicableSQL selects the campaigns that apply to an award by partner $1 at $2 (at most $3),
// with their sponsors' shares and price versions in force; award reads it with the partner's
// limits in one round trip (points.go).
const applicableSQL = `SELECT c.id, COALESCE(c.multiplier::TEXT, ''), COALESCE(c.fixed_bonus_points, 0),
			c.min_base_points, c.member_cap_points, c.lot_lifetime_ms,
			(SELECT string_agg(s.partner_id || ':' || s.share_bps::TEXT || ':' ||
				COALESCE((SELECT max(t.version) FROM price_terms t WHERE t.partner_id = s.partner_id AND t.effective_at <= $2), 0)::TEXT,
				',' ORDER BY s.partner_id) FROM campaign_sponsors s WHERE s.campaign_id = c.id)
		FROM campaign_partners p JOIN campaigns c ON c.id = p.campaign_id
		WHERE p.partner_id = $1 AND c.status = 'active' AND c.starts_at <= $2 AND c.ends_at > $2
		ORDER BY c.id LIMIT $3`

// applicableBatchSQL is applicableSQL for many awards in one statement: award r.ord by
// partner $1[ord] at $2[ord], at most $3 campaigns each, ordered by award then campaign.
var applicableBatchSQL = `SELECT r.ord, a.* FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[]) WITH ORDINALITY AS r (partner, at, ord),
	LATERAL (` + strings.NewReplacer("$1", "r.partner", "$2", "r.at").Replace(applicableSQL) + `) AS a
	ORDER BY r.ord, a.id`

func scanApplicable(rows pgx.Rows) ([]applicable, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (applicable, error) { return scanApplicableRow(r) })
	if err != nil {
		return nil, fmt.Errorf("read campaigns: %w", err)
	}
	return out, nil
}

// scanApplicableRow scans one campaign of applicableSQL, after the columns lead scans into.
func scanApplicableRow(r pgx.Row, lead ...any) (applicable, error) {
	var a applicable
	var multiplier string
	var lifetimeMs int64
	c := &a.campaign
	dest := append(lead, &c.ID, &multiplier, &c.FixedBonusPoints, &c.MinBasePoints, &c.MemberCapPoints, &lifetimeMs, &a.sponsors)
	if err := r.Scan(dest...); err != nil {
		return a, err
	}
	c.LotLifetime = time.Duration(lifetimeMs) * time.Millisecond
	if multiplier != "" {
		if _, _, err := c.Multiplier.SetString(multiplier); err != nil {
			return a, fmt.Errorf("campaign %s multiplier %q: %w", c.ID, multiplier, err)
		}
	}
	return a, nil
}

// takeCap reserves up to want bonus points against the member's cap and returns how many it
// reserved (0 once the cap is reached).
func takeCap(ctx context.Context, tx pgx.Tx, c settlement.Campaign, memberID string, want int64) (int64, error) {
	limit := c.MemberCapPoints
	if limit == 0 {
		limit = math.MaxInt64
	}
	var granted int64
	err := tx.QueryRow(ctx, `WITH old AS (SELECT awarded FROM campaign_member_caps WHERE campaign_id = $1 AND member_id = $2)
		INSERT INTO campaign_member_caps (campaign_id, member_id, awarded) VALUES ($1, $2, least($3::INT8, $4::INT8))
		ON CONFLICT (campaign_id, member_id) DO UPDATE
			SET awarded = campaign_member_caps.awarded + least(excluded.awarded, $4::INT8 - campaign_member_caps.awarded)
		RETURNING awarded - COALESCE((SELECT awarded FROM old), 0)`, c.ID, memberID, want, limit).Scan(&granted)
	if err != nil {
		return 0, fmt.Errorf("take member cap: %w", err)
	}
	return granted, nil
}

// takeBudget takes up to want points from the campaign's budget and returns how many it took.
// It tries one random shard with a conditional UPDATE; only when that shard cannot cover want
// does it take from every shard with points left, in shard order. Under SERIALIZABLE a
// concurrent change to a shard read here fails the transaction (retried), never overspends.
func takeBudget(ctx context.Context, tx pgx.Tx, campaignID string, want int64) (int64, error) {
	tag, err := tx.Exec(ctx, `UPDATE campaign_budget_shards SET remaining = remaining - $3
		WHERE campaign_id = $1 AND shard = $2 AND remaining >= $3`, campaignID, rand.IntN(budgetShards), want)
	if err != nil {
		return 0, fmt.Errorf("take budget: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return want, nil
	}
	rows, err := tx.Query(ctx, `SELECT shard, remaining FROM campaign_budget_shards
		WHERE campaign_id = $1 AND remaining > 0 ORDER BY shard LIMIT $2`, campaignID, budgetShards)
	if err != nil {
		return 0, fmt.Errorf("read budget: %w", err)
	}
	type shard struct{ n, remaining int64 }
	shards, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shard, error) {
		var s shard
		return s, r.Scan(&s.n, &s.remaining)
	})
	if err != nil {
		return 0, fmt.Errorf("read budget: %w", err)
	}
	var got int64
	for _, sh := range shards {
		if got == want {
			break
		}
		take := min(want-got, sh.remaining)
		tag, err := tx.Exec(ctx, `UPDATE campaign_budget_shards SET remaining = remaining - $3
			WHERE campaign_id = $1 AND shard = $2 AND remaining >= $3`, campaignID, sh.n, take)
		if err != nil {
			return 0, fmt.Errorf("take budget: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return 0, fmt.Errorf("take budget: shard %d of %s changed under a serializable read", sh.n, campaignID)
		}
		got += take
	}
	return got, nil
}

// creditBonus credits points to the member as the campaign's bonus on the award awardID: the
// bonus transaction, its lot (which first pays back any debt left after the award) and the
// campaign_bonuses row linking it to the award. bal becomes the balance after the bonus.
func (s *Store) creditBonus(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, awardID string, a applicable, points int64, bal *settlement.Balance, now time.Time) (settlement.Bonus, error) {
	var oldDebt, newDebt int64
	err := tx.QueryRow(ctx, `WITH old AS (SELECT debt FROM members WHERE id = $1)
		UPDATE members SET posted = posted + $2, debt = CASE WHEN debt > $2 THEN debt - $2 ELSE 0 END, updated_at = $3
		WHERE id = $1 RETURNING posted, held, debt, (SELECT debt FROM old)`, cmd.MemberID, points, now).Scan(&bal.Posted, &bal.Held, &newDebt, &oldDebt)
	if err != nil {
		return settlement.Bonus{}, fmt.Errorf("credit bonus: %w", err)
	}
	c := a.campaign
	id := newID()
	err = w.addTxn(txnRow{id: id, partnerID: cmd.PartnerID, memberID: cmd.MemberID, kind: string(settlement.KindBonus),
		points: points, reference: cmd.Reference, occurredAt: now, createdAt: now},
		entry{memberAccount(cmd.MemberID), points}, entry{campaignIssuer(c.ID), -points})
	if err != nil {
		return settlement.Bonus{}, err
	}
	lifetime := c.LotLifetime
	if lifetime == 0 {
		lifetime = s.lotLifetime
	}
	w.insert("insert bonus lot", 1, `INSERT INTO lots (id, member_id, issuer, partner_id, points, remaining, expires_at, created_at, price_version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		id, cmd.MemberID, campaignIssuer(c.ID), cmd.PartnerID, points, points-(oldDebt-newDebt), now.Add(lifetime), now, w.stamp.priceVersion)
	w.insert("link bonus", 1, `INSERT INTO campaign_bonuses (award_id, txn_id, kind, campaign_id, partner_id, member_id, points, sponsors, period, created_at, origin_created_at)
		VALUES ($1, $2, 'bonus', $3, $4, $5, $6, $7, $8, $9, $9)`,
		awardID, id, c.ID, cmd.PartnerID, cmd.MemberID, points, a.sponsors, w.stamp.period, now)
	return settlement.Bonus{CampaignID: c.ID, Points: points, TransactionID: id}, nil
}

// parseSponsors reads campaign_bonuses.sponsors: "partner:bps:version,..." sorted by partner.
func parseSponsors(s string) ([]settlement.CampaignSponsorTerms, error) {
	var out []settlement.CampaignSponsorTerms
	for part := range strings.SplitSeq(s, ",") {
		fields := strings.Split(part, ":")
		if len(fields) != 3 {
			return nil, fmt.Errorf("sponsors %q: want partner:bps:version", s)
		}
		bps, err1 := strconv.ParseInt(fields[1], 10, 64)
		version, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("sponsors %q: %w", s, err)
		}
		out = append(out, settlement.CampaignSponsorTerms{PartnerID: fields[0], ShareBps: bps, Version: version})
	}
	return out, nil
}
