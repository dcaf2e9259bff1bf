package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// detectFlags holds the detectors' thresholds and the limits of the
// connection-health series.
type detectFlags struct {
	cfg detect.Config
	// peersMax and clientsMax bound the connection-health series.
	peersMax, clientsMax int
}

// addDetectFlags registers the detector flags; their defaults are
// detect.DefaultConfig's.
func addDetectFlags(app *kingpin.Application, f *detectFlags) {
	f.cfg = detect.DefaultConfig()
	d := detect.DefaultConfig()
	dur := func(v time.Duration) string { return v.String() }
	flt := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	u64 := func(v uint64) string { return strconv.FormatUint(v, 10) }
	app.Flag("closewait.min-age", "CLOSE_WAIT sockets older than this count toward TCPCloseWaitLeak; their owning process is looked up.").
		Default(dur(d.CloseWaitMinAge)).DurationVar(&f.cfg.CloseWaitMinAge)
	app.Flag("closewait.threshold", "CLOSE_WAIT sockets older than --closewait.min-age on one local port and command that fire TCPCloseWaitLeak.").
		Default(u64(d.CloseWaitThreshold)).Uint64Var(&f.cfg.CloseWaitThreshold)
	app.Flag("closewait.growth", "Rise of a CLOSE_WAIT group over --closewait.growth-window, growing in each quarter of it, that fires TCPCloseWaitLeak.").
		Default(u64(d.CloseWaitGrowth)).Uint64Var(&f.cfg.CloseWaitGrowth)
	app.Flag("closewait.growth-window", "Window over which a growing CLOSE_WAIT count fires TCPCloseWaitLeak (at most --detect.history).").
		Default(dur(d.CloseWaitGrowthWindow)).DurationVar(&f.cfg.CloseWaitGrowthWindow)
	app.Flag("detect.history", "How far back the detectors look for baselines and growth.").
		Default(dur(d.History)).DurationVar(&f.cfg.History)
	app.Flag("detect.synrecv.queue-ratio", "Share of a listener's SYN queue limit held in SYN_RECV that fires TCPSynRecvSurge.").
		Default(flt(d.SynQueueRatio)).Float64Var(&f.cfg.SynQueueRatio)
	app.Flag("detect.synrecv.baseline-factor", "SYN_RECV at this many times a listener's baseline (median over --detect.history) fires TCPSynRecvSurge.").
		Default(flt(d.SynBaselineFactor)).Float64Var(&f.cfg.SynBaselineFactor)
	app.Flag("detect.synrecv.min", "Least SYN_RECV count for the baseline condition of TCPSynRecvSurge.").
		Default(u64(d.SynBaselineMin)).Uint64Var(&f.cfg.SynBaselineMin)
	app.Flag("detect.synrecv.cookie-rate", "Syncookies sent per second that fire TCPSynRecvSurge.").
		Default(flt(d.CookieRate)).Float64Var(&f.cfg.CookieRate)
	app.Flag("detect.accept-queue.ratio", "Share of a listener's accept-queue limit that fires TCPAcceptQueueOverflow.").
		Default(flt(d.AcceptQueueRatio)).Float64Var(&f.cfg.AcceptQueueRatio)
	app.Flag("detect.ports.ratio", "Share of the usable local ports held towards one destination that fires TCPTimeWaitExhaustion (critical from 0.95 or this, whichever is higher).").
		Default(flt(d.PortsRatio)).Float64Var(&f.cfg.PortsRatio)
	app.Flag("detect.tw-buckets.ratio", "Share of net.ipv4.tcp_max_tw_buckets in TIME_WAIT that fires TCPTimeWaitExhaustion.").
		Default(flt(d.TWBucketsRatio)).Float64Var(&f.cfg.TWBucketsRatio)
	app.Flag("detect.forecast.horizon", "Local ports towards a destination, TIME_WAIT buckets or orphans that reach their limit within this time, at the rate they grew over --detect.forecast.window, fire TCPTimeWaitExhaustion or TCPOrphanPressure ahead of the share thresholds; 0 turns forecasts off.").
		Default(dur(d.ForecastHorizon)).DurationVar(&f.cfg.ForecastHorizon)
	app.Flag("detect.forecast.window", "Span over which the growth rate of a forecast is measured.").
		Default(dur(d.ForecastWindow)).DurationVar(&f.cfg.ForecastWindow)
	app.Flag("detect.resets.factor", "Reset or abort rate at this many times its baseline that fires TCPResetStorm.").
		Default(flt(d.ResetFactor)).Float64Var(&f.cfg.ResetFactor)
	app.Flag("detect.resets.min-rate", "Least resets or aborts per second for TCPResetStorm.").
		Default(flt(d.ResetMinRate)).Float64Var(&f.cfg.ResetMinRate)
	app.Flag("detect.connect-failures.min-rate", "Connects to one destination refused or timed out per second (over 1m) that fire TCPConnectFailures (needs --collector.events).").
		Default(flt(d.ConnectFailureMinRate)).Float64Var(&f.cfg.ConnectFailureMinRate)
	app.Flag("detect.orphans.ratio", "Share of net.ipv4.tcp_max_orphans held by orphaned sockets that fires TCPOrphanPressure (critical from 0.8 or this, whichever is higher).").
		Default(flt(d.OrphanRatio)).Float64Var(&f.cfg.OrphanRatio)
	addConnHealthFlags(app, f)
}

