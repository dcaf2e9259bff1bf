package netns

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// metrics is a prometheus.Collector over a Manager's Stats.
type metrics struct {
	m *Manager

	namespaces, added, dropped, openErrors *prometheus.Desc
	discoveries, discoveryErrors           *prometheus.Desc
	sweepDuration, sweepCPU, period, full  *prometheus.Desc
	unsampled                              *prometheus.Desc
}

// Collector returns a prometheus.Collector of the Manager's own numbers:
// tcpstate_netns_namespaces, tcpstate_netns_added_total,
// tcpstate_netns_dropped_total, tcpstate_netns_open_errors_total,
// tcpstate_netns_unsampled,
// tcpstate_netns_discoveries_total, tcpstate_netns_discovery_errors_total,
// tcpstate_netns_sweep_duration_seconds, tcpstate_netns_sweep_cpu_seconds,
// tcpstate_netns_sweep_period_seconds and
// tcpstate_netns_full_interval_seconds.
func (m *Manager) Collector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("tcpstate_netns_"+name, help, nil, nil)
	}
	return &metrics{
		m:               m,
		namespaces:      d("namespaces", "Network namespaces being sampled (--netns=all)."),
		added:           d("added_total", "Network namespaces that started being sampled."),
		dropped:         d("dropped_total", "Network namespaces that went away and stopped being sampled."),
		openErrors:      d("open_errors_total", "Network namespaces that exist but could not be opened or sampled (each counted once)."),
		discoveries:     d("discoveries_total", "Scans of /proc and the namespace run directories."),
		discoveryErrors: d("discovery_errors_total", "Scans of /proc and the namespace run directories that failed."),
		sweepDuration:   d("sweep_duration_seconds", "Wall time of the latest pass over all namespaces: until every namespace sampled at its start got a dump."),
		sweepCPU:        d("sweep_cpu_seconds", "CPU time the dumps of the latest pass over all namespaces used."),
		period:          d("sweep_period_seconds", "Planned time between two dumps of one namespace (rare ones, or full ones when every dump is full), as the scheduler holds it."),
		full:            d("full_interval_seconds", "Planned time between two full dumps of one namespace, as the scheduler holds it."),
		unsampled: prometheus.NewDesc("tcpstate_netns_unsampled",
			"Network namespaces found by the latest discovery that are not sampled, by reason: open_error (they could not be opened or given a sampler), fd_limit (the process is near its open-file limit less what its HTTP connections may take).",
			[]string{"reason"}, nil),
	}
}

// Describe sends every Desc.
func (c *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.namespaces, c.added, c.dropped, c.openErrors, c.discoveries,
		c.discoveryErrors, c.sweepDuration, c.sweepCPU, c.period, c.full, c.unsampled} {
		ch <- d
	}
}

// Collect sends the current values.
func (c *metrics) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	var errs []error
	defer func() { c.m.cfg.ScrapeErrors.Record(collector.PartNetns, errs) }()
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
		m, err := prometheus.NewConstMetric(d, t, v)
		if err != nil {
			errs = append(errs, err)
			return
		}
		ch <- m
	}
	g := func(d *prometheus.Desc, v float64) { send(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v uint64) { send(d, prometheus.CounterValue, float64(v)) }
	g(c.namespaces, float64(st.Namespaces))
	n(c.added, st.Added)
	n(c.dropped, st.Dropped)
	n(c.openErrors, st.OpenErrors)
	for _, u := range []struct {
		reason string
		n      int
	}{{"open_error", st.Failing}, {"fd_limit", st.FDLimited}} {
		m, err := prometheus.NewConstMetric(c.unsampled, prometheus.GaugeValue, float64(u.n), u.reason)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ch <- m
	}
	n(c.discoveries, st.Refreshes)
	n(c.discoveryErrors, st.RefreshErrors)
	if st.Sweeps > 0 {
		g(c.sweepDuration, st.SweepDuration.Seconds())
		g(c.sweepCPU, st.SweepCPU.Seconds())
	}
	g(c.period, st.Period.Seconds())
	g(c.full, st.FullEvery.Seconds())
}
