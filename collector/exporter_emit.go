package collector

// Emission: the series of one target, those that change at every scrape
// (collectTarget) and those built once per published sample and cached
// (cachedSeries, buildSampleSeries).

import (
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// cachedSeries are the series built from one pair of samples. Samples are
// immutable once published, and const metrics too, so the entry serves
// every scrape until the target publishes a new sample.
type cachedSeries struct {
	latest, full *Sample
	series       []prometheus.Metric
	// errs are the series the build left out, reported again at every
	// scrape that serves the entry.
	errs partErrors
	// keptListeners are the listeners reported one by one when some were
	// folded (nil otherwise), for the next fold's ranking.
	keptListeners map[detect.ListenerKey]struct{}
}

// sampleSeries returns the series of a target that depend only on its
// latest samples (kernel values, CLOSE_WAIT groups, listeners and
// destinations), built once per new sample rather than on every scrape.
func (e *Exporter) sampleSeries(t Target, v *View) ([]prometheus.Metric, partErrors) {
	key := t.Key()
	e.cacheMu.Lock()
	c := e.cache[key]
	e.cacheMu.Unlock()
	if c != nil && c.latest == v.Latest && c.full == v.Full {
		return c.series, c.errs
	}
	var prev map[detect.ListenerKey]struct{}
	if c != nil {
		prev = c.keptListeners
	}
	c = &cachedSeries{latest: v.Latest, full: v.Full, errs: partErrors{}}
	c.series, c.keptListeners = e.buildSampleSeries(c.errs, t.Labels, v, prev)
	e.cacheMu.Lock()
	e.cache[key] = c
	e.cacheMu.Unlock()
	return c.series, c.errs
}

// pruneCache drops the cached series of targets not reported one by one
// at this scrape (all of ts when kept is nil).
func (e *Exporter) pruneCache(ts []Target, kept []int) {
	live := make(map[string]struct{}, len(ts))
	if kept == nil {
		for _, t := range ts {
			live[t.Key()] = struct{}{}
		}
	} else {
		for _, i := range kept {
			live[ts[i].Key()] = struct{}{}
		}
	}
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	for k := range e.cache {
		if _, ok := live[k]; !ok {
			delete(e.cache, k)
		}
	}
}

// collectTarget sends one target's series: those that change between
// samples (dump statistics, sample ages, counts and window maxima) built
// now, the rest from sampleSeries.
func (e *Exporter) collectTarget(ch chan<- prometheus.Metric, pe partErrors, t Target, v View, now time.Time) {
	lv := func(l ...string) []string { return safeLabels(t.Labels, l...) }
	gauge := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.GaugeValue, val, lv(l...)); ok {
			ch <- m
		}
	}
	counter := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.CounterValue, val, lv(l...)); ok {
			ch <- m
		}
	}

	files := make([]string, 0, len(v.ReadErrors))
	for f := range v.ReadErrors {
		files = append(files, f)
	}
	slices.Sort(files)
	for _, f := range files {
		counter(e.kernelErrors, float64(v.ReadErrors[f]), f)
	}
	series, errs := e.sampleSeries(t, &v)
	for _, m := range series {
		ch <- m
	}
	pe.merge(errs)
	for _, k := range Kinds {
		if k == HalfOpen && !v.HalfOpen.Enabled {
			continue
		}
		ks := v.Stats[k]
		kn := k.String()
		counter(e.dumps, float64(ks.Dumps), kn)
		counter(e.dumpErrors, float64(ks.Errors), kn)
		counter(e.dumpCPU, ks.CPU.Seconds(), kn)
		gauge(e.planned, ks.Planned.Seconds(), kn)
		if ks.LastTime.IsZero() {
			continue
		}
		gauge(e.dumpDuration, ks.LastDuration.Seconds(), kn)
		gauge(e.dumpSockets, float64(ks.LastSockets), kn)
		gauge(e.sampleAge, now.Sub(ks.LastTime).Seconds(), kn)
		if ks.Interval > 0 {
			gauge(e.interval, ks.Interval.Seconds(), kn)
		}
		if smp := v.Full; k == Full && smp != nil {
			gauge(e.unknown, float64(smp.Unknown), kn)
		} else if smp := v.Rare; k == Rare && smp != nil {
			gauge(e.unknown, float64(smp.Unknown), kn)
		} else if smp := v.Listen; k == Listen && smp != nil {
			gauge(e.unknown, float64(smp.Unknown), kn)
		}
	}
	if v.EhashKnown {
		private := 0.0
		if v.Ehash.Private {
			private = 1
		}
		gauge(e.ehashPrivate, private)
		gauge(e.ehashEntries, float64(v.Ehash.Entries))
	}
	e.collectHalfOpen(gauge, &v)
	if !v.Ready {
		// No full sample yet: report no socket counts rather than zeros.
		return
	}
	for _, f := range Families {
		fn := f.String()
		for _, st := range States {
			gauge(e.sockets, float64(v.Counts.Get(f, st)), fn, st.String())
			gauge(e.socketsMax, float64(v.Max.Get(f, st)), fn, st.String())
		}
	}
}

