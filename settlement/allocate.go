package settlement

import (
	"fmt"
	"math/bits"
	"sort"
)

// Allocate splits total into parts proportional to weights by the largest-remainder method:
// each part gets floor(total × w / Σw), then the units left over go one each to the parts with
// the largest remainders (ties to the earlier part). The parts always sum to total exactly, so
// sharing never creates or loses a point or a cent. total must not be negative, and the weights
// must be non-negative with a positive sum.
func Allocate(total int64, weights []int64) ([]int64, error) {
	if total < 0 {
		return nil, fmt.Errorf("allocate %d: total must not be negative", total)
	}
	var sum uint64
	for _, w := range weights {
		if w < 0 {
			return nil, fmt.Errorf("allocate: weight %d is negative", w)
		}
		var carry uint64
		sum, carry = bits.Add64(sum, uint64(w), 0)
		if carry != 0 {
			return nil, fmt.Errorf("allocate: weights overflow")
		}
	}
	if sum == 0 {
		return nil, fmt.Errorf("allocate: weights sum to zero")
	}
	parts := make([]int64, len(weights))
	rems := make([]uint64, len(weights))
	var given int64
	for i, w := range weights {
		hi, lo := bits.Mul64(uint64(total), uint64(w))
		q, r := bits.Div64(hi, lo, sum) // hi < sum since w <= sum: no overflow
		parts[i], rems[i] = int64(q), r
		given += int64(q)
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rems[order[a]] > rems[order[b]] })
	// Σ floor ≥ total − (n − 1), so at most n − 1 units are left: one pass suffices.
	for _, i := range order[:total-given] {
		parts[i]++
	}
	return parts, nil
}
