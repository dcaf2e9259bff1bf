package detect

import (
	"errors"
	"fmt"
	"time"
)

// Config holds the detectors' thresholds. DefaultConfig documents the
// defaults; the exporter exposes the main ones as flags (named in brackets).
type Config struct {
	// History is how far back the detectors look: the span of the baselines
	// and the longest growth window. Default 10m.
	History time.Duration
	// BaselineRecent is the most recent stretch of history left out of
	// baselines, so that a surge does not raise its own baseline. Default 10s.
	BaselineRecent time.Duration
	// BaselineMin is the least history a baseline needs; baseline
	// conditions stay quiet until then. Default 1m.
	BaselineMin time.Duration
	// StaleAfter drops data (destinations from an old full sample) older
	// than this. Default 5m.
	StaleAfter time.Duration

	// SynQueueRatio: a listener whose SYN_RECV count reaches this fraction
	// of its SYN queue limit is under a surge [--detect.synrecv.queue-ratio,
	// 0.9]. SynQueueMin is the least SYN_RECV count for that condition, so
	// that a listener with a tiny backlog and one handshake in flight does
	// not count (default 10).
	SynQueueRatio float64
	SynQueueMin   uint64
	// SynBaselineFactor: SYN_RECV at least this many times its baseline (the
	// median over the history) is a surge [--detect.synrecv.baseline-factor,
	// 10], when it is also at least SynBaselineMin [--detect.synrecv.min, 100].
	SynBaselineFactor float64
	SynBaselineMin    uint64
	// CookieRate: syncookies sent per second (SyncookiesSent or
	// TCPReqQFullDoCookies, whichever rose more) at or above which the
	// namespace is under a SYN flood [--detect.synrecv.cookie-rate, 10].
	// DropRate does the same for SYNs dropped with a full SYN queue
	// (TCPReqQFullDrop), default 1.
	CookieRate float64
	DropRate   float64
	// SpoofSources: this many distinct source addresses, making up at least
	// half the half-open connections, point to spoofed sources. Default 100.
	SpoofSources int
	// SynRecvFor is the For of TCPSynRecvSurge findings. Default 0.
	SynRecvFor time.Duration

	// AcceptQueueRatio: a listener whose accept queue reaches this fraction
	// of its limit is overflowing [--detect.accept-queue.ratio, 0.9].
	AcceptQueueRatio float64
	// OverflowRate: ListenOverflows per second above which completed
	// connections are being lost. Default 0 (any rise).
	OverflowRate float64
	// AcceptQueueFor is the For of TCPAcceptQueueOverflow. Default 0.
	AcceptQueueFor time.Duration

	// CloseWaitMinAge: CLOSE_WAIT sockets older than this count toward a
	// leak [--closewait.min-age, 60s]. The collector also looks up owning
	// processes only for sockets this old.
	CloseWaitMinAge time.Duration
	// CloseWaitThreshold: a port and command with at least this many old
	// CLOSE_WAIT sockets leaks [--closewait.threshold, 10].
	CloseWaitThreshold uint64
	// CloseWaitGrowth: a group whose count rose by at least this much over
	// CloseWaitGrowthWindow, rising in each quarter of it, leaks too
	// [--closewait.growth, 100; --closewait.growth-window, 10m].
	CloseWaitGrowth       uint64
	CloseWaitGrowthWindow time.Duration
	// CloseWaitFor is the For of TCPCloseWaitLeak. Default 0.
	CloseWaitFor time.Duration

	// PortsRatio: outbound sockets towards one destination holding this
	// share of the usable local ports fire a warning
	// [--detect.ports.ratio, 0.8]; PortsCriticalRatio a critical one (0.95).
	PortsRatio         float64
	PortsCriticalRatio float64
	// TWBucketsRatio: TIME_WAIT sockets at this share of tcp_max_tw_buckets
	// fire [--detect.tw-buckets.ratio, 0.9], as does TCPTimeWaitOverflow
	// rising.
	TWBucketsRatio float64
	// TimeWaitFor is the For of TCPTimeWaitExhaustion. Default 0.
	TimeWaitFor time.Duration

	// ForecastHorizon: local ports towards a destination, TIME_WAIT
	// buckets or orphans that, at the rate they grew over ForecastWindow,
	// reach their limit within this time fire TCPTimeWaitExhaustion or
	// TCPOrphanPressure before any share threshold does
	// [--detect.forecast.horizon, 60s, the life of a TIME_WAIT socket; 0
	// turns forecasts off]. ForecastWindow [--detect.forecast.window, 10s]
	// is the span the rate is measured over.
	ForecastHorizon time.Duration
	ForecastWindow  time.Duration

	// ResetFactor: OutRsts, EstabResets or TCPAbortOnTimeout per second at
	// least this many times their baseline rate [--detect.resets.factor, 5]
	// and at least ResetMinRate [--detect.resets.min-rate, 10] are a storm.
	// The current rate is taken over ResetRecent (default 10s), the baseline
	// over the rest of the history.
	ResetFactor  float64
	ResetMinRate float64
	ResetRecent  time.Duration
	// ResetFor is the For of TCPResetStorm. Default 30s.
	ResetFor time.Duration

	// OrphanRatio: orphaned sockets at this share of tcp_max_orphans fire a
	// warning [--detect.orphans.ratio, 0.5]; OrphanCriticalRatio a critical
	// one (0.8).
	OrphanRatio         float64
	OrphanCriticalRatio float64
	// OrphanFor is the For of TCPOrphanPressure. Default 30s.
	OrphanFor time.Duration

	// PeerRetransMin: a socket whose retransmission timer runs with at
	// least this many consecutive RTO retransmissions is stalled towards
	// its peer [--detect.peer.retransmits, 4: at least 3 s of silence at
	// the 200 ms minimum RTO, one more than tcp_retries1, where the kernel
	// starts to doubt the route]. At most 255 (idiag_retrans is a byte).
	PeerRetransMin uint64
	// PeerMinSockets: stalled sockets towards one remote address that fire
	// TCPPeerUnresponsive or TCPPeerZeroWindow [--detect.peer.min-sockets, 1].
	PeerMinSockets uint64
	// PeerFor is the For of TCPPeerUnresponsive. Default 0.
	PeerFor time.Duration
	// ZeroWindowMin: a peer whose sockets probed a zero window in every full
	// sample for at least this long fires TCPPeerZeroWindow
	// [--detect.zero-window.min-duration, 10s]. A live peer acknowledges
	// each probe, which resets the probe count, so the duration is the
	// signal, not the count.
	ZeroWindowMin time.Duration
	// ClientHogMin and ClientHogShare: one remote address holding at least
	// ClientHogMin live connections of a listener [--detect.client-hog.min-connections,
	// 100] and at least ClientHogShare of them [--detect.client-hog.share,
	// 0.5] fires TCPClientConnectionHog, unless it lies in ClientHogAllow,
	// a comma-separated list of CIDR prefixes (NAT gateways, load
	// balancers) [--detect.client-hog.allow, loopback: 127.0.0.0/8 and
	// ::1, where sidecar proxies and local agents hold every connection of
	// the port they front].
	ClientHogMin   uint64
	ClientHogShare float64
	ClientHogAllow string
	// ClientHogFor is the For of TCPClientConnectionHog. Default 0.
	ClientHogFor time.Duration
	// ConnectFailureMinRate: connects to one destination refused or timed
	// out at this rate per second over ConnectFailureRecent (default 1m)
	// fire TCPConnectFailures [--detect.connect-failures.min-rate, 0.2].
	// Needs the eBPF event source.
	ConnectFailureMinRate float64
	ConnectFailureRecent  time.Duration
	// ConnectFailureFor is the For of TCPConnectFailures. Default 1m.
	ConnectFailureFor time.Duration
	// HalfOpenMinIdle: an ESTABLISHED socket with no timer armed that
	// received nothing for longer than this is a half-open suspect
	// [--halfopen.min-idle, 15m]. The collector's sweep keeps only these.
	HalfOpenMinIdle time.Duration
	// HalfOpenMinCount: a local port and command with at least this many
	// suspects fires TCPHalfOpenSuspect [--halfopen.min-count, 10].
	HalfOpenMinCount uint64
	// HalfOpenFor is the For of TCPHalfOpenSuspect. Default 0.
	HalfOpenFor time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		History:        10 * time.Minute,
		BaselineRecent: 10 * time.Second,
		BaselineMin:    time.Minute,
		StaleAfter:     5 * time.Minute,

		SynQueueRatio:     0.9,
		SynQueueMin:       10,
		SynBaselineFactor: 10,
		SynBaselineMin:    100,
		CookieRate:        10,
		DropRate:          1,
		SpoofSources:      100,

		AcceptQueueRatio: 0.9,

		CloseWaitMinAge:       time.Minute,
		CloseWaitThreshold:    10,
		CloseWaitGrowth:       100,
		CloseWaitGrowthWindow: 10 * time.Minute,

		PortsRatio:         0.8,
		PortsCriticalRatio: 0.95,
		TWBucketsRatio:     0.9,
		ForecastHorizon:    time.Minute,
		ForecastWindow:     10 * time.Second,

		ResetFactor:  5,
		ResetMinRate: 10,
		ResetRecent:  10 * time.Second,
		ResetFor:     30 * time.Second,

		OrphanRatio:         0.5,
		OrphanCriticalRatio: 0.8,
		OrphanFor:           30 * time.Second,

		PeerRetransMin:        4,
		PeerMinSockets:        1,
		ZeroWindowMin:         10 * time.Second,
		ClientHogMin:          100,
		ClientHogShare:        0.5,
		ClientHogAllow:        "127.0.0.0/8,::1/128",
		ConnectFailureMinRate: 0.2,
		ConnectFailureRecent:  time.Minute,
		ConnectFailureFor:     time.Minute,
		HalfOpenMinIdle:       15 * time.Minute,
		HalfOpenMinCount:      10,
	}
}

