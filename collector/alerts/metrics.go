package alerts

import (
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	alertMetric   = "tcpstate_alert"
	alertHelp     = "1 for each active alert (alertstate pending or firing), with the alert's labels, like Prometheus's ALERTS series."
	droppedMetric = "tcpstate_alerts_dropped"
	droppedHelp   = "Findings of the latest evaluations not tracked as alerts because --alerts.max pending and firing alerts were reached."
)

// engineCollector exposes an Engine's alerts. It is an unchecked collector
// (Describe sends nothing) because tcpstate_alert carries each alert's own
// label names, as Prometheus's ALERTS does.
type engineCollector struct {
	e       *Engine
	dropped *prometheus.Desc

	// The tcpstate_alert series change only when the engine does: they are
	// built once per engine generation and sent as they are until the next.
	mu     sync.Mutex
	built  bool
	gen    uint64
	series []prometheus.Metric
}

// Collector returns a prometheus.Collector exposing tcpstate_alert (one
// series per pending or firing alert: alertname, severity, alertstate, the
// finding's and the target's labels) and tcpstate_alerts_dropped. The number
// of tcpstate_alert series is bounded by EngineOptions.MaxAlerts.
func (e *Engine) Collector() prometheus.Collector {
	return &engineCollector{e: e, dropped: prometheus.NewDesc(droppedMetric, droppedHelp, nil, nil)}
}

// Describe sends nothing: the collector is unchecked.
func (c *engineCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends one tcpstate_alert series per active alert.
func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- constMetric(c.dropped, prometheus.GaugeValue, float64(c.e.Dropped()))
	for _, m := range c.alertSeries() {
		ch <- m
	}
}

// alertSeries returns the tcpstate_alert series of the engine's current
// generation, building them if it changed since the last call. Const
// metrics are immutable, so one slice serves concurrent scrapes.
func (c *engineCollector) alertSeries() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.e.mu.Lock()
	gen := c.e.gen
	c.e.mu.Unlock()
	if c.built && gen == c.gen {
		return c.series
	}
	active, gen := c.e.alerts()
	series := make([]prometheus.Metric, 0, len(active))
	for _, a := range active {
		labels := maps.Clone(a.Labels)
		labels["alertstate"] = a.State.String()
		names := slices.Sorted(maps.Keys(labels))
		values := make([]string, len(names))
		for i, n := range names {
			values[i] = labels[n]
		}
		d := prometheus.NewDesc(alertMetric, alertHelp, names, nil)
		m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, 1, values...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		series = append(series, m)
	}
	c.built, c.gen, c.series = true, gen, series
	return series
}

// constMetric returns the metric, or, if the values do not fit desc, an
// invalid metric that carries the error: the scrape reports it (promhttp
// answers with the error, or logs it and serves the rest, as configured)
// instead of the agent panicking.
func constMetric(desc *prometheus.Desc, vt prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, vt, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}
