package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
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
	// Events, when set, is the eBPF event source: every sample carries the
	// namespace's event counters (found by its cookie, read through
	// InNetns) and the detectors see them.
	Events *EventReader
}

func (o *SamplerOptions) setDefaults() {
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
	// Counts holds, per state, the freshest count: each state from the
	// latest dump of a kind that includes it.
	Counts Counts
	// Max is the per-state maximum over the window.
	Max Counts
	// Listeners come from the latest dump of any kind.
	Listeners []detect.Listener
	// Full, Rare and Listen are the latest samples of each kind (nil
	// before one); Latest is the newest of them. Destinations come from
	// Full; kernel values and CLOSE_WAIT groups from Latest.
	Full, Rare, Listen, Latest *Sample
	Stats                      [len(Kinds)]KindStats
	// ReadErrors counts failed reads per kernel file (see ReadErrorFiles).
	ReadErrors map[string]uint64
	// Ready is true once a full sample exists.
	Ready bool
	// Ehash describes the namespace's established hash; EhashKnown is
	// false until it was read, and on kernels before 6.1.
	Ehash      procnet.Ehash
	EhashKnown bool
	// HalfOpen is the half-open sweep's state.
	HalfOpen HalfOpenView
}

// lane is what one goroutine of sampling owns: the dumps (rare and full)
// and the half-open sweep, or the cheap path (Listen), which run
// concurrently.
type lane struct {
	// mu serialises the lane's samples.
	mu     sync.Mutex
	conn   *diag.Conn
	agg    *aggregator
	reader *procnet.Reader
	// lastErr is the latest failure RunJob logged.
	lastErr string
}

// Sampler samples one network namespace.
type Sampler struct {
	opts  SamplerOptions
	dumps lane // rare and full dumps, and the half-open sweep
	cheap lane // Listen samples
	det   *detect.Detectors
	sweep *sweeper

	// eval guards the detectors' history and what the two lanes share:
	// kernFailing and the latest sysctls.
	eval        sync.Mutex
	hist        *detect.History
	kernFailing map[string]bool
	sysctls     procnet.Sysctls
	sysctlsTime time.Time

	mu          sync.RWMutex
	full        *Sample
	rare        *Sample
	listen      *Sample
	stats       [len(Kinds)]KindStats
	history     ring
	kernErrs    map[string]uint64
	findings    []detect.Finding
	lastFinding time.Time
	planned     func(Kind) time.Duration
	// ehash is read once: a namespace's table is fixed at its creation.
	ehash      procnet.Ehash
	ehashKnown bool
	ehashDone  bool

	// events is nil when events are off; both lanes use it.
	events *samplerEvents
}

// sysctlsEvery is how often the cheap path reads the sysctls; dumps read
// them every time. Their reads (a dozen opens inside the namespace) cost
// several times the rest of a cheap sample.
const sysctlsEvery = 30 * time.Second

// urgentFor is how long after a finding a Sampler counts as Urgent.
const urgentFor = time.Minute

// NewSampler returns a Sampler; call Run to start it, or Sample to drive it.
func NewSampler(opts SamplerOptions) *Sampler {
	opts.setDefaults()
	det, err := detect.New(opts.Detect)
	if err != nil {
		opts.Logger.Error("invalid detector thresholds, using the defaults", "err", err)
		opts.Detect = detect.DefaultConfig()
		det, _ = detect.New(opts.Detect)
	}
	s := &Sampler{
		opts:        opts,
		dumps:       lane{agg: newAggregator(opts.MaxCloseWaitTracked), reader: procnet.NewReader(opts.ProcRoot)},
		cheap:       lane{agg: newAggregator(0), reader: procnet.NewReader(opts.ProcRoot)},
		det:         det,
		kernFailing: map[string]bool{},
		kernErrs:    map[string]uint64{},
	}
	for _, f := range ReadErrorFiles() {
		s.kernErrs[f] = 0
	}
	if opts.Events != nil {
		s.events = &samplerEvents{reader: opts.Events}
	}
	s.dumps.agg.health.setRetransMin(opts.Detect.PeerRetransMin)
	s.cheap.agg.health.setRetransMin(opts.Detect.PeerRetransMin)
	s.sweep = newSweeper(&s.opts)
	iv, hoIv := opts.Interval, s.sweep.interval
	s.planned = func(k Kind) time.Duration {
		if k == HalfOpen {
			return max(hoIv, 0)
		}
		return iv
	}
	// Listen samples and dumps both land in the window and the history:
	// a quarter more room than one sample per interval. Where rare dumps
	// too run every interval the history spans less than Detect.History
	// (about 5/8 of it); the bound keeps the memory of many namespaces'
	// histories where it was.
	s.history = newRing(int(opts.Window/opts.Interval)*5/4 + 2)
	s.hist = detect.NewHistory(opts.Detect.History, min(int(opts.Detect.History/opts.Interval)*5/4+2, 4500))
	return s
}

