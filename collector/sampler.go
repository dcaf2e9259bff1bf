package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// Options configure a Sampler.
type Options struct {
	// Interval is the cadence of rare dumps (and the shortest full-dump
	// interval). Default 1s.
	Interval time.Duration
	// CPUBudget is the fraction of one core the Sampler's dumps may use on
	// average; full dumps are spaced out to fit. Default 0.05.
	CPUBudget float64
	// Window is the trailing window for the per-state maxima. Default 1m.
	Window time.Duration
	// Method selects the sock_diag request format.
	Method diag.Method
	// Dial opens a sock_diag connection in the target namespace.
	// Default: diag.Dial(nil), the caller's namespace.
	Dial func() (*diag.Conn, error)
	// Logger receives dump failures; default slog.Default().
	Logger *slog.Logger
	// OnSample, when set, is called after every successful sample, on the
	// sampling goroutine.
	OnSample func(*Sample)
}

func (o *Options) setDefaults() {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.CPUBudget <= 0 {
		o.CPUBudget = 0.05
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.Dial == nil {
		o.Dial = func() (*diag.Conn, error) { return diag.Dial(nil) }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// KindStats are the sampler's own numbers for one kind of dump.
type KindStats struct {
	Dumps  uint64
	Errors uint64
	// CPU is the total CPU time spent in dumps of this kind.
	CPU time.Duration
	// Last describes the latest successful dump.
	LastDuration time.Duration
	LastSockets  int
	LastTime     time.Time
	// Interval is the time between the starts of the two latest dumps of
	// this kind; Planned the interval the schedule currently aims for.
	Interval time.Duration
	Planned  time.Duration
}

// View is a consistent read of a Sampler's latest state, as a scrape sees it.
type View struct {
	// Counts holds, per state, the freshest count: rare states from the
	// latest dump of either kind, ESTABLISHED and TIME_WAIT from the latest
	// full dump.
	Counts Counts
	// Max is the per-state maximum over the window.
	Max Counts
	// Listeners come from the latest dump of either kind.
	Listeners []Listener
	// Full and Rare are the latest samples of each kind (nil before one).
	Full, Rare *Sample
	Stats      [2]KindStats
	// Ready is true once a full sample exists.
	Ready bool
}

// Sampler samples one network namespace.
type Sampler struct {
	opts Options
	conn *diag.Conn
	agg  *aggregator
	sch  schedule

	mu      sync.RWMutex
	full    *Sample
	rare    *Sample
	stats   [2]KindStats
	history ring
}

// NewSampler returns a Sampler; call Run to start it, or Sample to drive it.
func NewSampler(opts Options) *Sampler {
	opts.setDefaults()
	s := &Sampler{opts: opts, agg: newAggregator()}
	s.sch = schedule{interval: opts.Interval, budget: opts.CPUBudget}
	s.history = newRing(int(opts.Window/opts.Interval) + 2)
	return s
}

// Sample runs one dump of the given kind and publishes it.
func (s *Sampler) Sample(kind Kind) (*Sample, error) {
	smp, err := s.dump(kind)
	s.mu.Lock()
	st := &s.stats[kind]
	st.Dumps++
	if err != nil {
		st.Errors++
		s.mu.Unlock()
		return nil, err
	}
	st.CPU += smp.Dump.CPU
	if !st.LastTime.IsZero() {
		st.Interval = smp.Time.Sub(st.LastTime)
	}
	st.LastTime = smp.Time
	st.LastDuration = smp.Dump.Wall
	st.LastSockets = smp.Dump.Sockets
	if kind == Full {
		s.full = smp
	} else {
		s.rare = smp
	}
	s.history.push(smp.Time, s.mergedLocked())
	s.mu.Unlock()
	s.sch.observe(kind, smp.Dump.CPU)
	if s.opts.OnSample != nil {
		s.opts.OnSample(smp)
	}
	return smp, nil
}

func (s *Sampler) dump(kind Kind) (*Sample, error) {
	if s.conn == nil {
		c, err := s.opts.Dial()
		if err != nil {
			return nil, fmt.Errorf("opening sock_diag: %w", err)
		}
		s.conn = c
	}
	smp := &Sample{Kind: kind, Time: time.Now()}
	s.agg.reset(smp)
	st, err := s.conn.Dump(diag.Request{States: kind.Mask(), Method: s.opts.Method}, s.agg.add)
	smp.Dump = st
	if err != nil {
		// The connection may hold the rest of the dump: start afresh.
		s.conn.Close()
		s.conn = nil
		return nil, fmt.Errorf("%s dump: %w", kind, err)
	}
	s.agg.finish()
	return smp, nil
}

// Close releases the sock_diag connection.
func (s *Sampler) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// mergedLocked combines the latest full and rare samples.
func (s *Sampler) mergedLocked() Counts {
	var c Counts
	if s.full != nil {
		c = s.full.Counts
	}
	if s.rare != nil && (s.full == nil || s.rare.Time.After(s.full.Time)) {
		for f := range c {
			for _, st := range States {
				if Rare.Mask().Has(st) {
					c[f][st] = s.rare.Counts[f][st]
				}
			}
			c[f][diag.NewSynRecv] = s.rare.Counts[f][diag.NewSynRecv]
		}
	}
	return c
}

// View returns the latest state for a scrape.
func (s *Sampler) View(now time.Time) View {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := View{Full: s.full, Rare: s.rare, Stats: s.stats, Ready: s.full != nil}
	v.Counts = s.mergedLocked()
	v.Max = s.history.max(now.Add(-s.opts.Window))
	latest := s.full
	if s.rare != nil && (latest == nil || s.rare.Time.After(latest.Time)) {
		latest = s.rare
	}
	if latest != nil {
		v.Listeners = latest.Listeners
	}
	v.Stats[Full].Planned = s.sch.fullInterval()
	v.Stats[Rare].Planned = s.sch.rareInterval()
	return v
}

// Run samples until ctx ends: a full dump at once, then rare dumps every
// interval and full dumps as often as the CPU budget allows. Failures are
// logged and counted; the next cycle dials afresh.
func (s *Sampler) Run(ctx context.Context) {
	defer s.Close()
	var lastFull time.Time
	var lastErr string
	for {
		start := time.Now()
		kind := Rare
		if lastFull.IsZero() || start.Sub(lastFull) >= s.sch.fullInterval() {
			kind = Full
		}
		_, err := s.Sample(kind)
		switch {
		case err == nil:
			if kind == Full {
				lastFull = start
			}
			if lastErr != "" {
				s.opts.Logger.Info("sampling recovered", "kind", kind)
				lastErr = ""
			}
		case errors.Is(err, context.Canceled):
		default:
			// Log a failure once, not every cycle while it persists.
			if msg := err.Error(); msg != lastErr {
				s.opts.Logger.Error("sampling failed", "kind", kind, "err", err)
				lastErr = msg
			}
		}
		wait := s.sch.rareInterval() - time.Since(start)
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// schedule spaces dumps to hold the CPU budget. It keeps a moving average of
// each kind's CPU cost; rare dumps run every interval unless they alone
// would exceed rareShare of the budget, and full dumps get what is left.
type schedule struct {
	interval time.Duration
	budget   float64

	mu      sync.Mutex
	fullCPU float64 // seconds, exponentially weighted
	rareCPU float64
}

const ewmaWeight = 0.3

// rareShare is the largest part of the budget rare dumps may take; full
// dumps (the only source of ESTABLISHED and TIME_WAIT, which the port
// exhaustion detector needs) always keep the rest.
const rareShare = 0.5

func (sc *schedule) observe(k Kind, cpu time.Duration) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	c := cpu.Seconds()
	p := &sc.fullCPU
	if k == Rare {
		p = &sc.rareCPU
	}
	if *p == 0 {
		*p = c
	} else {
		*p = (1-ewmaWeight)**p + ewmaWeight*c
	}
}

// rareInterval is the interval between cycles.
func (sc *schedule) rareInterval() time.Duration {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.rareIntervalLocked()
}

func (sc *schedule) rareIntervalLocked() time.Duration {
	need := time.Duration(sc.rareCPU / (rareShare * sc.budget) * float64(time.Second))
	return max(sc.interval, need)
}

// fullInterval is the time between full dumps that keeps rare and full
// dumps together within the budget.
func (sc *schedule) fullInterval() time.Duration {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ri := sc.rareIntervalLocked().Seconds()
	left := max(sc.budget-sc.rareCPU/ri, (1-rareShare)*sc.budget)
	// A full dump replaces the rare dump of its cycle, so it costs only
	// the difference.
	extra := sc.fullCPU - sc.rareCPU
	if extra < 0 {
		extra = 0
	}
	need := time.Duration(extra / left * float64(time.Second))
	return max(sc.interval, need)
}

// ring keeps the merged counts of recent samples for the window maxima.
type ring struct {
	times  []time.Time
	counts []Counts
	next   int
	n      int
}

func newRing(size int) ring {
	size = min(max(size, 2), 3600)
	return ring{times: make([]time.Time, size), counts: make([]Counts, size)}
}

func (r *ring) push(t time.Time, c Counts) {
	r.times[r.next] = t
	r.counts[r.next] = c
	r.next = (r.next + 1) % len(r.times)
	if r.n < len(r.times) {
		r.n++
	}
}

// max returns the per-state maximum over samples taken after since.
func (r *ring) max(since time.Time) Counts {
	var m Counts
	for i := 0; i < r.n; i++ {
		if r.times[i].Before(since) {
			continue
		}
		c := &r.counts[i]
		for f := range m {
			for st := range m[f] {
				m[f][st] = max(m[f][st], c[f][st])
			}
		}
	}
	return m
}
