package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/alerts"
	"github.com/tcpstate/tcpstate-exporter/collector/netns"
	"github.com/tcpstate/tcpstate-exporter/collector/podinfo"
)

// agent wires the sampling, the Prometheus registry and the HTTP handlers.
// In host mode one Sampler reads this process's network namespace; in
// --netns=all mode a netns.Manager samples every namespace on the node.
type agent struct {
	cfg      *config
	logger   *slog.Logger
	registry *prometheus.Registry
	alerting *alerting
	targets  func() []collector.Target
	// sample runs the sampling until ctx ends.
	sample func(ctx context.Context)
	// hostSampler is the host-mode Sampler, nil in --netns=all mode.
	hostSampler *collector.Sampler
	mgr         *netns.Manager
	// web counts what the HTTP server refuses or closes.
	web *webMetrics
	// scrapeErrs counts the series scrapes left out; ready reports the
	// parts whose latest collection did.
	scrapeErrs *collector.ScrapeErrors
	// sched runs the sampling jobs in either mode.
	sched *collector.Scheduler
	// events is the eBPF event source, nil when off.
	events *eventSource
	// nsFDBudget is the descriptors the sampled namespaces may hold in
	// all (see webServer.namespaceFDBudget); set once the web server
	// exists, before run; no limit until then.
	nsFDBudget int
}

func (a *agent) samplerOptions(logger *slog.Logger) collector.SamplerOptions {
	o := a.cfg.samplerOptions(logger)
	if a.events != nil {
		o.Events = a.events.reader
	}
	return o
}

func (cfg *config) samplerOptions(logger *slog.Logger) collector.SamplerOptions {
	o := collector.SamplerOptions{
		Interval:  cfg.interval,
		CPUBudget: cfg.budget,
		Window:    cfg.window,
		Method:    cfg.diagMethod(),
		Logger:    logger,
		Detect:    cfg.detect.cfg,
		ProcRoot:  cfg.procRoot,
	}
	cfg.halfOpen.apply(&o)
	return o
}

