package main

import (
	"fmt"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/events"
)

// addEventsFlags registers --collector.events and its limit.
func addEventsFlags(app *kingpin.Application, cfg *config) {
	app.Flag("collector.events", "eBPF connection events (resets with their reason, failed connects, opens and closes, retransmissions): auto (on when the process has CAP_BPF and CAP_PERFMON and the kernel has BTF, else off, saying why), on (fail at start when they cannot load), off (never load).").
		Default("auto").EnumVar(&cfg.events, "auto", "on", "off")
	app.Flag("collector.events.max-series", "Series per top-K family of event metrics (listeners, destinations, peers) per namespace; the rest fold into \"other\".").
		Default("20").IntVar(&cfg.eventsMax)
	app.Flag("collector.events.max-lifetime-series", "Lifetime histograms of closed connections per listener port and per destination, each, per namespace (14 series apiece); the rest fold into \"other\".").
		Default("5").IntVar(&cfg.eventsLifeMax)
}

// eventSource is the loaded event source and its reader.
type eventSource struct {
	src    *events.Source
	reader *collector.EventReader
}

// setupEvents loads the eBPF event programs as --collector.events says:
// nil with no error when they are off. In host mode the kernel counts only
// this process's network namespace; with --netns=all every namespace.
func setupEvents(cfg *config, logger *slog.Logger) (*eventSource, error) {
	if cfg.events == "off" {
		return nil, nil
	}
	var ecfg events.SourceOptions
	if cfg.netns == "host" {
		c, err := events.NetnsCookie()
		if err == nil {
			ecfg.Netns = c
		} else {
			return nil, eventsFailed(cfg, logger, err)
		}
	}
	src, err := events.Open(ecfg)
	if err != nil {
		return nil, eventsFailed(cfg, logger, err)
	}
	reason := "with reset reasons"
	if !src.HasResetReason() {
		reason = "without reset reasons (kernel before 6.10)"
	}
	logger.Info("eBPF connection events on", "mode", cfg.events, "netns", cfg.netns, "detail", reason)
	return &eventSource{src: src, reader: collector.NewEventReader(src, logger)}, nil
}

// eventsFailed logs why auto leaves events off, or returns the error for on.
func eventsFailed(cfg *config, logger *slog.Logger, err error) error {
	if cfg.events == "on" {
		return fmt.Errorf("--collector.events=on: %w", err)
	}
	logger.Info("eBPF connection events off", "why", err)
	return nil
}

func (e *eventSource) close() {
	if e != nil {
		e.src.Close()
	}
}
