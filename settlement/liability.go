package settlement

import (
	"strconv"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// AgeBuckets are the liability report's age buckets, by months since award: [From, To).
var AgeBuckets = []AgeBucket{
	{Name: "0-3", FromMonths: 0, ToMonths: 3},
	{Name: "3-6", FromMonths: 3, ToMonths: 6},
	{Name: "6-12", FromMonths: 6, ToMonths: 12},
	{Name: "12-24", FromMonths: 12, ToMonths: 24},
	{Name: "24+", FromMonths: 24, ToMonths: 0},
}

// AgeBucket is a range of lot ages in months; ToMonths 0 means no upper bound.
type AgeBucket struct {
	Name                 string
	FromMonths, ToMonths int
}

// LiabilityRow is one issuer's outstanding points of one age bucket, valued at the issue
// prices the lots were awarded at (empty value for issuers without a price, e.g. campaigns).
type LiabilityRow struct {
	Issuer             string
	Bucket             string
	Lots               int64
	Points             int64
	ExpiringSoonPoints int64 // of Points, expiring within ExpiringSoonWindow after At
	Value              apd.Decimal
	ExpiringSoonValue  apd.Decimal
	Currency           string
	Priced             bool // false when the issuer has no issue price (Value is then zero)
}

// LiabilityReport is the points outstanding at At: lots with points left that were awarded
// by At and expire after it, by issuer and age bucket.
type LiabilityReport struct {
	At   time.Time
	Rows []LiabilityRow // by issuer, then bucket order
}

// LiabilityCSV renders the report: a header row, one row per issuer and bucket.
func LiabilityCSV(r LiabilityReport) []byte {
	rows := [][]string{{"at", "issuer", "age_bucket", "lots", "points", "expiring_30d_points", "value", "expiring_30d_value", "currency"}}
	at := r.At.UTC().Format(time.RFC3339)
	for _, l := range r.Rows {
		value, soon := "", ""
		if l.Priced {
			value, soon = plain(l.Value), plain(l.ExpiringSoonValue)
		}
		rows = append(rows, []string{at, l.Issuer, l.Bucket, strconv.FormatInt(l.Lots, 10), strconv.FormatInt(l.Points, 10),
			strconv.FormatInt(l.ExpiringSoonPoints, 10), value, soon, l.Currency})
	}
	return renderCSV(rows)
}

type liabilityRowJSON struct {
	Issuer             string `json:"issuer"`
	Bucket             string `json:"age_bucket"`
	Lots               int64  `json:"lots"`
	Points             int64  `json:"points"`
	ExpiringSoonPoints int64  `json:"expiring_30d_points"`
	Value              string `json:"value,omitempty"`
	ExpiringSoonValue  string `json:"expiring_30d_value,omitempty"`
	Currency           string `json:"currency,omitempty"`
}

// LiabilityJSON renders the report as indented JSON, amounts as decimal strings.
func LiabilityJSON(r LiabilityReport) []byte {
	out := struct {
		At   string             `json:"at"`
		Rows []liabilityRowJSON `json:"rows"`
	}{At: r.At.UTC().Format(time.RFC3339), Rows: []liabilityRowJSON{}}
	for _, l := range r.Rows {
		j := liabilityRowJSON{Issuer: l.Issuer, Bucket: l.Bucket, Lots: l.Lots, Points: l.Points, ExpiringSoonPoints: l.ExpiringSoonPoints, Currency: l.Currency}
		if l.Priced {
			j.Value, j.ExpiringSoonValue = plain(l.Value), plain(l.ExpiringSoonValue)
		}
		out.Rows = append(out.Rows, j)
	}
	return mustJSON(out)
}

// RoundMoney rounds d half-even to minor units, as statement lines are.
func RoundMoney(d apd.Decimal) (apd.Decimal, error) {
	var out apd.Decimal
	_, err := money.Quantize(&out, &d, -minorUnits)
	return out, err
}
