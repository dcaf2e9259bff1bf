package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/alerts"
)

// agent wires the sampler, the Prometheus registry and the HTTP handlers.
type agent struct {
	cfg      *config
	logger   *slog.Logger
	sampler  *collector.Sampler
	registry *prometheus.Registry
	alerting *alerting
}

func newAgent(cfg *config, logger *slog.Logger) (*agent, error) {
	s := collector.NewSampler(collector.Options{
		Interval:  cfg.interval,
		CPUBudget: cfg.budget,
		Window:    cfg.window,
		Method:    cfg.diagMethod(),
		Logger:    logger,
		Detect:    cfg.detect.cfg,
	})
	reg := prometheus.NewRegistry()
	targets := []collector.Target{{Sampler: s}}
	reg.MustRegister(
		collector.NewExporter(func() []collector.Target { return targets }, collector.ExporterOptions{MaxListeners: cfg.listenersMax, MaxDestinations: cfg.detect.destinationsMax}),
		versioncollector.NewCollector("tcpstate"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	al, err := newAlerting(cfg, logger, func() []collector.Target { return targets }, nil)
	if err != nil {
		return nil, err
	}
	reg.MustRegister(al.collectors()...)
	return &agent{cfg: cfg, logger: logger, sampler: s, registry: reg, alerting: al}, nil
}

func (a *agent) run(ctx context.Context) {
	go a.alerting.run(ctx)
	a.sampler.Run(ctx)
}

// ready reports whether a full sample exists and sampling is not stale.
func (a *agent) ready(now time.Time) (bool, string) {
	v := a.sampler.View(now)
	if !v.Ready {
		return false, "no full sample yet"
	}
	latest := v.Stats[collector.Full].LastTime
	if t := v.Stats[collector.Rare].LastTime; t.After(latest) {
		latest = t
	}
	limit := 3*v.Stats[collector.Full].Planned + 10*time.Second
	if age := now.Sub(latest); age > limit {
		return false, "latest sample is " + age.Round(time.Second).String() + " old"
	}
	return true, "ready"
}

func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(a.cfg.telemetryPath, promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(a.logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: a.cfg.maxRequests,
		Registry:            a.registry,
	}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("Healthy\n"))
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, r *http.Request) {
		ok, why := a.ready(time.Now())
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	mux.Handle("/alerts", alerts.Handler(a.alerting.engine))
	if a.cfg.telemetryPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "TCP State Exporter",
			Description: "Every TCP socket on this node, from sock_diag: states, listeners, and what is going wrong.",
			Version:     version.Info(),
			Links: []web.LandingLinks{
				{Address: a.cfg.telemetryPath, Text: "Metrics"},
				{Address: "/alerts", Text: "Alerts"},
				{Address: "/-/healthy", Text: "Health"},
				{Address: "/-/ready", Text: "Readiness"},
			},
		})
		if err != nil {
			a.logger.Error("landing page", "err", err)
		} else {
			mux.Handle("/", landing)
		}
	}
	return mux
}
