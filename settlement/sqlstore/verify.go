package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Violation is one broken ledger invariant.
type Violation struct {
	Check  string
	Detail string
}

// invariants are queries that return one row per violation (DESIGN.md §4). Each reads the
// whole ledger: they are for tests and `coalition verify`, not the request path.
var invariants = []struct{ check, sql string }{
	{"entries of each transaction sum to zero",
		`SELECT txn_id::TEXT, sum(amount)::TEXT FROM entries GROUP BY txn_id HAVING sum(amount) <> 0`},
	{"every transaction has entries",
		`SELECT t.id::TEXT, t.kind FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.txn_id = t.id)`},
	{"member posted balance equals its entries",
		`SELECT m.id, m.posted::TEXT || ' vs ' || COALESCE(e.total, 0)::TEXT FROM members m
		 LEFT JOIN (SELECT account, sum(amount) AS total FROM entries GROUP BY account) e ON e.account = 'member:' || m.id
		 LEFT JOIN (SELECT account, sum(amount) AS total FROM entries GROUP BY account) h ON h.account = 'member:' || m.id || ':holds'
		 WHERE m.posted <> COALESCE(e.total, 0) + COALESCE(h.total, 0)`},
	{"member held equals its open holds and its holds account",
		`SELECT m.id, m.held::TEXT || ' vs ' || COALESCE(o.total, 0)::TEXT || '/' || COALESCE(h.total, 0)::TEXT FROM members m
		 LEFT JOIN (SELECT member_id, sum(points) AS total FROM holds WHERE status = 'open' GROUP BY member_id) o ON o.member_id = m.id
		 LEFT JOIN (SELECT account, sum(amount) AS total FROM entries GROUP BY account) h ON h.account = 'member:' || m.id || ':holds'
		 WHERE m.held <> COALESCE(o.total, 0) OR m.held <> COALESCE(h.total, 0)`},
	{"lots remaining minus debt equals posted",
		`SELECT m.id, COALESCE(l.total, 0)::TEXT || ' - ' || m.debt::TEXT || ' vs ' || m.posted::TEXT FROM members m
		 LEFT JOIN (SELECT member_id, sum(remaining) AS total FROM lots GROUP BY member_id) l ON l.member_id = m.id
		 WHERE COALESCE(l.total, 0) - m.debt <> m.posted`},
	{"redemptions are fully traced to lots",
		`SELECT t.id::TEXT, t.points::TEXT || ' vs ' || COALESCE(sum(c.points), 0)::TEXT FROM transactions t
		 LEFT JOIN lot_consumptions c ON c.txn_id = t.id
		 WHERE t.kind IN ('redeem', 'capture') GROUP BY t.id, t.points HAVING t.points <> COALESCE(sum(c.points), 0)`},
	// Redemptions and holds never take available below zero; only award reversals do (spent or
	// held points), so available + Σ points reversed from the member's awards is never negative.
	{"no available balance below zero unless from a reversed award",
		`SELECT m.id, (m.posted - m.held)::TEXT || ' with ' || COALESCE(r.total, 0)::TEXT || ' reversed from awards' FROM members m
		 LEFT JOIN (SELECT rev.member_id, sum(rev.points) AS total FROM transactions rev
		            JOIN transactions a ON a.id = rev.reverses_id AND a.kind IN ('award', 'bonus')
		            WHERE rev.kind IN ('reversal', 'bonus_reversal') GROUP BY rev.member_id) r ON r.member_id = m.id
		 WHERE m.posted - m.held + COALESCE(r.total, 0) < 0`},
	{"issued - reversed = outstanding + redeemed + expired",
		`SELECT 'coalition', i::TEXT || ' vs ' || o::TEXT || ' + ' || r::TEXT || ' + ' || x::TEXT FROM (SELECT
		   (SELECT COALESCE(sum(points - reversed), 0) FROM lots) AS i,
		   (SELECT COALESCE(sum(remaining), 0) FROM lots) AS o,
		   (SELECT COALESCE(sum(points - returned), 0) FROM lot_consumptions) AS r,
		   (SELECT COALESCE(sum(expired), 0) FROM lots) AS x,
		   (SELECT COALESCE(sum(debt), 0) FROM members) AS d) x WHERE i + d <> o + r + x`},
	{"breakage account equals expired points",
		`SELECT 'coalition:breakage', b::TEXT || ' vs ' || x::TEXT FROM (SELECT
		   (SELECT COALESCE(sum(amount), 0) FROM entries WHERE account = 'coalition:breakage') AS b,
		   (SELECT COALESCE(sum(expired), 0) FROM lots) AS x) y WHERE b <> x`},
	{"no idempotency key with two effects",
		`SELECT partner_id || '/' || idempotency_key, count(*)::TEXT || ' transactions' FROM transactions
		 WHERE idempotency_key <> '' GROUP BY partner_id, idempotency_key HAVING count(*) > 1`},
	// Roll-ups (rollup.go): the rollups equal the sums of the rolled-up epochs' ledger rows.
	{"rolled-up flows equal their transactions", rollupCheck("rollup_flows",
		[]string{"hour_no", "period", "partner_id", "kind", "price_version"}, []string{"points", "txns"},
		`SELECT `+hourNo("t.created_at")+` AS hour_no, t.period, t.partner_id, t.kind, t.price_version, sum(t.points) AS points, count(*) AS txns
		 FROM transactions t WHERE t.epoch IN (SELECT epoch FROM rollup_epochs) AND `+flowKinds("t")+` GROUP BY 1, 2, 3, 4, 5`)},
	{"rolled-up lineage equals its lot consumptions", rollupCheck("rollup_lineage",
		[]string{"hour_no", "period", "issuer", "partner_id", "price_version"}, []string{"points", "redemptions"},
		`SELECT `+hourNo("c.created_at")+` AS hour_no, c.period, c.issuer, c.partner_id, c.price_version, sum(c.points) AS points,
		   sum(CASE WHEN c.issuer_first THEN 1 ELSE 0 END) AS redemptions
		 FROM transactions t JOIN lot_consumptions c ON c.txn_id = t.id WHERE t.epoch IN (SELECT epoch FROM rollup_epochs) GROUP BY 1, 2, 3, 4, 5`)},
	{"rolled-up ledger totals equal their entries", rollupCheck("rollup_totals",
		[]string{"hour_no", "period", "account"}, []string{"amount"},
		`SELECT `+hourNo("e.created_at")+` AS hour_no, e.period, e.account, sum(e.amount) AS amount
		 FROM transactions t JOIN entries e ON e.txn_id = t.id
		 WHERE t.epoch IN (SELECT epoch FROM rollup_epochs) AND (e.account LIKE 'partner:%' OR e.account LIKE 'campaign:%') GROUP BY 1, 2, 3`)},
}

