package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// halfOpenFlags hold the half-open sweep's schedule and bounds; its
// detector thresholds go into the detect.Config.
type halfOpenFlags struct {
	interval  time.Duration
	maxGroups int
}

// addHalfOpenFlags registers the --halfopen.* flags; thresholds land in
// cfg, whose defaults must already be set.
func addHalfOpenFlags(app *kingpin.Application, f *halfOpenFlags, cfg *detect.Config) {
	d := detect.DefaultConfig()
	app.Flag("halfopen.interval", "Shortest interval between half-open sweeps (a dump of ESTABLISHED sockets with INET_DIAG_INFO, measured at 1.35x to 1.6x a full dump's CPU); the CPU budget spaces them further, to at most a quarter of it. 0 disables the sweep and TCPHalfOpenSuspect.").
		Default(collector.DefaultHalfOpenInterval.String()).DurationVar(&f.interval)
	app.Flag("halfopen.min-idle", "ESTABLISHED sockets with no timer armed (no keepalive, nothing in flight) that received nothing for longer than this are half-open suspects.").
		Default(d.HalfOpenMinIdle.String()).DurationVar(&cfg.HalfOpenMinIdle)
	app.Flag("halfopen.min-count", "Half-open suspects on one local port and command that fire TCPHalfOpenSuspect.").
		Default(strconv.FormatUint(d.HalfOpenMinCount, 10)).Uint64Var(&cfg.HalfOpenMinCount)
	app.Flag("halfopen.max-groups", "Half-open groups (local port and command) reported per namespace, most suspects first; the rest fold into port and command \"other\".").
		Default("100").IntVar(&f.maxGroups)
}

// validate checks the flags, naming the flag at fault.
func (f *halfOpenFlags) validate(cfg *detect.Config) error {
	switch {
	case f.interval < 0:
		return fmt.Errorf("--halfopen.interval=%v: must not be negative (0 disables the sweep)", f.interval)
	case cfg.HalfOpenMinIdle <= 0:
		return fmt.Errorf("--halfopen.min-idle=%v: must be positive", cfg.HalfOpenMinIdle)
	case cfg.HalfOpenMinCount < 1:
		return fmt.Errorf("--halfopen.min-count=%d: must be at least 1", cfg.HalfOpenMinCount)
	case f.maxGroups < 1:
		return fmt.Errorf("--halfopen.max-groups=%d: must be at least 1", f.maxGroups)
	}
	return nil
}

// apply sets the sweep's Sampler options: a zero interval disables it.
func (f *halfOpenFlags) apply(o *collector.SamplerOptions) {
	o.HalfOpenInterval = f.interval
	if f.interval == 0 {
		o.HalfOpenInterval = -1
	}
	o.MaxHalfOpenGroups = f.maxGroups
}
