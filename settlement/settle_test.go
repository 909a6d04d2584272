package settlement

import (
	"testing"

	"github.com/cockroachdb/apd/v3"
)

func dec(t *testing.T, s string) apd.Decimal {
	t.Helper()
	d, _, err := apd.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

// workedExample is the README's example: acme-air issues 1000, bean-coffee 500, and 1200 are
// redeemed at city-fuel (1000 from acme-air's lot, 200 from bean-coffee's).
func workedExample(t *testing.T) PeriodData {
	terms := map[TermsKey]PriceTerms{}
	for _, p := range []struct{ id, issue, reimb string }{
		{"acme-air", "0.0100", "0.0080"}, {"bean-coffee", "0.0120", "0.0090"}, {"city-fuel", "0.0110", "0.0085"},
	} {
		terms[TermsKey{p.id, 1}] = PriceTerms{PartnerID: p.id, Version: 1, IssuePrice: dec(t, p.issue), ReimbursementRate: dec(t, p.reimb), Currency: "EUR"}
	}
	return PeriodData{
		Period: 1,
		Flows: []FlowAggregate{
			{PartnerID: "acme-air", Kind: KindAward, Version: 1, Points: 1000, Txns: 1},
			{PartnerID: "bean-coffee", Kind: KindAward, Version: 1, Points: 500, Txns: 1},
			{PartnerID: "city-fuel", Kind: KindRedeem, Version: 1, Points: 1200, Txns: 1},
		},
		Lineage: []LineageAggregate{
			{Issuer: "partner:acme-air", Redeemer: "city-fuel", Version: 1, Points: 1000, Txns: 1},
			{Issuer: "partner:bean-coffee", Redeemer: "city-fuel", Version: 1, Points: 200, Txns: 1},
		},
		LedgerIssued:   map[string]int64{"acme-air": 1000, "bean-coffee": 500},
		LedgerRedeemed: map[string]int64{"city-fuel": 1200},
		Terms:          terms,
	}
}

func netOf(r Result) map[string]string {
	out := map[string]string{}
	for _, p := range r.Positions {
		out[p.PartnerID] = p.Net.Text('f')
	}
	return out
}

func TestComputeWorkedExample(t *testing.T) {
	tests := []struct {
		model    Model
		want     map[string]string
		operator string
	}{
		{ModelHub, map[string]string{"acme-air": "-10.00", "bean-coffee": "-6.00", "city-fuel": "10.20"}, "5.80"},
		{ModelBilateral, map[string]string{"acme-air": "-8.50", "bean-coffee": "-1.70", "city-fuel": "10.20"}, "0.00"},
	}
	for _, tt := range tests {
		t.Run(string(tt.model), func(t *testing.T) {
			r, err := Compute(tt.model, workedExample(t))
			if err != nil {
				t.Fatal(err)
			}
			got := netOf(r)
			for p, want := range tt.want {
				if got[p] != want {
					t.Errorf("%s net = %s, want %s", p, got[p], want)
				}
			}
			if got := r.OperatorRevenue.Text('f'); got != tt.operator {
				t.Errorf("operator revenue = %s, want %s", got, tt.operator)
			}
			for _, c := range r.Checks {
				if !c.Passed {
					t.Errorf("check %q failed: %s", c.Name, c.Detail)
				}
			}
			if len(r.Payments) != 3 {
				t.Errorf("payments = %d, want one per partner (3)", len(r.Payments))
			}
		})
	}
}

func TestComputeMissingTermsFailsCheck(t *testing.T) {
	d := workedExample(t)
	delete(d.Terms, TermsKey{"city-fuel", 1})
	r, err := Compute(ModelHub, d)
	if err != nil {
		t.Fatal(err)
	}
	if r.Passed() {
		t.Fatalf("run with missing terms passed its checks, want a failed check")
	}
}

func TestComputeLedgerMismatchFailsCheck(t *testing.T) {
	d := workedExample(t)
	d.LedgerRedeemed["city-fuel"] = 1199
	r, err := Compute(ModelHub, d)
	if err != nil {
		t.Fatal(err)
	}
	if r.Passed() {
		t.Fatalf("statement disagreeing with ledger passed, want a failed check")
	}
}

func TestRoundingHalfEvenOncePerLine(t *testing.T) {
	rate := dec(t, "0.0125")
	for _, tt := range []struct {
		points int64
		want   string
	}{{1, "0.01"}, {2, "0.02"}, {4, "0.05"}, {12, "0.15"}, {36, "0.45"}, {100, "1.25"}} {
		// 1 × 0.0125 = 0.0125 -> 0.01; 36 × 0.0125 = 0.45 exactly; 12 × 0.0125 = 0.15.
		got, err := priced(tt.points, &rate, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Text('f') != tt.want {
			t.Errorf("priced(%d × 0.0125) = %s, want %s", tt.points, got.Text('f'), tt.want)
		}
	}
	half := dec(t, "0.005")
	for _, tt := range []struct {
		points int64
		want   string
	}{{1, "0.00"}, {3, "0.02"}, {5, "0.02"}, {7, "0.04"}} {
		got, _ := priced(tt.points, &half, nil)
		if got.Text('f') != tt.want {
			t.Errorf("priced(%d × 0.005) = %s, want %s (half-even)", tt.points, got.Text('f'), tt.want)
		}
	}
}

// The payments check tests the instructions finance executes, not only the positions: a
// payment with the wrong amount, a missing one, a doubled one or a wrong direction fails it.
func TestPaymentsCheckCatchesBadInstructions(t *testing.T) {
	r, err := Compute(ModelHub, workedExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if c := paymentsCheck(r); !c.Passed {
		t.Fatalf("payments of the worked example: %s", c.Detail)
	}
	tamper := map[string]func(r *Result){
		"amount":    func(r *Result) { r.Payments[0].Amount.SetFinite(1, -2) },
		"missing":   func(r *Result) { r.Payments = r.Payments[1:] },
		"doubled":   func(r *Result) { r.Payments = append(r.Payments, r.Payments[0]) },
		"direction": func(r *Result) { r.Payments[0].From, r.Payments[0].To = r.Payments[0].To, r.Payments[0].From },
		"bypass":    func(r *Result) { r.Payments[0].To = "city-fuel" },
	}
	for name, f := range tamper {
		bad, err := Compute(ModelHub, workedExample(t))
		if err != nil {
			t.Fatal(err)
		}
		f(&bad)
		if c := paymentsCheck(bad); c.Passed {
			t.Errorf("%s: payments check passed with %+v", name, bad.Payments)
		} else {
			t.Logf("%s: %s", name, c.Detail)
		}
	}
}
