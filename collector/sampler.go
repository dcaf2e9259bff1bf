package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
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
	// InNetns runs fn on an OS thread inside the target namespace; the
	// sampler reads the namespace's procfs files (counters, sockstat,
	// sysctls) through it, before every dump. Default: call fn directly,
	// which reads the caller's namespace.
	InNetns func(fn func() error) error
	// ProcRoot is where procfs is mounted; default /proc.
	ProcRoot string
	// LookupOwners maps socket inodes to processes for CLOSE_WAIT groups.
	// Default: a procnet.InodeLookup over ProcRoot.
	LookupOwners OwnerLookup
	// LookupTimeout bounds one owner lookup (doubled, up to 8 times, after
	// lookups cut short). Default DefaultLookupTimeout.
	LookupTimeout time.Duration
	// MaxCloseWaitGroups bounds the CLOSE_WAIT groups per sample; the rest
	// fold into port and command "other". Default 100.
	MaxCloseWaitGroups int
	// MaxCloseWaitTracked bounds the CLOSE_WAIT sockets tracked by cookie;
	// further ones are counted but get no age or group. Default 100000.
	MaxCloseWaitTracked int
	// Detect holds the detectors' thresholds; its CloseWaitMinAge also sets
	// which CLOSE_WAIT sockets count as old and get their owner looked up.
	// The zero value means detect.DefaultConfig(). An invalid Config is
	// logged and replaced by the defaults: validate it first.
	Detect detect.Config
	// Logger receives dump failures; default slog.Default().
	Logger *slog.Logger
	// HalfOpenInterval is the shortest time between two half-open sweeps
	// (see Sweep); the CPU budget may space them further. Zero means
	// DefaultHalfOpenInterval, negative disables the sweep.
	HalfOpenInterval time.Duration
	// MaxHalfOpenGroups bounds the half-open groups per sweep; the rest
	// fold into port and command "other". Default 100.
	MaxHalfOpenGroups int
	// OnSample, when set, is called after every successful sample, on the
	// sampling goroutine, once the sample's findings are published.
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
	if o.InNetns == nil {
		o.InNetns = func(fn func() error) error { return fn() }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LookupOwners == nil {
		o.LookupOwners = resumingLookup(procnet.NewInodeLookup(o.ProcRoot), 0)
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = DefaultLookupTimeout
	}
	if o.MaxCloseWaitGroups <= 0 {
		o.MaxCloseWaitGroups = 100
	}
	if o.MaxCloseWaitTracked <= 0 {
		o.MaxCloseWaitTracked = 100000
	}
	if o.Detect == (detect.Config{}) {
		o.Detect = detect.DefaultConfig()
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
	// Full and Rare are the latest samples of each kind (nil before one);
	// Latest is the newer of the two. Destinations come from Full; kernel
	// values and CLOSE_WAIT groups from Latest.
	Full, Rare, Latest *Sample
	Stats              [2]KindStats
	// KernelErrors counts failed reads per kernel file (see KernelFiles).
	KernelErrors map[string]uint64
	// Ready is true once a full sample exists.
	Ready bool
	// HalfOpen is the half-open sweep's state.
	HalfOpen HalfOpenView
}

// Sampler samples one network namespace.
type Sampler struct {
	opts   Options
	conn   *diag.Conn
	agg    *aggregator
	sch    schedule
	reader *procnet.Reader
	det    *detect.Detectors
	sweep  *sweeper
	// run serialises Sample; hist and kernFailing belong to its holder.
	run         sync.Mutex
	hist        *detect.History
	kernFailing map[string]bool

	mu       sync.RWMutex
	full     *Sample
	rare     *Sample
	stats    [2]KindStats
	history  ring
	kernErrs map[string]uint64
	findings []detect.Finding
}

// NewSampler returns a Sampler; call Run to start it, or Sample to drive it.
func NewSampler(opts Options) *Sampler {
	opts.setDefaults()
	det, err := detect.New(opts.Detect)
	if err != nil {
		opts.Logger.Error("invalid detector thresholds, using the defaults", "err", err)
		opts.Detect = detect.DefaultConfig()
		det, _ = detect.New(opts.Detect)
	}
	s := &Sampler{
		opts:        opts,
		agg:         newAggregator(opts.MaxCloseWaitTracked),
		reader:      procnet.NewReader(opts.ProcRoot),
		det:         det,
		kernFailing: map[string]bool{},
		kernErrs:    map[string]uint64{},
	}
	for _, f := range KernelFiles() {
		s.kernErrs[f] = 0
	}
	s.sch = schedule{interval: opts.Interval, budget: opts.CPUBudget}
	s.sweep = newSweeper(&s.opts)
	s.history = newRing(int(opts.Window/opts.Interval) + 2)
	s.hist = detect.NewHistory(opts.Detect.History, min(int(opts.Detect.History/opts.Interval)+2, 3600))
	return s
}

// Sample reads the namespace's kernel counters and sysctls, runs one dump
// of the given kind, publishes the sample and evaluates the detectors.
func (s *Sampler) Sample(kind Kind) (*Sample, error) {
	s.run.Lock()
	defer s.run.Unlock()
	kern, kerrs := readKernel(s.reader, s.opts.InNetns)
	s.noteKernelErrors(kerrs)
	smp, err := s.dump(kind, &kern)
	s.mu.Lock()
	for _, e := range kerrs {
		s.kernErrs[e.file]++
	}
	st := &s.stats[kind]
	st.Dumps++
	if err != nil {
		st.Errors++
		s.mu.Unlock()
		return nil, err
	}
	st.record(smp.Time, &smp.Dump)
	if kind == Full {
		s.full = smp
	} else {
		s.rare = smp
	}
	merged := s.mergedLocked()
	s.history.push(smp.Time, merged)
	sum := s.summaryLocked(smp, &merged)
	s.mu.Unlock()
	s.sch.observe(kind, smp.Dump.CPU)

	s.hist.Push(sum)
	findings := s.det.Evaluate(s.hist)
	s.mu.Lock()
	s.findings = findings
	s.mu.Unlock()
	if s.opts.OnSample != nil {
		s.opts.OnSample(smp)
	}
	return smp, nil
}

// noteKernelErrors logs a file's failure once, until it reads again.
func (s *Sampler) noteKernelErrors(errs []kernelError) {
	failed := map[string]bool{}
	for _, e := range errs {
		failed[e.file] = true
		if !s.kernFailing[e.file] {
			s.kernFailing[e.file] = true
			s.opts.Logger.Warn("cannot read a kernel file; its metrics and the detectors that need it are skipped", "file", e.file, "err", e.err)
		}
	}
	for f := range s.kernFailing {
		if !failed[f] {
			delete(s.kernFailing, f)
			s.opts.Logger.Info("kernel file readable again", "file", f)
		}
	}
}

// maxSummaryListeners bounds the listeners a summary keeps.
const maxSummaryListeners = 256

// summaryLocked builds the detectors' view of a sample: its kernel values
// and CLOSE_WAIT groups, the listeners with anything in their queues, and
// destinations and TIME_WAIT from the latest full sample.
func (s *Sampler) summaryLocked(smp *Sample, merged *Counts) detect.Summary {
	sum := detect.Summary{
		Time:      smp.Time,
		Full:      smp.Kind == Full,
		Counters:  smp.Kernel.Counters,
		Sockstat:  smp.Kernel.Sockstat,
		Sysctls:   smp.Kernel.Sysctls,
		CloseWait: smp.CloseWait,
	}
	for _, l := range smp.Listeners {
		if l.SynRecv > 0 || l.QueueLen > 0 {
			sum.Listeners = append(sum.Listeners, l)
		}
	}
	if len(sum.Listeners) > maxSummaryListeners {
		fill := func(l *Listener) float64 {
			lim := float64(max(l.QueueLimit, 1))
			return max(float64(l.SynRecv), float64(l.QueueLen)) / lim
		}
		slices.SortStableFunc(sum.Listeners, func(x, y Listener) int { return cmp.Compare(fill(&y), fill(&x)) })
		sum.Listeners = sum.Listeners[:maxSummaryListeners]
		slices.SortFunc(sum.Listeners, func(x, y Listener) int { return x.ListenerKey.Compare(y.ListenerKey) })
	}
	if s.full != nil {
		sum.Destinations = s.full.Destinations
		sum.DestinationsTime = s.full.Time
		sum.TimeWait = merged.Get(diag.AFInet, diag.TimeWait) + merged.Get(diag.AFInet6, diag.TimeWait)
	}
	s.halfOpenSummaryLocked(&sum)
	return sum
}

func (s *Sampler) dump(kind Kind, kern *Kernel) (*Sample, error) {
	if s.conn == nil {
		c, err := s.opts.Dial()
		if err != nil {
			return nil, fmt.Errorf("opening sock_diag: %w", err)
		}
		s.conn = c
	}
	smp := &Sample{Kind: kind, Time: time.Now(), Kernel: *kern}
	pr := kern.Sysctls.PortRange
	prOK := kern.Sysctls.Present.Has(procnet.SysctlIPLocalPortRange)
	s.agg.reset(smp, kind == Full, pr, prOK)
	st, err := s.conn.Dump(diag.Request{States: kind.Mask(), Method: s.opts.Method}, s.agg.add)
	smp.Dump = st
	if err != nil {
		// The connection may hold the rest of the dump: start afresh.
		s.conn.Close()
		s.conn = nil
		return nil, fmt.Errorf("%s dump: %w", kind, err)
	}
	s.agg.finish()
	cw := s.agg.cw
	cw.sweep()
	minAge := s.opts.Detect.CloseWaitMinAge
	if _, err := cw.resolve(smp.Time, minAge, s.opts.LookupTimeout, s.opts.LookupOwners); err != nil {
		s.opts.Logger.Debug("CLOSE_WAIT owner lookup incomplete", "err", err)
	}
	smp.CloseWait, smp.CloseWaitFolded = cw.groups(minAge, s.agg.outbound, s.opts.MaxCloseWaitGroups)
	smp.CloseWaitUntracked = cw.untracked
	return smp, nil
}

// Close releases the sock_diag connections.
func (s *Sampler) Close() error {
	errSweep := s.closeSweep()
	if s.conn == nil {
		return errSweep
	}
	err := s.conn.Close()
	s.conn = nil
	return errors.Join(err, errSweep)
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

// Findings returns the detectors' findings on the latest sample (nil before
// the first). The slice is the caller's; the findings' maps are shared and
// must not be modified.
func (s *Sampler) Findings() []detect.Finding {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.findings)
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
	v.Latest = latest
	if latest != nil {
		v.Listeners = latest.Listeners
	}
	v.KernelErrors = maps.Clone(s.kernErrs)
	v.Stats[Full].Planned = s.sch.fullInterval()
	v.Stats[Rare].Planned = s.sch.rareInterval()
	v.HalfOpen = s.halfOpenViewLocked()
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
		s.sweepIfDue(time.Now())
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
	// reserved is the CPU (seconds per second) other work, the half-open
	// sweep, takes out of the budget.
	reserved float64
}

// reserve sets the CPU rate (seconds per second) taken by the half-open
// sweep, which full dumps leave to it, down to their floor.
func (sc *schedule) reserve(rate float64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.reserved = rate
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
	left := max(sc.budget-sc.rareCPU/ri-sc.reserved, (1-rareShare-sweepShare)*sc.budget)
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

// maxOwnerHints bounds the processes remembered as likely owners.
const maxOwnerHints = 16

// resumingLookup is the default OwnerLookup. A lookup cut short by its
// timeout is resumed by the next one after the last process it scanned, so
// that on a node with many descriptors successive bounded lookups cover
// every process instead of rescanning the same first ones; and the
// processes that owned CLOSE_WAIT sockets before are scanned first, since a
// leaking process tends to keep leaking. maxPIDs, when positive, also bounds
// each lookup (for tests).
func resumingLookup(il *procnet.InodeLookup, maxPIDs int) OwnerLookup {
	var after int
	var hints []int
	return func(inodes []uint64, timeout time.Duration) (map[uint64][]procnet.Process, bool, error) {
		owners, st, err := il.Lookup(inodes, procnet.LookupOptions{Timeout: timeout, MaxPIDs: maxPIDs, After: after, Hint: hints})
		after = 0
		if st.Incomplete {
			after = st.LastPID
		}
		for _, ps := range owners {
			for _, p := range ps {
				if !slices.Contains(hints, p.PID) {
					hints = append(hints, p.PID)
				}
			}
		}
		if len(hints) > maxOwnerHints {
			hints = slices.Clone(hints[len(hints)-maxOwnerHints:])
		}
		return owners, !st.Incomplete && err == nil, err
	}
}
