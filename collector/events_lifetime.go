package collector

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/events"
)

// lifetimeHist is a lifetime histogram being summed: counts per bucket
// (not cumulative; the last is +Inf) and the sum.
type lifetimeHist struct {
	counts [len(events.LifetimeBuckets) + 1]uint64
	sum    time.Duration
}

func (h *lifetimeHist) add(v *events.Value) {
	for i, n := range v.Lifetime {
		h.counts[i] += n
	}
	h.sum += v.LifetimeSum
}

func (h *lifetimeHist) count() uint64 {
	var n uint64
	for _, c := range h.counts {
		n += c
	}
	return n
}

// constHistogram builds the histogram's series with the given label values.
func (h *lifetimeHist) constHistogram(d *prometheus.Desc, lv []string) (prometheus.Metric, error) {
	buckets := make(map[float64]uint64, len(lifetimeBounds))
	var cum uint64
	for i, b := range lifetimeBounds {
		cum += h.counts[i]
		buckets[b] = cum
	}
	return prometheus.NewConstHistogram(d, h.count(), h.sum.Seconds(), buckets, lv...)
}

// appendLifetimeSeries appends the lifetime histograms of closed
// connections per listener port (passive) and per destination (active):
// one histogram for each of the MaxLifetimeSeries listeners and
// destinations with the most closed connections since the programs were
// loaded, and one "other" histogram (always there) for the rest. A
// histogram is 14 series, so these have a limit of their own, smaller than
// MaxEventSeries: 2 x (5 + 1) x 14 = 168 series per namespace by default.
// It returns how many listeners and destinations were folded.
func (e *Exporter) appendLifetimeSeries(out []prometheus.Metric, pe partErrors, lv func(...string) []string, ns *events.Namespace, dstSplit func(string) []string) ([]prometheus.Metric, int) {
	listeners, dests := map[string]*lifetimeHist{}, map[string]*lifetimeHist{}
	for i := range ns.Details {
		r := &ns.Details[i]
		if r.Kind != events.KindClose {
			continue
		}
		var m map[string]*lifetimeHist
		var key string
		switch events.Direction(r.Code) {
		case events.DirectionPassive:
			m, key = listeners, strconv.Itoa(int(r.LocalPort))
		case events.DirectionActive:
			m, key = dests, netip.AddrPortFrom(r.Addr.Unmap(), r.RemotePort).String()
		default:
			continue // opened before the programs were loaded: no lifetime
		}
		h := m[key]
		if h == nil {
			h = &lifetimeHist{}
			m[key] = h
		}
		h.add(&r.Value)
	}
	folded := 0
	for _, f := range []struct {
		desc  *prometheus.Desc
		hists map[string]*lifetimeHist
		split func(string) []string
	}{
		{e.ev.listenerLifetime, listeners, func(k string) []string { return []string{k} }},
		{e.ev.destLifetime, dests, dstSplit},
	} {
		counts := make(map[string]uint64, len(f.hists))
		for k, h := range f.hists {
			counts[k] = h.count()
		}
		kept, _, n := topSeries(counts, e.opts.MaxLifetimeSeries)
		folded += n
		other := &lifetimeHist{}
		keep := make(map[string]bool, len(kept))
		for _, kc := range kept {
			keep[kc.Key] = true
		}
		for k, h := range f.hists {
			if !keep[k] {
				for i, c := range h.counts {
					other.counts[i] += c
				}
				other.sum += h.sum
			}
		}
		emit := func(h *lifetimeHist, key string) {
			m, err := h.constHistogram(f.desc, lv(f.split(key)...))
			if err != nil {
				pe.add(PartEvents, err)
				return
			}
			out = append(out, m)
		}
		for _, kc := range kept {
			emit(f.hists[kc.Key], kc.Key)
		}
		emit(other, "other")
	}
	return out, folded
}