// buildSampleSeries builds the series of a view that depend only on its
// Latest and Full samples; listeners and destinations only once a full
// sample exists. prev and kept are the listeners reported one by one at the
// previous build and at this one, when some were folded.
// Series it cannot build are left out and recorded in pe.
func (e *Exporter) buildSampleSeries(pe partErrors, labels []string, v *View, prev map[detect.ListenerKey]struct{}) (out []prometheus.Metric, kept map[detect.ListenerKey]struct{}) {
	lv := func(l ...string) []string { return safeLabels(labels, l...) }
	gauge := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.GaugeValue, val, lv(l...)); ok {
			out = append(out, m)
		}
	}
	if smp := v.Latest; smp != nil {
		e.collectProcfs(pe, func(m prometheus.Metric) { out = append(out, m) }, lv, &smp.Procfs)
		for _, g := range smp.CloseWait {
			// The command is a process name: anything its owner chose.
			cmd := SafeLabel(g.Command)
			gauge(e.cwSockets, float64(g.Count), g.Port, cmd)
			gauge(e.cwOldest, g.Oldest.Seconds(), g.Port, cmd)
		}
		gauge(e.cwUntracked, float64(smp.CloseWaitUntracked))
		gauge(e.folded, float64(smp.CloseWaitFolded), "closewait")
		out = e.appendEventSeries(out, pe, lv, smp.Events, v.Listeners)
	}
	if !v.Ready {
		return out, prev
	}
	keptL, other, folded := foldListeners(v.Listeners, e.opts.MaxListeners, prev)
	if folded > 0 {
		kept = make(map[detect.ListenerKey]struct{}, len(keptL))
		for _, l := range keptL {
			kept[l.ListenerKey] = struct{}{}
		}
	}
	emit := func(l detect.Listener, addr, port string) {
		fn := l.Family.String()
		gauge(e.lQueue, float64(l.QueueLen), fn, addr, port)
		gauge(e.lLimit, float64(l.QueueLimit), fn, addr, port)
		gauge(e.lSynRecv, float64(l.SynRecv), fn, addr, port)
		gauge(e.lSockets, float64(l.Sockets), fn, addr, port)
		gauge(e.health.synRetrans, float64(l.SynRecvRetransmitted), fn, addr, port)
	}
	for _, l := range keptL {
		emit(l, l.Addr.String(), strconv.Itoa(int(l.Port)))
	}
	for _, l := range other {
		emit(l, "other", "other")
	}
	gauge(e.folded, float64(folded), "listeners")

	keptD, otherD, foldedD := foldDestinations(v.Full, e.opts.MaxDestinations)
	for _, d := range keptD {
		l := []string{d.Family.String(), d.Local.String(), d.Remote.String(), strconv.Itoa(int(d.RemotePort))}
		gauge(e.destUsed, float64(d.Used), l...)
		gauge(e.destTW, float64(d.TimeWait), l...)
	}
	for _, d := range otherD {
		l := []string{d.Family.String(), "other", "other", "other"}
		gauge(e.destUsed, float64(d.Used), l...)
		gauge(e.destTW, float64(d.TimeWait), l...)
	}
	gauge(e.folded, float64(foldedD), "destinations")
	e.health.series(gauge, v.Full)
	return out, kept
}

// collectProcfs emits the kernel counters, orphans and sysctls that could
// be read.
func (e *Exporter) collectProcfs(pe partErrors, emit func(prometheus.Metric), lv func(...string) []string, k *ProcfsValues) {
	send := func(d *prometheus.Desc, t prometheus.ValueType, val float64, l ...string) {
		if m, ok := e.metric(pe, d, t, val, lv(l...)); ok {
			emit(m)
		}
	}
	for _, n := range e.netstat {
		if v, ok := k.Counters.Get(n.field); ok {
			send(n.desc, prometheus.CounterValue, float64(v))
		}
	}
	if v, ok := k.Sockstat.Get(procnet.SockstatTCPOrphan); ok {
		send(e.orphans, prometheus.GaugeValue, float64(v))
	}
	for _, s := range procnet.IntSysctls() {
		if v, ok := k.Sysctls.Int(s); ok {
			send(e.sysctl, prometheus.GaugeValue, float64(v), s.Name())
		}
	}
	if n, ok := k.Sysctls.UsablePorts(); ok {
		send(e.portsUsable, prometheus.GaugeValue, float64(n))
	}
}

// safeLabels returns the target's label values through SafeLabel (pod and
// namespace names come from the Kubernetes API), followed by l.
func safeLabels(target []string, l ...string) []string {
	out := make([]string, 0, len(target)+len(l))
	for _, v := range target {
		out = append(out, SafeLabel(v))
	}
	return append(out, l...)
}
