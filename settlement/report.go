package settlement

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// Statement is one partner's settlement for one period, as finance reads it. It carries no
// run id or creation time, so a re-run of the period renders byte-identically.
type Statement struct {
	PartnerID      string
	Period         int64
	PreviousCutoff time.Time
	Cutoff         time.Time
	Currency       string
	Model          Model
	Lines          []Line
	Net            apd.Decimal
}

// StatementOf extracts partnerID's statement from a run (empty lines when it had no activity).
func StatementOf(rec RunRecord, partnerID string) Statement {
	st := Statement{PartnerID: partnerID, Period: rec.Period, PreviousCutoff: rec.PreviousCutoff, Cutoff: rec.Cutoff,
		Currency: rec.Currency, Model: rec.Model, Lines: rec.Result.Lines[partnerID]}
	for _, l := range st.Lines {
		_, _ = money.Add(&st.Net, &st.Net, &l.Amount)
	}
	_, _ = money.Quantize(&st.Net, &st.Net, -minorUnits)
	return st
}

// StatementCSV renders a statement: a header row, one row per line, then a total row. These
// are the exact bytes statement signatures cover.
func StatementCSV(st Statement) []byte {
	rows := [][]string{{"partner", "period", "previous_cutoff", "cutoff", "model", "kind", "counterparty", "price_version", "late", "transactions", "points", "rate", "currency", "amount"}}
	head := []string{st.PartnerID, strconv.FormatInt(st.Period, 10), st.PreviousCutoff.UTC().Format(time.RFC3339), st.Cutoff.UTC().Format(time.RFC3339), string(st.Model)}
	for _, l := range st.Lines {
		rows = append(rows, append(append([]string{}, head...), l.Kind, l.Counterparty, strconv.FormatInt(l.Version, 10),
			strconv.FormatBool(l.Late), strconv.FormatInt(l.Txns, 10), strconv.FormatInt(l.Points, 10), plain(l.Rate), st.Currency, plain(l.Amount)))
	}
	rows = append(rows, append(append([]string{}, head...), "net", "", "", "", "", "", "", st.Currency, plain(st.Net)))
	return renderCSV(rows)
}

// statementJSON is the JSON shape of a statement; field order is fixed by the struct.
type statementJSON struct {
	Partner        string     `json:"partner"`
	Period         int64      `json:"period"`
	PreviousCutoff string     `json:"previous_cutoff"`
	Cutoff         string     `json:"cutoff"`
	Model          Model      `json:"model"`
	Currency       string     `json:"currency"`
	Lines          []lineJSON `json:"lines"`
	Net            string     `json:"net"`
}

type lineJSON struct {
	Kind         string `json:"kind"`
	Counterparty string `json:"counterparty"`
	PriceVersion int64  `json:"price_version"`
	Late         bool   `json:"late"`
	Transactions int64  `json:"transactions"`
	Points       int64  `json:"points"`
	Rate         string `json:"rate"`
	Amount       string `json:"amount"`
}

// StatementJSON renders a statement as indented JSON with amounts as decimal strings.
func StatementJSON(st Statement) []byte {
	out := statementJSON{Partner: st.PartnerID, Period: st.Period, PreviousCutoff: st.PreviousCutoff.UTC().Format(time.RFC3339),
		Cutoff: st.Cutoff.UTC().Format(time.RFC3339), Model: st.Model, Currency: st.Currency, Net: plain(st.Net), Lines: []lineJSON{}}
	for _, l := range st.Lines {
		out.Lines = append(out.Lines, lineJSON{Kind: l.Kind, Counterparty: l.Counterparty, PriceVersion: l.Version, Late: l.Late,
			Transactions: l.Txns, Points: l.Points, Rate: plain(l.Rate), Amount: plain(l.Amount)})
	}
	return mustJSON(out)
}