// newAgent sets the agent up from validated flags; findings returns a
// target's findings for the alerts (samplerFindings outside tests).
func newAgent(cfg *config, logger *slog.Logger, findings findingsFunc) (*agent, error) {
	a := &agent{cfg: cfg, logger: logger, registry: prometheus.NewRegistry(), web: newWebMetrics(), scrapeErrs: collector.NewScrapeErrors(logger), nsFDBudget: math.MaxInt}
	a.registry.MustRegister(a.web.collectors()...)
	ev, err := setupEvents(cfg, logger)
	if err != nil {
		return nil, err
	}
	a.events = ev
	if ev != nil {
		a.registry.MustRegister(ev.reader)
	}
	var labelNames []string
	switch cfg.netns {
	case "all":
		if err := a.setupAllNamespaces(); err != nil {
			return nil, err
		}
		labelNames = netns.TargetLabels
		a.registry.MustRegister(a.mgr.Collector())
		a.sched = a.mgr.Scheduler()
	default:
		s := collector.NewSampler(a.samplerOptions(logger))
		targets := []collector.Target{{Sampler: s}}
		a.hostSampler = s
		a.targets = func() []collector.Target { return targets }
		sch := collector.NewScheduler(collector.SchedulerOptions{Interval: cfg.interval, Budget: cfg.budget, Logger: logger, Kinds: s.Jobs()})
		s.SetPlan(sch.Planned)
		sch.Add(collector.HostTarget, s)
		a.sched = sch
		a.sample = func(ctx context.Context) {
			defer s.Close()
			sch.Run(ctx)
		}
	}
	// The agent's whole process, not only its sampling jobs, holds the
	// budget.
	a.sched.CountProcess()
	a.registry.MustRegister(a.sched.Collector(logger))
	a.registry.MustRegister(
		collector.NewExporter(a.targets, collector.ExporterOptions{
			TargetLabels:    labelNames,
			MaxListeners:    cfg.listenersMax,
			MaxDestinations: cfg.destsMax,
			MaxTargets:      cfg.netnsMax,
			Errors:          a.scrapeErrs,
			MaxPeers:        cfg.detect.peersMax,
			MaxClients:      cfg.detect.clientsMax,
			MaxEventSeries:  cfg.eventsMax,
			// The lifetime histograms' own limit (events_lifetime.go).
			MaxLifetimeSeries: cfg.eventsLifeMax,
		}),
		a.scrapeErrs,
		versioncollector.NewCollector("tcpstate"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	al, err := newAlerting(cfg, logger, a.targets, findings, labelNames, a.scrapeErrs)
	if err != nil {
		return nil, err
	}
	a.registry.MustRegister(al.collectors()...)
	a.alerting = al
	return a, nil
}

// setupAllNamespaces prepares --netns=all: a pod resolver (degraded to
// namespace inodes, with one warning, outside Kubernetes) and a Manager that
// samples every namespace within the one CPU budget.
func (a *agent) setupAllNamespaces() error {
	cfg := a.cfg
	pods, err := podinfo.New(podinfo.ResolverOptions{Kubeconfig: cfg.kubeconfig, ProcRoot: cfg.procRoot, Logger: a.logger})
	if err != nil {
		return fmt.Errorf("--kubeconfig=%s: %w", cfg.kubeconfig, err)
	}
	base := a.samplerOptions(a.logger)
	mgr, err := netns.NewManager(netns.ManagerOptions{
		ProcRoot:  cfg.procRoot,
		Refresh:   cfg.netnsRefresh,
		Interval:  cfg.interval,
		CPUBudget: cfg.budget,
		// The one scheduler plans every namespace's sweep within a
		// quarter of the budget.
		HalfOpenInterval: base.HalfOpenInterval,
		Logger:           a.logger,
		PodUID:           pods.PodUID,
		ScrapeErrors:     a.scrapeErrs,
		PodName:          pods.Lookup,
		// Namespaces found later must not take the descriptors the
		// HTTP connections were promised (connBudget).
		FDBudget: func() int { return a.nsFDBudget },
		NewSampler: func(h *netns.Handle) (*collector.Sampler, error) {
			o := base
			o.Dial, o.InNetns = h.Dial, h.Do
			o.Logger = a.logger.With("netns", h.Namespace().Label())
			return collector.NewSampler(o), nil
		},
	})
	if err != nil {
		return err
	}
	a.mgr = mgr
	a.targets = mgr.Targets
	a.sample = func(ctx context.Context) {
		pods.Start(ctx)
		defer pods.Shutdown()
		defer mgr.Close()
		mgr.Run(ctx)
	}
	return nil
}

func (a *agent) run(ctx context.Context) {
	go a.alerting.run(ctx)
	a.sample(ctx)
	a.events.close()
}

// ready reports whether sampling has produced a full sample and is not
// stale. In --netns=all mode that is judged on the agent's own namespace,
// which the Manager always samples.
func (a *agent) ready(now time.Time) (bool, string) {
	var s *collector.Sampler
	if a.hostSampler != nil {
		s = a.hostSampler
	} else {
		for _, t := range a.targets() {
			if len(t.Labels) > 0 && t.Labels[0] == collector.HostTarget {
				s = t.Sampler
			}
		}
		if s == nil {
			return false, "the agent's own namespace is not sampled yet"
		}
	}
	v := s.View(now)
	if !v.Ready {
		return false, "no full sample yet"
	}
	// Staleness is the dumps': the cheap path runs every --sample.interval
	// on a lane of its own and would hide a stuck dump lane.
	var latest time.Time
	for _, k := range []collector.Kind{collector.Full, collector.Rare} {
		if t := v.Stats[k].LastTime; t.After(latest) {
			latest = t
		}
	}
	limit := 3*v.Stats[collector.Full].Planned + 10*time.Second
	if a.mgr != nil {
		st := a.mgr.Stats()
		limit = 3*max(st.Period, st.FullEvery) + 30*time.Second
	}
	if age := now.Sub(latest); age > limit {
		return false, "latest sample is " + age.Round(time.Second).String() + " old"
	}
	if failing := a.scrapeErrs.Failing(); len(failing) > 0 {
		return false, "the latest scrape left series out (tcpstate_scrape_errors_total): " + strings.Join(failing, "; ")
	}
	return true, "ready"
}

func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(a.cfg.telemetryPath, withGzip(promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(a.logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: a.cfg.maxRequests,
		Registry:            a.registry,
		DisableCompression:  true, // withGzip compresses, at a cheaper level
	}), max(2, runtime.GOMAXPROCS(0))))
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
