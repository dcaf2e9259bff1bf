package collector

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// scheduleMetrics is a prometheus.Collector over a Scheduler's plan.
type scheduleMetrics struct {
	s      *Scheduler
	logger *slog.Logger

	asked, planned, exceeded, cpu *prometheus.Desc
	overhead                      *prometheus.Desc
	achieved, process             *prometheus.Desc
}

// Collector returns a prometheus.Collector of the plan in force, per kind
// of work: tcpstate_schedule_interval_asked_seconds,
// tcpstate_schedule_interval_planned_seconds, tcpstate_sample_budget_exceeded
// tcpstate_schedule_cpu_ratio, tcpstate_schedule_interval_achieved_seconds,
// tcpstate_schedule_overhead_ratio and tcpstate_schedule_process_cpu_ratio.
// Errors building a metric are logged to logger (nil: slog.Default()).
func (s *Scheduler) Collector(logger *slog.Logger) prometheus.Collector {
	if logger == nil {
		logger = slog.Default()
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"kind"}, nil)
	}
	return &scheduleMetrics{
		s:        s,
		logger:   logger,
		asked:    d("tcpstate_schedule_interval_asked_seconds", "Interval asked for between two jobs of a kind on one network namespace (--sample.interval; --halfopen.interval for kind halfopen)."),
		planned:  d("tcpstate_schedule_interval_planned_seconds", "Interval at which every sampled network namespace gets the data of a kind under the CPU budget (a kind switched off gets it from the kind covering it)."),
		exceeded: d("tcpstate_sample_budget_exceeded", "1 while the CPU budget cannot give every sampled network namespace a kind's data at the interval asked (planned more than 10% over asked, or achieved more than 15% over; cleared when planned is back at asked and achieved within 5%)."),
		cpu:      d("tcpstate_schedule_cpu_ratio", "Fraction of one core the plan lets the jobs of a kind use, from their measured costs."),
		achieved: d("tcpstate_schedule_interval_achieved_seconds", "Moving average, over about one round of the sampled network namespaces, of the time between two deliveries of a kind's data to a namespace (0 before any)."),
		process:  prometheus.NewDesc("tcpstate_schedule_process_cpu_ratio", "Fraction of one core the whole process used over the latest 10 s calibration period (sampling, scrapes, discovery, the runtime); the agent holds it within --sample.cpu-budget (0 before the first period).", nil, nil),
		overhead: prometheus.NewDesc("tcpstate_schedule_overhead_ratio", "The process's CPU per second of CPU its sampling jobs measured (at least 1). The agent plans the CPU beyond its jobs' as a rate of its own, taken from what the cheap path leaves; a Scheduler without the process account scales every job's cost by this ratio.", nil, nil),
	}
}

// Describe sends every Desc.
func (c *scheduleMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.asked, c.planned, c.exceeded, c.cpu, c.overhead, c.achieved, c.process} {
		ch <- d
	}
}

// Collect sends the plan's values.
func (c *scheduleMetrics) Collect(ch chan<- prometheus.Metric) {
	send := func(d *prometheus.Desc, v float64, kind string) {
		m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, kind)
		if err != nil {
			c.logger.Error("building a schedule metric", "err", err)
			return
		}
		ch <- m
	}
	for _, g := range []struct {
		d *prometheus.Desc
		v float64
	}{{c.overhead, c.s.Overhead()}, {c.process, c.s.ProcessRatio()}} {
		if m, err := prometheus.NewConstMetric(g.d, prometheus.GaugeValue, g.v); err != nil {
			c.logger.Error("building a schedule metric", "err", err)
		} else {
			ch <- m
		}
	}
	for _, p := range c.s.Plan() {
		k := p.Kind.String()
		send(c.asked, p.Asked.Seconds(), k)
		send(c.planned, c.s.Planned(p.Kind).Seconds(), k)
		ex := 0.0
		if p.Exceeded {
			ex = 1
		}
		send(c.exceeded, ex, k)
		send(c.cpu, p.Rate, k)
		send(c.achieved, c.s.Achieved(p.Kind).Seconds(), k)
	}
}
