package collector

import (
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

// collectHalfOpen sends the half-open sweep's own series of one target
// through gauge: its budget share and its groups. Its dump statistics are
// those of Kind HalfOpen, sent with the other kinds'.
func (e *Exporter) collectHalfOpen(gauge func(d *prometheus.Desc, val float64, l ...string), v *View) {
	ho := &v.HalfOpen
	if !ho.Enabled {
		return
	}
	gauge(e.ho.budgetShare, ho.BudgetShare)
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
