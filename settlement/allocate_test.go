package settlement

import (
	"math"
	"slices"
	"testing"
)

func TestAllocate(t *testing.T) {
	tests := []struct {
		name    string
		total   int64
		weights []int64
		want    []int64
	}{
		{"exact", 1000, []int64{6000, 4000}, []int64{600, 400}},
		{"one left goes to the larger remainder", 1001, []int64{6000, 4000}, []int64{601, 400}},
		{"cents of 9.01 at 60/40", 901, []int64{6000, 4000}, []int64{541, 360}},
		{"ties go to the earlier part", 1, []int64{5000, 5000}, []int64{1, 0}},
		{"thirds", 100, []int64{3334, 3333, 3333}, []int64{34, 33, 33}},
		{"thirds of 2", 2, []int64{3334, 3333, 3333}, []int64{1, 1, 0}},
		{"zero", 0, []int64{6000, 4000}, []int64{0, 0}},
		{"one sponsor", 12345, []int64{10000}, []int64{12345}},
		{"zero weight gets nothing", 7, []int64{0, 10000}, []int64{0, 7}},
		{"no overflow", math.MaxInt64, []int64{6000, 4000}, []int64{5534023222112865484, 3689348814741910323}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Allocate(tt.total, tt.weights)
			if err != nil {
				t.Fatalf("Allocate(%d, %v): %v", tt.total, tt.weights, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Allocate(%d, %v) = %v, want %v", tt.total, tt.weights, got, tt.want)
			}
		})
	}
}

// TestAllocateNeverCreatesOrLoses sums the parts of many totals and share splits.
func TestAllocateNeverCreatesOrLoses(t *testing.T) {
	splits := [][]int64{{6000, 4000}, {3333, 3333, 3334}, {1, 9999}, {2500, 2500, 2500, 2500}, {7, 13, 9980}}
	for _, w := range splits {
		for total := int64(0); total <= 2000; total++ {
			parts, err := Allocate(total, w)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			for i, p := range parts {
				sum += p
				exact := float64(total) * float64(w[i]) / 10000
				if float64(p) < exact-1 || float64(p) > exact+1 {
					t.Errorf("Allocate(%d, %v): part %d = %d, more than a unit from %f", total, w, i, p, exact)
				}
			}
			if sum != total {
				t.Fatalf("Allocate(%d, %v) = %v: sums to %d", total, w, parts, sum)
			}
		}
	}
}

func TestAllocateRejects(t *testing.T) {
	for _, tt := range []struct {
		total   int64
		weights []int64
	}{{-1, []int64{1}}, {1, []int64{0, 0}}, {1, nil}, {1, []int64{-1, 2}}} {
		if _, err := Allocate(tt.total, tt.weights); err == nil {
			t.Errorf("Allocate(%d, %v): got nil error, want one", tt.total, tt.weights)
		}
	}
}
