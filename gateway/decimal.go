package gateway

import "github.com/cockroachdb/apd/v3"

// apdDecimal shortens the decimal type in conversions.
type apdDecimal = apd.Decimal

// decimalText renders a rate without the storage's trailing zeros ("0.01000000" -> "0.01").
func decimalText(d apd.Decimal) string {
	var out apd.Decimal
	out.Reduce(&d)
	return out.Text('f')
}
