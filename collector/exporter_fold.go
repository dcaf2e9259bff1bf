package collector

// Folding: which targets a scrape reports one by one and how the rest, and
// the listeners and destinations beyond their limits, are summed into
// "other" series (familySums).

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
)

// familySums holds one "other" entry per address family: the sum of the
// entries folded into it.
type familySums[T any] struct {
	sums    [2]T
	present [2]bool
}

// of returns the entry of family f, marking it present.
func (p *familySums[T]) of(f diag.Family) *T {
	i := familyIndex(f)
	p.present[i] = true
	return &p.sums[i]
}

// list returns the present entries, IPv4 first.
func (p *familySums[T]) list() []T {
	var out []T
	for i := range p.sums {
		if p.present[i] {
			out = append(out, p.sums[i])
		}
	}
	return out
}

// selectTargets splits the targets into those reported one by one and those
// folded (indexes into ts, in the order of ts), as the Exporter's
// documentation describes, and remembers the kept ones for the next scrape.
func (e *Exporter) selectTargets(ts []Target, views []View) (kept, folded []int) {
	type cand struct {
		i      int
		key    string
		pinned bool
		score  uint64
	}
	e.keptMu.Lock()
	prev := e.kept
	e.keptMu.Unlock()
	cs := make([]cand, len(ts))
	for i, t := range ts {
		c := cand{i: i, key: t.Key(), pinned: len(t.Labels) > 0 && t.Labels[0] == HostTarget}
		if views[i].Ready {
			c.score = views[i].Counts.Total()
		}
		if _, ok := prev[c.key]; ok {
			c.score += c.score/4 + 1
		}
		cs[i] = c
	}
	if len(cs) > e.opts.MaxTargets {
		slices.SortFunc(cs, func(x, y cand) int {
			if x.pinned != y.pinned {
				if x.pinned {
					return -1
				}
				return 1
			}
			if c := cmp.Compare(y.score, x.score); c != 0 {
				return c
			}
			if c := cmp.Compare(x.key, y.key); c != 0 {
				return c
			}
			return cmp.Compare(x.i, y.i)
		})
		for _, c := range cs[e.opts.MaxTargets:] {
			folded = append(folded, c.i)
		}
		cs = cs[:e.opts.MaxTargets]
		slices.SortFunc(cs, func(x, y cand) int { return cmp.Compare(x.i, y.i) })
		slices.Sort(folded)
	}
	next := make(map[string]struct{}, len(cs))
	for _, c := range cs {
		kept = append(kept, c.i)
		// Only a ranking on sockets counts: a target kept while nothing
		// was sampled yet earns no preference.
		if views[c.i].Ready {
			next[c.key] = struct{}{}
		}
	}
	e.keptMu.Lock()
	e.kept = next
	e.keptMu.Unlock()
	return kept, folded
}

