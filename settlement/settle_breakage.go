package settlement

// LineBreakageReturn is the hub statement line that returns to an issuer its breakage share
// of its own expired points, at the issue price the lots were awarded at. The operator keeps
// the rest of the breakage (it never paid it out).
const LineBreakageReturn = "breakage_return"

// breakage adds an expiry flow's breakage return (hub only): the flow is stamped with the
// expired lots' own price version, so the rate is the issue price those points were paid at.
func (b *builder) breakage(f FlowAggregate, t PriceTerms) {
	if t.BreakageShare.Sign() == 0 {
		return
	}
	share := t.BreakageShare
	b.add(lineKey{f.PartnerID, LineBreakageReturn, Operator, f.Version, f.Late}, f.Points, f.Txns,
		rateSpec{rate: t.IssuePrice, factor: &share, sign: 1})
}
