package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogramBuckets: every value falls in the bucket whose bounds hold it, and buckets are
// contiguous and at most 1/64 wide relative to their values.
func TestHistogramBuckets(t *testing.T) {
	prevUpper := int64(-1)
	for i := 0; i < histBuckets-1; i++ {
		lower, upper := int64(prevUpper+1), int64(histUpper(i))
		if upper < lower {
			t.Fatalf("bucket %d: upper %d below lower %d", i, upper, lower)
		}
		if lower >= 128 && float64(upper-lower+1)/float64(lower) > 1.0/64+1e-9 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/64", i, lower, upper)
		}
		for _, v := range []int64{lower, upper} {
			if got := histBucket(uint64(v)); got != i {
				t.Fatalf("value %d: bucket %d, want %d", v, got, i)
			}
		}
		prevUpper = upper
	}
}

// TestHistogramQuantiles compares against exact sorted samples.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h, a, b histogram
	var exact []time.Duration
	for i := range 100_000 {
		d := time.Duration(rng.ExpFloat64() * float64(3*time.Millisecond))
		exact = append(exact, d)
		h.record(d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.95, 0.99, 0.999, 1} {
		want := exact[int(q*float64(len(exact)))-1]
		for name, got := range map[string]time.Duration{"one": h.quantile(q), "merged": a.quantile(q)} {
			if diff := float64(got-want) / float64(want); diff < -0.001 || diff > 1.0/64+0.001 {
				t.Errorf("%s: p%g = %v, exact %v (off by %.2f%%)", name, q*100, got, want, diff*100)
			}
		}
	}
	if h.max != exact[len(exact)-1] || h.n != 100_000 {
		t.Errorf("max %v n %d, want %v and 100000", h.max, h.n, exact[len(exact)-1])
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("empty histogram: want zero quantiles and mean")
	}
}