// collectOther sends the folded target's series: the sums of the folded
// views, as the Exporter's documentation describes.
func (e *Exporter) collectOther(ch chan<- prometheus.Metric, pe partErrors, views []*View) {
	labels := make([]string, len(e.opts.TargetLabels))
	labels[0] = OtherTarget
	lv := func(l ...string) []string { return append(slices.Clone(labels), l...) }
	gauge := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.GaugeValue, val, lv(l...)); ok {
			ch <- m
		}
	}
	gauge(e.folded, float64(len(views)), "namespaces")
	if len(views) == 0 {
		return
	}

	var (
		anyLatest, anyReady bool
		counts, maxima      Counts
		untracked           uint64
		cw                  = detect.CloseWaitGroup{Port: "other", Command: "other"}
		cwGroups            int
		lsums               familySums[detect.Listener]
		dests               familySums[detect.Destination]
		nListeners, nDests  int
	)
	for _, v := range views {
		if smp := v.Latest; smp != nil {
			anyLatest = true
			untracked += smp.CloseWaitUntracked
			n := len(smp.CloseWait)
			if smp.CloseWaitFolded > 0 {
				n += smp.CloseWaitFolded - 1 // the sample's own "other" group
			}
			cwGroups += n
			for _, g := range smp.CloseWait {
				cw.Count += g.Count
				cw.Oldest = max(cw.Oldest, g.Oldest)
			}
		}
		if !v.Ready {
			continue
		}
		anyReady = true
		for f := range counts {
			for st := range counts[f] {
				counts[f][st] += v.Counts[f][st]
				maxima[f][st] += v.Max[f][st]
			}
		}
		for _, l := range v.Listeners {
			addListener(lsums.of(l.Family), l)
		}
		nListeners += len(v.Listeners)
		if smp := v.Full; smp != nil {
			for _, d := range smp.Destinations {
				addDestination(dests.of(d.Family), d)
			}
			for _, d := range smp.DestinationsOther {
				addDestination(dests.of(d.Family), d)
			}
			nDests += len(smp.Destinations) + smp.DestinationsFolded
		}
	}
	if anyLatest {
		if cwGroups > 0 {
			gauge(e.cwSockets, float64(cw.Count), cw.Port, cw.Command)
			gauge(e.cwOldest, cw.Oldest.Seconds(), cw.Port, cw.Command)
		}
		gauge(e.cwUntracked, float64(untracked))
		gauge(e.folded, float64(cwGroups), "closewait")
	}
	if !anyReady {
		return
	}
	for _, f := range Families {
		fn := f.String()
		for _, st := range States {
			gauge(e.sockets, float64(counts.Get(f, st)), fn, st.String())
			gauge(e.socketsMax, float64(maxima.Get(f, st)), fn, st.String())
		}
	}
	for _, l := range lsums.list() {
		fn := l.Family.String()
		gauge(e.lQueue, float64(l.QueueLen), fn, "other", "other")
		gauge(e.lLimit, float64(l.QueueLimit), fn, "other", "other")
		gauge(e.lSynRecv, float64(l.SynRecv), fn, "other", "other")
		gauge(e.lSockets, float64(l.Sockets), fn, "other", "other")
		gauge(e.health.synRetrans, float64(l.SynRecvRetransmitted), fn, "other", "other")
	}
	gauge(e.folded, float64(nListeners), "listeners")
	for _, d := range dests.list() {
		l := []string{d.Family.String(), "other", "other", "other"}
		gauge(e.destUsed, float64(d.Used), l...)
		gauge(e.destTW, float64(d.TimeWait), l...)
	}
	gauge(e.folded, float64(nDests), "destinations")
	e.health.otherSeries(gauge, views)
}

// foldDestinations keeps the limit most used destinations of a full sample
// and sums the rest, with what the sample itself folded, into one entry per
// family.
func foldDestinations(smp *Sample, limit int) (kept, other []detect.Destination, folded int) {
	if smp == nil {
		return nil, nil, 0
	}
	ds := smp.Destinations
	var sums familySums[detect.Destination]
	for _, d := range smp.DestinationsOther {
		addDestination(sums.of(d.Family), d)
	}
	folded = smp.DestinationsFolded
	if len(ds) > limit {
		for _, d := range ds[limit:] {
			addDestination(sums.of(d.Family), d)
		}
		folded += len(ds) - limit
		ds = ds[:limit]
	}
	return ds, sums.list(), folded
}

// foldListeners keeps the limit listeners that matter most and sums the
// rest into one "other" entry per family. Listeners rank by accept-queue
// length, then SYN_RECV count, then address and port; a listener in prev
// (kept at the previous sample) ranks with its queue plus a quarter plus
// one, so that listeners of about equal queues do not swap places from one
// sample to the next.
func foldListeners(ls []detect.Listener, limit int, prev map[detect.ListenerKey]struct{}) (kept, other []detect.Listener, folded int) {
	if len(ls) <= limit {
		return ls, nil, 0
	}
	score := func(l detect.Listener) uint64 {
		q := uint64(l.QueueLen)
		if _, ok := prev[l.ListenerKey]; ok {
			q += q/4 + 1
		}
		return q
	}
	sorted := slices.Clone(ls)
	slices.SortStableFunc(sorted, func(x, y detect.Listener) int {
		if c := cmp.Compare(score(y), score(x)); c != 0 {
			return c
		}
		if c := cmp.Compare(y.SynRecv, x.SynRecv); c != 0 {
			return c
		}
		return x.ListenerKey.Compare(y.ListenerKey)
	})
	kept = sorted[:limit]
	var sums familySums[detect.Listener]
	for _, l := range sorted[limit:] {
		addListener(sums.of(l.Family), l)
	}
	return kept, sums.list(), len(ls) - limit
}

// addListener adds l's queues and counts into sum.
func addListener(sum *detect.Listener, l detect.Listener) {
	sum.Family = l.Family
	sum.Sockets += l.Sockets
	sum.QueueLen += l.QueueLen
	sum.QueueLimit += l.QueueLimit
	sum.SynRecv += l.SynRecv
	sum.SynRecvRetransmitted += l.SynRecvRetransmitted
}

// addDestination adds d's ports into sum.
func addDestination(sum *detect.Destination, d detect.Destination) {
	sum.Family = d.Family
	sum.Used += d.Used
	sum.TimeWait += d.TimeWait
}
