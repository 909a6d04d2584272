package main

import (
	"math/bits"
	"time"
)

// histogram records latencies in fixed log-linear buckets, like an HDR histogram with two
// significant digits: values below 128 µs are exact, larger ones fall in one of 64 buckets
// per power of two, so a reported quantile is within 1/64 (1.6%) of the true value. Memory is
// fixed (about 20 KiB) whatever the number of samples. Not safe for concurrent use: each
// worker has its own and they are merged.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

const (
	histSubBits  = 7                                    // 2^7 = 128 exact values, 64 sub-buckets per power of two above
	histMaxExp   = 36                                   // values up to 2^(36+7) µs are bucketed; beyond, the last bucket
	histBuckets  = (histMaxExp+1)<<(histSubBits-1) + 64 // index of the largest value + 1
	histHalfSubs = 1 << (histSubBits - 1)
)

// histBucket returns the bucket of v microseconds.
func histBucket(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits // v>>e is in [64, 128)
	if e > histMaxExp {
		return histBuckets - 1
	}
	return e*histHalfSubs + int(v>>e)
}

// histUpper returns the largest value (µs) bucket i holds.
func histUpper(i int) uint64 {
	if i < 1<<histSubBits {
		return uint64(i)
	}
	e := i/histHalfSubs - 1
	m := uint64(i%histHalfSubs + histHalfSubs)
	return (m+1)<<e - 1
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histBucket(uint64(d/time.Microsecond))]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0 < q <= 1): the upper bound of the bucket that
// holds the ceil(q·n)-th smallest sample, never above the largest sample.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(histUpper(i))*time.Microsecond, h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}
