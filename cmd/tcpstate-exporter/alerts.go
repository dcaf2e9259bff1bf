package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/alerts"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// alertsConfig holds the alerting flags.
type alertsConfig struct {
	amURLs         []string
	resend         time.Duration
	timeout        time.Duration
	max            int
	externalLabels []string
}

// addAlertFlags declares the alerting flags on app.
func addAlertFlags(app *kingpin.Application, c *alertsConfig) {
	app.Flag("alertmanager.url", "Alertmanager base URL to push alerts to through its v2 API (repeatable), e.g. http://alertmanager:9093.").StringsVar(&c.amURLs)
	app.Flag("alertmanager.resend-interval", "Interval at which firing (and, for 15 minutes, resolved) alerts are resent to Alertmanager; firing alerts are sent with endsAt 4 intervals ahead.").Default("1m").DurationVar(&c.resend)
	app.Flag("alertmanager.timeout", "Timeout of each push to an Alertmanager.").Default("10s").DurationVar(&c.timeout)
	app.Flag("alerts.max", "Most pending and firing alerts tracked (and tcpstate_alert series); findings beyond it are dropped and counted in tcpstate_alerts_dropped.").Default("500").IntVar(&c.max)
	app.Flag("alerts.external-label", "Label name=value added to alerts pushed to Alertmanager (repeatable); instance defaults to the host name, and instance= removes it.").PlaceHolder("NAME=VALUE").StringsVar(&c.externalLabels)
}

// validate checks the alerting flags.
func (c *alertsConfig) validate() error {
	switch {
	case c.resend < time.Second:
		return fmt.Errorf("--alertmanager.resend-interval=%v: must be at least 1s", c.resend)
	case c.timeout <= 0:
		return fmt.Errorf("--alertmanager.timeout=%v: must be positive", c.timeout)
	case c.max < 1:
		return fmt.Errorf("--alerts.max=%d: must be at least 1", c.max)
	}
	for _, u := range c.amURLs {
		if err := alerts.CheckAlertmanagerURL(u); err != nil {
			return fmt.Errorf("--alertmanager.url: %w", err)
		}
	}
	_, err := c.labels(func() (string, error) { return "host", nil })
	return err
}

// labels returns the external labels: instance=<host name> unless the
// flags set instance (an empty value removes it), then the flags' labels.
func (c *alertsConfig) labels(hostname func() (string, error)) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range c.externalLabels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !validLabelName(k) {
			return nil, fmt.Errorf("--alerts.external-label=%q: want NAME=VALUE with NAME a label name ([a-zA-Z_][a-zA-Z0-9_]*)", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--alerts.external-label=%q: label %s given twice", kv, k)
		}
		out[k] = v
	}
	if _, set := out["instance"]; !set {
		h, err := hostname()
		if err != nil {
			return nil, fmt.Errorf("host name for the instance label (set --alerts.external-label=instance=NAME): %w", err)
		}
		out["instance"] = h
	}
	for k, v := range out {
		if v == "" {
			delete(out, k)
		}
	}
	return out, nil
}

func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// findingsFunc returns the findings over a target's latest samples.
type findingsFunc func(collector.Target) []detect.Finding

// samplerFindings returns the findings of the detectors that run inside
// the target's Sampler after every sample. The agent and the snapshot are
// wired with it; tests pass their own findingsFunc.
func samplerFindings(t collector.Target) []detect.Finding { return t.Sampler.Findings() }

// alerting ties the alert engine, the Alertmanager notifier and the source
// of findings together.
type alerting struct {
	engine   *alerts.Engine
	notifier *alerts.Notifier // nil without --alertmanager.url
	interval time.Duration
	logger   *slog.Logger
	// source returns every target's findings for one evaluation.
	source func() []alerts.TargetFindings
}

// newAlerting builds the alerting side from validated flags. targets
// returns the sampled targets at each evaluation and findings their
// findings; labelNames are the names of their Labels
// (ExporterOptions.TargetLabels), empty in host mode; scrapeErrs counts the
// tcpstate_alert series a scrape could not build.
func newAlerting(cfg *config, logger *slog.Logger, targets func() []collector.Target, findings findingsFunc, labelNames []string, scrapeErrs *collector.ScrapeErrors) (*alerting, error) {
	al := &alerting{interval: cfg.interval, logger: logger}
	gen := generatorURL(cfg)
	if len(cfg.alerts.amURLs) > 0 {
		ext, err := cfg.alerts.labels(os.Hostname)
		if err != nil {
			return nil, err
		}
		al.notifier, err = alerts.NewNotifier(alerts.NotifierOptions{
			URLs:           cfg.alerts.amURLs,
			ExternalLabels: ext,
			Timeout:        cfg.alerts.timeout,
			Logger:         logger,
		})
		if err != nil {
			return nil, err
		}
	}
	opts := alerts.EngineOptions{
		MaxAlerts:    cfg.alerts.max,
		ResendDelay:  cfg.alerts.resend,
		EvalInterval: cfg.interval,
		GeneratorURL: gen,
		Logger:       logger,
		CollectErrors: func(errs []error) {
			scrapeErrs.Record(collector.PartAlerts, errs)
		},
	}
	if al.notifier != nil {
		opts.Sender = al.notifier
	}
	al.engine = alerts.NewEngine(opts)
	if findings == nil {
		findings = samplerFindings
	}
	al.source = func() []alerts.TargetFindings {
		return targetFindings(targets(), labelNames, findings)
	}
	return al, nil
}

// targetFindings evaluates every target with findings and labels the
// results with the target's labels.
func targetFindings(ts []collector.Target, labelNames []string, findings findingsFunc) []alerts.TargetFindings {
	out := make([]alerts.TargetFindings, 0, len(ts))
	for _, t := range ts {
		labels := make(map[string]string, len(labelNames))
		for i, n := range labelNames {
			if i < len(t.Labels) {
				labels[n] = t.Labels[i]
			}
		}
		out = append(out, alerts.TargetFindings{
			Target:   alerts.Target{Key: t.Key(), Labels: labels},
			Findings: findings(t),
		})
	}
	return out
}

// generatorURL is the generatorURL of pushed alerts: this host's /alerts
// on the first listen address's port.
func generatorURL(cfg *config) string {
	host, err := os.Hostname()
	if err != nil || cfg.web == nil || cfg.web.WebListenAddresses == nil || len(*cfg.web.WebListenAddresses) == 0 {
		return ""
	}
	_, port, err := net.SplitHostPort((*cfg.web.WebListenAddresses)[0])
	if err != nil || port == "" {
		return ""
	}
	return "http://" + net.JoinHostPort(host, port) + "/alerts"
}

// collectors returns the metrics of the alerting side.
func (al *alerting) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{al.engine.Collector()}
	if al.notifier != nil {
		cs = append(cs, al.notifier)
	}
	return cs
}

// run evaluates the findings every interval and pushes to Alertmanager
// until ctx ends; it returns once both have stopped.
func (al *alerting) run(ctx context.Context) {
	var wg sync.WaitGroup
	if al.notifier != nil {
		al.logger.Info("pushing alerts to Alertmanager", "urls", strings.Join(al.notifier.URLs(), ","))
		wg.Add(1)
		go func() {
			defer wg.Done()
			al.notifier.Run(ctx)
		}()
	}
	t := time.NewTicker(al.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case now := <-t.C:
			al.engine.Evaluate(now, al.source())
		}
	}
}