// PositionsCSV renders net positions, then payment instructions, then the totals.
func PositionsCSV(rec RunRecord) []byte {
	r := rec.Result
	rows := [][]string{{"section", "partner", "gross_payable", "gross_receivable", "net", "from", "to", "amount", "currency"}}
	for _, p := range r.Positions {
		rows = append(rows, []string{"position", p.PartnerID, plain(p.GrossPayable), plain(p.GrossReceivable), plain(p.Net), "", "", "", rec.Currency})
	}
	for _, p := range r.Payments {
		rows = append(rows, []string{"payment", "", "", "", "", p.From, p.To, plain(p.Amount), rec.Currency})
	}
	saving := nettingSaving(r)
	rows = append(rows,
		[]string{"operator_revenue", "", "", "", "", "", "", plain(r.OperatorRevenue), rec.Currency},
		[]string{"gross_total", "", "", "", "", "", "", plain(r.GrossTotal), rec.Currency},
		[]string{"netted_total", "", "", "", "", "", "", plain(r.NettedTotal), rec.Currency},
		[]string{"netting_saving", "", "", "", "", "", "", plain(saving), rec.Currency})
	return renderCSV(rows)
}

// PositionsJSON renders the same as JSON.
func PositionsJSON(rec RunRecord) []byte {
	type pos struct {
		Partner         string `json:"partner"`
		GrossPayable    string `json:"gross_payable"`
		GrossReceivable string `json:"gross_receivable"`
		Net             string `json:"net"`
	}
	type pay struct {
		From   string `json:"from"`
		To     string `json:"to"`
		Amount string `json:"amount"`
	}
	out := struct {
		Period          int64  `json:"period"`
		Currency        string `json:"currency"`
		Positions       []pos  `json:"positions"`
		Payments        []pay  `json:"payments"`
		OperatorRevenue string `json:"operator_revenue"`
		GrossTotal      string `json:"gross_total"`
		NettedTotal     string `json:"netted_total"`
		NettingSaving   string `json:"netting_saving"`
	}{Period: rec.Period, Currency: rec.Currency, Positions: []pos{}, Payments: []pay{},
		OperatorRevenue: plain(rec.Result.OperatorRevenue), GrossTotal: plain(rec.Result.GrossTotal),
		NettedTotal: plain(rec.Result.NettedTotal), NettingSaving: plain(nettingSaving(rec.Result))}
	for _, p := range rec.Result.Positions {
		out.Positions = append(out.Positions, pos{p.PartnerID, plain(p.GrossPayable), plain(p.GrossReceivable), plain(p.Net)})
	}
	for _, p := range rec.Result.Payments {
		out.Payments = append(out.Payments, pay{p.From, p.To, plain(p.Amount)})
	}
	return mustJSON(out)
}

// MatrixCSV renders M[issuer][redeemer] one cell per row.
func MatrixCSV(rec RunRecord) []byte {
	rows := [][]string{{"period", "issuer", "redeemer", "points"}}
	for _, c := range rec.Result.Matrix {
		rows = append(rows, []string{strconv.FormatInt(rec.Period, 10), c.Issuer, c.Redeemer, strconv.FormatInt(c.Points, 10)})
	}
	return renderCSV(rows)
}

// ReconCSV renders reconciliation items, exceptions first.
func ReconCSV(items []ReconItem) []byte {
	rows := [][]string{{"outcome", "reference", "kind", "member_id", "ledger_points", "partner_points"}}
	for _, it := range items {
		rows = append(rows, []string{it.Outcome, it.Reference, it.Kind, it.MemberID, strconv.FormatInt(it.LedgerPoints, 10), strconv.FormatInt(it.PartnerPoints, 10)})
	}
	return renderCSV(rows)
}

func nettingSaving(r Result) apd.Decimal {
	var d apd.Decimal
	_, _ = money.Sub(&d, &r.GrossTotal, &r.NettedTotal)
	return d
}

// plain renders a decimal as a plain number ("-10.00", "0.0085"), never in exponent form.
func plain(d apd.Decimal) string { return d.Text('f') }

func renderCSV(rows [][]string) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.WriteAll(rows) // writing to a bytes.Buffer cannot fail
	return buf.Bytes()
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("settlement: render json: %v", err)) // only strings and numbers
	}
	return append(b, '\n')
}