// SetPlan makes View report planned intervals from plan, normally a
// Scheduler's Planned: the plan in force for this Sampler.
func (s *Sampler) SetPlan(plan func(Kind) time.Duration) {
	s.mu.Lock()
	s.planned = plan
	s.mu.Unlock()
}

func (s *Sampler) laneOf(kind Kind) *lane {
	if kind == Listen {
		return &s.cheap
	}
	return &s.dumps
}

// Sample reads the namespace's kernel counters and sysctls, runs one dump
// of the given kind, publishes the sample and evaluates the detectors. A
// Listen sample may run while a dump of another kind is under way.
func (s *Sampler) Sample(kind Kind) (*Sample, error) {
	if kind == HalfOpen {
		return s.sampleHalfOpen()
	}
	ln := s.laneOf(kind)
	ln.mu.Lock()
	defer ln.mu.Unlock()
	s.eval.Lock()
	withSysctls := kind != Listen || time.Since(s.sysctlsTime) >= sysctlsEvery
	s.eval.Unlock()
	// The established hash's size and privacy are read once, with the
	// first kernel reads that enter the namespace (a dump's, or the cheap
	// path's sysctls): where dumps wait for minutes, the cheap path
	// reports it.
	var also func()
	if kind != Listen || withSysctls {
		also = s.ehashReader(ln.reader)
	}
	kern, kerrs, other := readProcfs(ln.reader, s.opts.InNetns, withSysctls, also)
	s.eval.Lock()
	s.noteReadErrors(kerrs, withSysctls)
	if withSysctls {
		s.sysctls, s.sysctlsTime = kern.Sysctls, time.Now()
	} else {
		kern.Sysctls = s.sysctls
	}
	s.eval.Unlock()
	smp, err := s.dump(ln, kind, &kern)
	// From here on s.eval is held, so that the two lanes publish samples,
	// summaries and findings in one order (eval before mu).
	s.eval.Lock()
	defer s.eval.Unlock()
	// The event counters are read only for a summary the history will
	// keep: one older than its newest (a dump that began before a cheap
	// sample that ended first) is dropped, and the rises it would carry
	// are left for the next.
	if err == nil && s.events != nil {
		if l := s.hist.Latest(); l == nil || !smp.Time.Before(l.Time) {
			smp.Events = s.events.sample(time.Now(), s.opts.InNetns, s.opts.Logger)
		}
	}
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
	smp.ReadCPU = other
	st.record(smp.Time, &smp.Dump)
	switch kind {
	case Full:
		s.full = smp
	case Rare:
		s.rare = smp
	case Listen:
		s.carryLocked(smp)
		s.listen = smp
	}
	merged := s.mergedLocked()
	s.history.push(smp.Time, merged)
	sum := s.summaryLocked(smp, &merged)
	s.mu.Unlock()

	s.hist.Push(sum)
	findings := s.det.Evaluate(s.hist)
	s.mu.Lock()
	s.findings = findings
	if len(findings) > 0 {
		s.lastFinding = smp.Time
	}
	s.mu.Unlock()
	if s.opts.OnSample != nil {
		s.opts.OnSample(smp)
	}
	return smp, nil
}

// ehashReader returns a function that reads the namespace's
// established-hash size and privacy inside it, to run with the kernel
// reads, or nil once that succeeded (or the kernel, before 6.1, has no such
// sysctl): a namespace's table is fixed at its creation.
func (s *Sampler) ehashReader(r *procnet.Reader) func() {
	s.mu.RLock()
	done := s.ehashDone
	s.mu.RUnlock()
	if done {
		return nil
	}
	return func() {
		eh, err := r.ReadEhash()
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case err == nil:
			s.ehash, s.ehashKnown, s.ehashDone = eh, true, true
		case errors.Is(err, fs.ErrNotExist):
			s.ehashDone = true
		default:
			s.opts.Logger.Debug("cannot read net.ipv4.tcp_ehash_entries; retrying at the next dump", "err", err)
		}
	}
}

// latestDumpLocked returns the newer of the latest full and rare samples.
func (s *Sampler) latestDumpLocked() *Sample {
	d := s.full
	if s.rare != nil && (d == nil || s.rare.Time.After(d.Time)) {
		d = s.rare
	}
	return d
}