// Validate reports the first threshold that makes no sense.
func (c *Config) Validate() error {
	ratio := func(name string, v float64) error {
		if !(v > 0 && v <= 1) {
			return fmt.Errorf("detect: %s=%v: must be a ratio in (0, 1]", name, v)
		}
		return nil
	}
	nonNeg := func(name string, v float64) error {
		if !(v >= 0) {
			return fmt.Errorf("detect: %s=%v: must not be negative", name, v)
		}
		return nil
	}
	factor := func(name string, v float64) error {
		if !(v >= 1) {
			return fmt.Errorf("detect: %s=%v: must be at least 1", name, v)
		}
		return nil
	}
	positive := func(name string, d time.Duration) error {
		if d <= 0 {
			return fmt.Errorf("detect: %s=%v: must be positive", name, d)
		}
		return nil
	}
	notNeg := func(name string, d time.Duration) error {
		if d < 0 {
			return fmt.Errorf("detect: %s=%v: must not be negative", name, d)
		}
		return nil
	}
	errs := []error{
		positive("history", c.History),
		notNeg("baseline recent", c.BaselineRecent),
		notNeg("baseline min", c.BaselineMin),
		positive("stale after", c.StaleAfter),
		ratio("synrecv queue ratio", c.SynQueueRatio),
		factor("synrecv baseline factor", c.SynBaselineFactor),
		nonNeg("synrecv cookie rate", c.CookieRate),
		nonNeg("synrecv drop rate", c.DropRate),
		ratio("accept queue ratio", c.AcceptQueueRatio),
		nonNeg("overflow rate", c.OverflowRate),
		notNeg("closewait min age", c.CloseWaitMinAge),
		positive("closewait growth window", c.CloseWaitGrowthWindow),
		ratio("ports ratio", c.PortsRatio),
		ratio("ports critical ratio", c.PortsCriticalRatio),
		ratio("tw buckets ratio", c.TWBucketsRatio),
		notNeg("forecast horizon", c.ForecastHorizon),
		positive("forecast window", c.ForecastWindow),
		factor("resets factor", c.ResetFactor),
		nonNeg("resets min rate", c.ResetMinRate),
		positive("resets recent window", c.ResetRecent),
		ratio("orphans ratio", c.OrphanRatio),
		ratio("orphans critical ratio", c.OrphanCriticalRatio),
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"synrecv for", c.SynRecvFor}, {"accept queue for", c.AcceptQueueFor}, {"closewait for", c.CloseWaitFor},
		{"time wait for", c.TimeWaitFor}, {"resets for", c.ResetFor}, {"orphans for", c.OrphanFor}, {"halfopen for", c.HalfOpenFor}} {
		errs = append(errs, notNeg(d.name, d.v))
	}
	if c.CloseWaitThreshold == 0 {
		errs = append(errs, errors.New("detect: closewait threshold must be at least 1"))
	}
	if c.HalfOpenMinIdle <= 0 {
		errs = append(errs, fmt.Errorf("detect: halfopen min idle=%v: must be positive", c.HalfOpenMinIdle))
	}
	if c.HalfOpenMinCount == 0 {
		errs = append(errs, errors.New("detect: halfopen min count must be at least 1"))
	}
	if c.CloseWaitGrowth == 0 {
		errs = append(errs, errors.New("detect: closewait growth must be at least 1"))
	}
	errs = append(errs, c.validateConnHealth())
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