// validate checks the flags, naming the flag at fault, and raises the
// critical tiers to at least the warning ones.
func (f *detectFlags) validate() error {
	ratio := func(name string, v float64) error {
		if !(v > 0 && v <= 1) {
			return fmt.Errorf("--%s=%v: must be a ratio in (0, 1]", name, v)
		}
		return nil
	}
	c := &f.cfg
	checks := []error{
		ratio("detect.synrecv.queue-ratio", c.SynQueueRatio),
		ratio("detect.accept-queue.ratio", c.AcceptQueueRatio),
		ratio("detect.ports.ratio", c.PortsRatio),
		ratio("detect.tw-buckets.ratio", c.TWBucketsRatio),
		ratio("detect.orphans.ratio", c.OrphanRatio),
	}
	switch {
	case c.CloseWaitMinAge < 0:
		checks = append(checks, fmt.Errorf("--closewait.min-age=%v: must not be negative", c.CloseWaitMinAge))
	case c.CloseWaitThreshold < 1:
		checks = append(checks, fmt.Errorf("--closewait.threshold=%d: must be at least 1", c.CloseWaitThreshold))
	case c.CloseWaitGrowth < 1:
		checks = append(checks, fmt.Errorf("--closewait.growth=%d: must be at least 1", c.CloseWaitGrowth))
	case c.History <= 0:
		checks = append(checks, fmt.Errorf("--detect.history=%v: must be positive", c.History))
	case c.CloseWaitGrowthWindow <= 0 || c.CloseWaitGrowthWindow > c.History:
		checks = append(checks, fmt.Errorf("--closewait.growth-window=%v: must be positive and at most --detect.history (%v)", c.CloseWaitGrowthWindow, c.History))
	case c.ForecastHorizon < 0:
		checks = append(checks, fmt.Errorf("--detect.forecast.horizon=%v: must not be negative", c.ForecastHorizon))
	case c.ForecastWindow <= 0 || c.ForecastWindow > c.History:
		checks = append(checks, fmt.Errorf("--detect.forecast.window=%v: must be positive and at most --detect.history (%v)", c.ForecastWindow, c.History))
	case !(c.SynBaselineFactor >= 1):
		checks = append(checks, fmt.Errorf("--detect.synrecv.baseline-factor=%v: must be at least 1", c.SynBaselineFactor))
	case !(c.ResetFactor >= 1):
		checks = append(checks, fmt.Errorf("--detect.resets.factor=%v: must be at least 1", c.ResetFactor))
	case !(c.CookieRate >= 0):
		checks = append(checks, fmt.Errorf("--detect.synrecv.cookie-rate=%v: must not be negative", c.CookieRate))
	case !(c.ResetMinRate >= 0):
		checks = append(checks, fmt.Errorf("--detect.resets.min-rate=%v: must not be negative", c.ResetMinRate))
	case !(c.ConnectFailureMinRate >= 0):
		checks = append(checks, fmt.Errorf("--detect.connect-failures.min-rate=%v: must not be negative", c.ConnectFailureMinRate))
	}
	checks = append(checks, f.validateConnHealth())
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	c.PortsCriticalRatio = max(c.PortsCriticalRatio, c.PortsRatio)
	c.OrphanCriticalRatio = max(c.OrphanCriticalRatio, c.OrphanRatio)
	if err := c.Validate(); err != nil {
		return fmt.Errorf("detector flags: %w", err)
	}
	return nil
}