// carryLocked completes a Listen sample with what only a dump sees: the
// half-open connections of each listener and the CLOSE_WAIT groups, from
// the latest dump.
func (s *Sampler) carryLocked(smp *Sample) {
	d := s.latestDumpLocked()
	if d == nil {
		return
	}
	smp.CloseWait, smp.CloseWaitFolded, smp.CloseWaitUntracked = d.CloseWait, d.CloseWaitFolded, d.CloseWaitUntracked
	for i := range smp.Listeners {
		l := &smp.Listeners[i]
		j, ok := slices.BinarySearchFunc(d.Listeners, l.ListenerKey, func(x detect.Listener, k detect.ListenerKey) int { return x.ListenerKey.Compare(k) })
		if !ok {
			continue
		}
		o := &d.Listeners[j]
		l.SynRecv, l.SynSources, l.SynSourcesCapped, l.TopSources = o.SynRecv, o.SynSources, o.SynSourcesCapped, o.TopSources
		l.SynRecvRetransmitted = o.SynRecvRetransmitted
	}
}

// noteReadErrors logs a file's failure once, until it reads again;
// sysctls that were not read this time keep their state. s.eval is held.
func (s *Sampler) noteReadErrors(errs []readError, sysctlsRead bool) {
	failed := map[string]bool{}
	for _, e := range errs {
		failed[e.file] = true
		if !s.kernFailing[e.file] {
			s.kernFailing[e.file] = true
			s.opts.Logger.Warn("cannot read a kernel file; its metrics and the detectors that need it are skipped", "file", e.file, "err", e.err)
		}
	}
	for f := range s.kernFailing {
		if !failed[f] && (sysctlsRead || !isSysctlFile(f)) {
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
		Counters:  smp.Procfs.Counters,
		Sockstat:  smp.Procfs.Sockstat,
		Sysctls:   smp.Procfs.Sysctls,
		CloseWait: smp.CloseWait,
	}
	if smp.Events != nil {
		sum.Events = smp.Events.Summary
	}
	for _, l := range smp.Listeners {
		if l.SynRecv > 0 || l.QueueLen > 0 {
			sum.Listeners = append(sum.Listeners, l)
		}
	}
	if len(sum.Listeners) > maxSummaryListeners {
		fill := func(l *detect.Listener) float64 {
			lim := float64(max(l.QueueLimit, 1))
			return max(float64(l.SynRecv), float64(l.QueueLen)) / lim
		}
		slices.SortStableFunc(sum.Listeners, func(x, y detect.Listener) int { return cmp.Compare(fill(&y), fill(&x)) })
		sum.Listeners = sum.Listeners[:maxSummaryListeners]
		slices.SortFunc(sum.Listeners, func(x, y detect.Listener) int { return x.ListenerKey.Compare(y.ListenerKey) })
	}
	if s.full != nil {
		sum.Destinations = s.full.Destinations
		sum.DestinationsTime = s.full.Time
		sum.DestinationsTruncated = s.full.DestinationsFolded > 0
		sum.TimeWait = merged.Get(diag.AFInet, diag.TimeWait) + merged.Get(diag.AFInet6, diag.TimeWait)
		healthSummary(&sum, s.full)
	}
	s.halfOpenSummaryLocked(&sum)
	return sum
}

func (s *Sampler) dump(ln *lane, kind Kind, kern *ProcfsValues) (*Sample, error) {
	if ln.conn == nil {
		c, err := s.opts.Dial()
		if err != nil {
			return nil, fmt.Errorf("opening sock_diag: %w", err)
		}
		ln.conn = c
	}
	smp := &Sample{Kind: kind, Time: time.Now(), Procfs: *kern}
	pr := kern.Sysctls.PortRange
	prOK := kern.Sysctls.Present.Has(procnet.SysctlIPLocalPortRange)
	ln.agg.reset(smp, kind == Full, pr, prOK)
	st, err := ln.conn.Dump(diag.Request{States: kind.Mask(), Method: s.opts.Method}, ln.agg.add)
	smp.Dump = st
	if err != nil {
		// The connection may hold the rest of the dump: start afresh.
		ln.conn.Close()
		ln.conn = nil
		return nil, fmt.Errorf("%s dump: %w", kind, err)
	}
	ln.agg.finish()
	if kind == Listen {
		// No CLOSE_WAIT socket was seen: the tracker is the dumps'.
		return smp, nil
	}
	cw := ln.agg.cw
	cw.sweep()
	minAge := s.opts.Detect.CloseWaitMinAge
	if _, err := cw.resolve(smp.Time, minAge, s.opts.LookupTimeout, s.opts.LookupOwners); err != nil {
		s.opts.Logger.Debug("CLOSE_WAIT owner lookup incomplete", "err", err)
	}
	smp.CloseWait, smp.CloseWaitFolded = cw.groups(minAge, ln.agg.outbound, s.opts.MaxCloseWaitGroups)
	smp.CloseWaitUntracked = cw.untracked
	ln.agg.health.resolveOwners(smp, s.opts.LookupOwners, s.opts.LookupTimeout)
	return smp, nil
}

// Close releases the sock_diag connections and the held net files. Call it
// when no Sample runs.
func (s *Sampler) Close() error {
	var errs []error
	for _, ln := range []*lane{&s.dumps, &s.cheap} {
		ln.mu.Lock()
		if ln.conn != nil {
			errs = append(errs, ln.conn.Close())
			ln.conn = nil
		}
		errs = append(errs, ln.reader.Release())
		ln.mu.Unlock()
	}
	errs = append(errs, s.closeSweep())
	return errors.Join(errs...)
}

// mergedLocked combines the latest samples: each state's count from the
// newest sample whose kind includes it.
func (s *Sampler) mergedLocked() Counts {
	var c Counts
	var newest [diag.MaxState + 1]time.Time
	for _, smp := range []*Sample{s.full, s.rare, s.listen} {
		if smp == nil {
			continue
		}
		mask := smp.Kind.Mask()
		if smp.Kind == Rare {
			mask |= 1 << diag.NewSynRecv
		}
		for st := diag.State(0); st <= diag.MaxState; st++ {
			if !mask.Has(st) || (!newest[st].IsZero() && !smp.Time.After(newest[st])) {
				continue
			}
			newest[st] = smp.Time
			for f := range c {
				c[f][st] = smp.Counts[f][st]
			}
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

// Urgent reports whether the detectors found something in the last
// minute; a Scheduler serves urgent Samplers first when the budget is
// short.
func (s *Sampler) Urgent() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.lastFinding.IsZero() && time.Since(s.lastFinding) < urgentFor
}

// View returns the latest state for a scrape.
func (s *Sampler) View(now time.Time) View {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := View{Full: s.full, Rare: s.rare, Listen: s.listen, Stats: s.stats, Ready: s.full != nil,
		Ehash: s.ehash, EhashKnown: s.ehashKnown}
	v.Counts = s.mergedLocked()
	v.Max = s.history.max(now.Add(-s.opts.Window))
	latest := s.latestDumpLocked()
	if s.listen != nil && (latest == nil || s.listen.Time.After(latest.Time)) {
		latest = s.listen
	}
	v.Latest = latest
	if latest != nil {
		v.Listeners = latest.Listeners
	}
	v.ReadErrors = maps.Clone(s.kernErrs)
	for _, k := range Kinds {
		v.Stats[k].Planned = s.planned(k)
	}
	v.HalfOpen = s.halfOpenViewLocked(&v.Stats[HalfOpen])
	return v
}

// RunJob runs one sample of kind k for a Scheduler and logs a failure
// once, not every cycle while it persists.
func (s *Sampler) RunJob(k Kind) (time.Duration, error) {
	smp, err := s.Sample(k)
	ln := s.laneOf(k)
	switch {
	case err == nil:
		if ln.lastErr != "" {
			s.opts.Logger.Info("sampling recovered", "kind", k)
			ln.lastErr = ""
		}
		return smp.ReadCPU, nil
	case errors.Is(err, context.Canceled), errors.Is(err, ErrNotReady):
	default:
		if msg := err.Error(); msg != ln.lastErr {
			s.opts.Logger.Error("sampling failed", "kind", k, "err", err)
			ln.lastErr = msg
		}
	}
	return 0, err
}

// Jobs returns the kinds of work a Scheduler runs for this Sampler:
// SamplerJobs with the half-open sweep's interval (none when disabled).
func (s *Sampler) Jobs() []JobKind { return SamplerJobs(s.sweep.interval) }

// Run samples until ctx ends with a Scheduler of its own: a full dump at
// once, the cheap path (counters and a LISTEN-only dump) and rare dumps
// every interval, full dumps as often as the CPU budget allows, and the
// half-open sweep every SamplerOptions.HalfOpenInterval within its share of the
// budget. Failures are logged and counted; the next cycle dials afresh.
func (s *Sampler) Run(ctx context.Context) {
	defer s.Close()
	sch := NewScheduler(SchedulerOptions{Interval: s.opts.Interval, Budget: s.opts.CPUBudget, Logger: s.opts.Logger, Kinds: s.Jobs()})
	s.SetPlan(sch.Planned)
	sch.Add(HostTarget, s)
	sch.Run(ctx)
}
