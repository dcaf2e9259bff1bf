package collector

import (
	"time"
)

// ring keeps the merged counts of recent samples for the window maxima.
type ring struct {
	times  []time.Time
	counts []Counts
	next   int
	n      int
}

func newRing(size int) ring {
	size = min(max(size, 2), 3600)
	return ring{times: make([]time.Time, size), counts: make([]Counts, size)}
}

func (r *ring) push(t time.Time, c Counts) {
	r.times[r.next] = t
	r.counts[r.next] = c
	r.next = (r.next + 1) % len(r.times)
	if r.n < len(r.times) {
		r.n++
	}
}

// max returns the per-state maximum over samples taken after since.
func (r *ring) max(since time.Time) Counts {
	var m Counts
	for i := 0; i < r.n; i++ {
		if r.times[i].Before(since) {
			continue
		}
		c := &r.counts[i]
		for f := range m {
			for st := range m[f] {
				m[f][st] = max(m[f][st], c[f][st])
			}
		}
	}
	return m
}