// rollupCheck compares a rollup table with the same sums taken from the ledger rows (raw),
// key by key, and returns one row per difference.
func rollupCheck(table string, keys, sums []string, raw string) string {
	var on, id []string
	for _, k := range keys {
		on = append(on, "r."+k+" = w."+k)
		id = append(id, "COALESCE(r."+k+", w."+k+")::TEXT")
	}
	var got, want, differ []string
	for _, v := range sums {
		got = append(got, "COALESCE(r."+v+", 0)::TEXT")
		want = append(want, "COALESCE(w."+v+", 0)::TEXT")
		differ = append(differ, "r."+v+" <> w."+v)
	}
	return `SELECT ` + strings.Join(id, " || '/' || ") + `, ` + strings.Join(got, " || ',' || ") + ` || ' vs ' || ` + strings.Join(want, " || ',' || ") + `
		FROM ` + table + ` r FULL OUTER JOIN (` + raw + `) w ON ` + strings.Join(on, " AND ") + `
		WHERE r.hour_no IS NULL OR w.hour_no IS NULL OR ` + strings.Join(differ, " OR ")
}

// Verify checks the ledger invariants on one consistent snapshot and returns every violation.
func (s *Store) Verify(ctx context.Context) ([]Violation, error) {
	var out []Violation
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		out = out[:0]
		for _, inv := range invariants {
			rows, err := tx.Query(ctx, inv.sql)
			if err != nil {
				return fmt.Errorf("%s: %w", inv.check, err)
			}
			found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Violation, error) {
				var a, b string
				err := r.Scan(&a, &b)
				return Violation{Check: inv.check, Detail: a + ": " + b}, err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", inv.check, err)
			}
			out = append(out, found...)
		}
		return nil
	})
	return out, err
}
