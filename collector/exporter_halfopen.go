package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// kindHalfOpen is the kind label of the half-open sweep's dump metrics
// (tcpstate_dumps_total and the rest), beside "full" and "rare".
const kindHalfOpen = "halfopen"

// halfOpenDescs are the half-open sweep's own metric families.
type halfOpenDescs struct {
	suspects, oldestIdle, budgetShare, noInfo *prometheus.Desc
}

func newHalfOpenDescs(d func(name, help string, labels ...string) *prometheus.Desc) halfOpenDescs {
	return halfOpenDescs{
		suspects:    d("halfopen_suspects", "Half-open suspects in the latest half-open sweep: ESTABLISHED sockets with no timer armed (no keepalive, nothing in flight) that received nothing for longer than --halfopen.min-idle, by local port (\"ephemeral\" for outbound connections) and owning command.", "port", "command"),
		oldestIdle:  d("halfopen_oldest_idle_seconds", "Longest time a half-open suspect of the group received nothing (tcpi_last_data_recv and tcpi_last_ack_recv), in the latest half-open sweep.", "port", "command"),
		budgetShare: d("halfopen_sweep_budget_share", "Share of the CPU budget (--sample.cpu-budget) the half-open sweep takes at its planned interval, from its average cost; at most 0.25."),
		noInfo:      d("halfopen_sweep_no_info_sockets", "ESTABLISHED sockets with no timer armed that the latest half-open sweep skipped because their reply carried no usable tcp_info."),
	}
}

func (h *halfOpenDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{h.suspects, h.oldestIdle, h.budgetShare, h.noInfo} {
		ch <- d
	}
}

// constMetric builds a const metric; a failure becomes an invalid metric,
// which the registry reports as a scrape error, rather than a panic.
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

// collectHalfOpen sends the half-open sweep's series of one target: its
// dump statistics under kind "halfopen", its budget share and its groups.
func (e *Exporter) collectHalfOpen(ch chan<- prometheus.Metric, labels []string, v *View, now time.Time) {
	ho := &v.HalfOpen
	if !ho.Enabled {
		return
	}
	lv := func(l ...string) []string {
		return append(append(make([]string, 0, len(labels)+len(l)), labels...), l...)
	}
	gauge := func(d *prometheus.Desc, val float64, l ...string) {
		ch <- constMetric(d, prometheus.GaugeValue, val, lv(l...)...)
	}
	counter := func(d *prometheus.Desc, val float64, l ...string) {
		ch <- constMetric(d, prometheus.CounterValue, val, lv(l...)...)
	}
	ks := ho.Stats
	counter(e.dumps, float64(ks.Dumps), kindHalfOpen)
	counter(e.dumpErrors, float64(ks.Errors), kindHalfOpen)
	counter(e.dumpCPU, ks.CPU.Seconds(), kindHalfOpen)
	gauge(e.planned, ks.Planned.Seconds(), kindHalfOpen)
	gauge(e.ho.budgetShare, ho.BudgetShare)
	if !ks.LastTime.IsZero() {
		gauge(e.dumpDuration, ks.LastDuration.Seconds(), kindHalfOpen)
		gauge(e.dumpSockets, float64(ks.LastSockets), kindHalfOpen)
		gauge(e.sampleAge, now.Sub(ks.LastTime).Seconds(), kindHalfOpen)
		if ks.Interval > 0 {
			gauge(e.interval, ks.Interval.Seconds(), kindHalfOpen)
		}
	}
	smp := ho.Latest
	if smp == nil {
		return
	}
	gauge(e.ho.noInfo, float64(smp.NoInfo))
	for _, g := range smp.Groups {
		port, cmd := g.Port, SafeLabel(g.Command)
		gauge(e.ho.suspects, float64(g.Count), port, cmd)
		gauge(e.ho.oldestIdle, g.OldestIdle.Seconds(), port, cmd)
	}
	gauge(e.folded, float64(smp.Folded), kindHalfOpen)
}
