package netns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// TargetLabels are the names of the labels Manager.Targets sets, in order;
// pass them as collector.ExporterOptions.TargetLabels.
var TargetLabels = []string{"netns", "namespace", "pod"}

// Config configures a Manager.
type Config struct {
	// ProcRoot is where procfs is mounted; default /proc. The agent needs
	// the node's PID namespace (hostPID) to see other pods' processes.
	ProcRoot string
	// RunDirs are the directories of namespace bind mounts; nil means
	// DefaultRunDirs, an empty slice none.
	RunDirs []string
	// Refresh is the time between two discoveries; default 30s. A namespace
	// whose processes and bind mount are gone is noticed sooner, at its
	// next turn in the sweep.
	Refresh time.Duration
	// Interval is the shortest time between two dumps of one namespace;
	// default 1s.
	Interval time.Duration
	// CPUBudget is the fraction of one core that the dumps of all
	// namespaces together may use; default 0.05.
	CPUBudget float64
	// NewSampler makes the Sampler of a namespace. It should set
	// collector.Options.Dial to h.Dial and InNetns to h.Do. The Manager drives the Sampler with Sample
	// and closes it when the namespace goes: it must not be Run. Default: a
	// Sampler with Dial set to h.Dial, InNetns to h.Do and Interval to the
	// Manager's.
	NewSampler func(h *Handle) (*collector.Sampler, error)
	// PodUID returns the UID of the pod a process belongs to, "" if none;
	// it is asked for a namespace's processes until one answers. Optional.
	PodUID func(pid int) string
	// PodName maps a pod UID to its Kubernetes namespace and name; it is
	// asked at every Targets call, so a pod seen late is still named.
	// Optional.
	PodName func(uid string) (namespace, name string, ok bool)
	// Logger receives the Manager's few messages; default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.RunDirs == nil {
		c.RunDirs = DefaultRunDirs
	}
	if c.Refresh <= 0 {
		c.Refresh = 30 * time.Second
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.CPUBudget <= 0 {
		c.CPUBudget = 0.05
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.NewSampler == nil {
		iv := c.Interval
		c.NewSampler = func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.Options{Interval: iv, Dial: h.Dial, InNetns: h.Do}), nil
		}
	}
}

// Stats are the Manager's own numbers.
type Stats struct {
	// Namespaces is the number of namespaces being sampled.
	Namespaces int
	// Added counts namespaces that started being sampled. Dropped counts
	// namespaces that went away: found gone by a discovery, gone between
	// discovery and opening, or reported gone by a dump.
	Added, Dropped uint64
	// OpenErrors counts namespaces that exist but could not be opened or
	// given a Sampler (each counted once while it lasts).
	OpenErrors uint64
	// Refreshes counts discoveries, RefreshErrors those that failed.
	Refreshes, RefreshErrors uint64
	// Discover describes the latest successful discovery.
	Discover DiscoverStats
	// Sweeps counts completed passes over all namespaces. SweepDuration is
	// the wall time of the latest (dumps and pacing, without the wait for
	// the next period) and SweepCPU the CPU its dumps used.
	Sweeps        uint64
	SweepDuration time.Duration
	SweepCPU      time.Duration
	// Period is the planned time between the starts of two sweeps, and
	// FullEvery the planned time between two full dumps of a namespace.
	Period, FullEvery time.Duration
}

// entry is one sampled namespace.
type entry struct {
	h     *Handle
	s     *collector.Sampler
	key   Key
	label string
	host  bool

	// uid is the owning pod's UID; guarded by Manager.mu.
	uid string

	// Scheduler state, guarded by Manager.runMu.
	dead     bool
	lastFull time.Time
	fullCPU  float64 // seconds, exponentially weighted
	rareCPU  float64
	lastErr  string
}

// Manager samples every network namespace on the node; see the package
// documentation. Create it with NewManager, start it with Run.
type Manager struct {
	cfg Config

	// runMu serialises dumps, discoveries and Close, so a Sampler or
	// Handle is never closed under a running dump.
	runMu         sync.Mutex
	failed        map[Key]string // namespaces that could not be opened, logged once
	lastRefresh   string         // latest discovery error logged
	refreshWanted atomic.Bool

	// mu guards what scrapes read; it is never held during a dump.
	mu      sync.Mutex
	entries map[Key]*entry
	list    []*entry // host first, then by inode
	stats   Stats
}

// NewManager returns a Manager. Nothing is opened before Refresh or Run.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.CPUBudget < 0 || cfg.CPUBudget > 1 {
		return nil, fmt.Errorf("netns: CPU budget %g is not a fraction of one core in (0, 1]", cfg.CPUBudget)
	}
	cfg.setDefaults()
	return &Manager{cfg: cfg, failed: map[Key]string{}, entries: map[Key]*entry{}}, nil
}

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Targets returns the namespaces being sampled with their labels (see
// TargetLabels): netns is "host" or the inode, namespace and pod name the
// pod that owns the namespace, empty when unknown.
func (m *Manager) Targets() []collector.Target {
	m.mu.Lock()
	list := slices.Clone(m.list)
	uids := make([]string, len(list))
	for i, e := range list {
		uids[i] = e.uid
	}
	m.mu.Unlock()
	out := make([]collector.Target, 0, len(list))
	for i, e := range list {
		labels := []string{e.label, "", ""}
		if uids[i] != "" && m.cfg.PodName != nil {
			if ns, name, ok := m.cfg.PodName(uids[i]); ok {
				labels[1], labels[2] = ns, name
			}
		}
		out = append(out, collector.Target{Sampler: e.s, Labels: labels})
	}
	return out
}

// Refresh discovers namespaces now: it opens a Handle and makes a Sampler
// for each new one, and closes those of namespaces that are gone. Run calls
// it on its own; call it directly only to drive a Manager without Run.
func (m *Manager) Refresh() error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	return m.refreshLocked()
}

func (m *Manager) refreshLocked() error {
	found, dst, err := Discover(m.cfg.ProcRoot, m.cfg.RunDirs)
	m.mu.Lock()
	m.stats.Refreshes++
	if err != nil {
		m.stats.RefreshErrors++
	} else {
		m.stats.Discover = dst
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}

	seen := make(map[Key]bool, len(found))
	var added []*entry
	var vanished, openErrs uint64
	for _, ns := range found {
		seen[ns.Key] = true
		m.mu.Lock()
		e := m.entries[ns.Key]
		m.mu.Unlock()
		if e != nil {
			e.h.update(ns)
			m.resolvePod(e, ns)
			continue
		}
		h, err := Open(ns, m.cfg.ProcRoot)
		if errors.Is(err, ErrGone) {
			vanished++
			continue
		}
		if err == nil {
			var s *collector.Sampler
			s, err = m.cfg.NewSampler(h)
			if err == nil && s == nil {
				err = errors.New("NewSampler returned no Sampler")
			}
			if err != nil {
				h.Close()
				err = fmt.Errorf("netns: creating the sampler of namespace %d: %w", ns.Inode, err)
			} else {
				e = &entry{h: h, s: s, key: ns.Key, label: ns.Label(), host: ns.IsHost}
				m.resolvePod(e, ns)
				added = append(added, e)
				delete(m.failed, ns.Key)
				continue
			}
		}
		if _, logged := m.failed[ns.Key]; !logged {
			openErrs++
			m.failed[ns.Key] = err.Error()
			m.cfg.Logger.Warn("cannot sample network namespace", "netns", ns.Label(), "pid", ns.PID, "err", err)
		}
	}
	for k := range m.failed {
		if !seen[k] {
			delete(m.failed, k)
		}
	}

	var removed []*entry
	m.mu.Lock()
	for k, e := range m.entries {
		if !seen[k] {
			removed = append(removed, e)
			delete(m.entries, k)
		}
	}
	for _, e := range added {
		m.entries[e.key] = e
	}
	m.rebuildLocked()
	m.stats.Added += uint64(len(added))
	m.stats.Dropped += vanished + uint64(len(removed))
	m.stats.OpenErrors += openErrs
	m.mu.Unlock()
	for _, e := range removed {
		m.closeEntry(e)
		m.cfg.Logger.Debug("network namespace gone", "netns", e.label)
	}
	return nil
}

// rebuildLocked rebuilds the sorted list from the map.
func (m *Manager) rebuildLocked() {
	m.list = m.list[:0]
	for _, e := range m.entries {
		m.list = append(m.list, e)
	}
	slices.SortFunc(m.list, func(a, b *entry) int {
		if a.host != b.host {
			if a.host {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.key.Inode, b.key.Inode); c != 0 {
			return c
		}
		return cmp.Compare(a.key.Dev, b.key.Dev)
	})
	m.stats.Namespaces = len(m.list)
}

// resolvePod looks for the pod UID of a namespace until one is found. The
// host namespace is never attributed: hostNetwork pods share it.
func (m *Manager) resolvePod(e *entry, ns Namespace) {
	if e.host || m.cfg.PodUID == nil {
		return
	}
	m.mu.Lock()
	known := e.uid != ""
	m.mu.Unlock()
	if known {
		return
	}
	for _, pid := range ns.PIDs {
		if uid := m.cfg.PodUID(pid); uid != "" {
			m.mu.Lock()
			e.uid = uid
			m.mu.Unlock()
			return
		}
	}
}

// closeEntry releases an entry removed from the map; runMu is held.
func (m *Manager) closeEntry(e *entry) {
	e.dead = true
	if err := errors.Join(e.s.Close(), e.h.Close()); err != nil {
		m.cfg.Logger.Debug("closing network namespace", "netns", e.label, "err", err)
	}
}

// drop removes an entry whose dump said its namespace is gone; runMu is
// held.
func (m *Manager) drop(e *entry) {
	m.mu.Lock()
	if m.entries[e.key] == e {
		delete(m.entries, e.key)
		m.rebuildLocked()
		m.stats.Dropped++
	}
	m.mu.Unlock()
	m.closeEntry(e)
	m.cfg.Logger.Debug("network namespace gone", "netns", e.label)
}

// Close closes every Handle and Sampler. Run calls it when it returns.
func (m *Manager) Close() error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	m.mu.Lock()
	list := m.list
	m.entries = map[Key]*entry{}
	m.list = nil
	m.stats.Namespaces = 0
	m.mu.Unlock()
	var errs []error
	for _, e := range list {
		e.dead = true
		errs = append(errs, e.s.Close(), e.h.Close())
	}
	return errors.Join(errs...)
}

// rareShare is the largest part of the budget the sweep of rare dumps may
// take; full dumps keep the rest (as in the single-namespace Sampler).
const rareShare = 0.5

const ewmaWeight = 0.3

// plan is the schedule of one sweep.
type plan struct {
	period    time.Duration // between the starts of two sweeps
	fullEvery time.Duration // between two full dumps of a namespace
	allFull   bool          // every visit runs a full dump
}

// planLocked spaces the sweep from the measured cost of each namespace's
// dumps: rare dumps of all namespaces together take at most rareShare of
// the budget, full dumps the rest; when a full dump costs little more than
// a rare one (the walk of the shared hash dominates), every visit is a full
// dump and the period is what the full sweep costs. runMu is held.
func (m *Manager) planLocked(list []*entry) plan {
	var rare, full, extra float64
	for _, e := range list {
		f, r := e.fullCPU, e.rareCPU
		if r == 0 {
			r = f // not measured yet: assume the walk dominates
		}
		f = max(f, r)
		rare += r
		full += f
		extra += f - r
	}
	b := m.cfg.CPUBudget
	iv := m.cfg.Interval
	secs := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	p := plan{period: max(iv, secs(rare/(rareShare*b)))}
	left := b - rare/p.period.Seconds()
	p.fullEvery = max(iv, secs(extra/left))
	if p.fullEvery <= p.period {
		p.allFull = true
		p.period = max(iv, secs(full/b))
		p.fullEvery = p.period
	}
	return p
}

// sampleOne runs one sample of e and returns the CPU to pace it by (the
// sampling thread's, at least the dump's); ran is false when there was
// nothing to run.
func (m *Manager) sampleOne(e *entry, p plan) (cost time.Duration, ran bool) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if e.dead {
		return 0, false
	}
	if !e.h.present(m.cfg.ProcRoot) {
		// Its processes and bind mount are gone: a dump would read a
		// namespace kept alive by our own descriptors. Let a discovery
		// decide.
		m.refreshWanted.Store(true)
		return 0, false
	}
	kind := collector.Rare
	switch {
	case e.lastFull.IsZero():
		kind = collector.Full
	case e.rareCPU == 0:
		// Measure a rare dump once, so the plan knows what it costs.
	case p.allFull || time.Since(e.lastFull) >= p.fullEvery:
		kind = collector.Full
	}
	// The whole sample is paced, not only the dump: aggregation, CLOSE_WAIT
	// tracking and the detectors run on this thread too.
	runtime.LockOSThread()
	start, cpu0 := time.Now(), threadCPU()
	smp, err := e.s.Sample(kind)
	used := threadCPU() - cpu0
	runtime.UnlockOSThread()
	if err != nil {
		wall := time.Since(start)
		switch {
		case errors.Is(err, ErrGone):
			m.drop(e)
		case !e.h.present(m.cfg.ProcRoot):
			m.refreshWanted.Store(true)
		case err.Error() != e.lastErr:
			// Once per distinct failure, not every cycle.
			m.cfg.Logger.Warn("sampling network namespace failed", "netns", e.label, "kind", kind, "err", err)
			e.lastErr = err.Error()
		}
		return wall, true
	}
	if e.lastErr != "" {
		m.cfg.Logger.Info("sampling network namespace recovered", "netns", e.label)
		e.lastErr = ""
	}
	used = max(used, smp.Dump.CPU)
	c := used.Seconds()
	avg := &e.rareCPU
	if kind == collector.Full {
		avg = &e.fullCPU
		e.lastFull = start
	}
	if *avg == 0 {
		*avg = c
	} else {
		*avg = (1-ewmaWeight)**avg + ewmaWeight*c
	}
	// The namespace's half-open sweep, when due, paces the loop too.
	if e.s.SweepDue(time.Now()) {
		if ho, err := e.s.Sweep(); err == nil {
			used += ho.Dump.CPU
		} else {
			m.cfg.Logger.Debug("half-open sweep failed", "netns", e.label, "err", err)
		}
	}
	return used, true
}

// refreshLogged runs a discovery and logs a failure once while it lasts.
func (m *Manager) refreshLogged() {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	err := m.refreshLocked()
	switch {
	case err == nil && m.lastRefresh != "":
		m.cfg.Logger.Info("network namespace discovery recovered")
		m.lastRefresh = ""
	case err != nil && err.Error() != m.lastRefresh:
		m.cfg.Logger.Error("network namespace discovery failed", "err", err)
		m.lastRefresh = err.Error()
	}
}

// snapshot returns the current list and its plan.
func (m *Manager) snapshot() ([]*entry, plan) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	m.mu.Lock()
	list := slices.Clone(m.list)
	m.mu.Unlock()
	p := m.planLocked(list)
	m.mu.Lock()
	m.stats.Period, m.stats.FullEvery = p.period, p.fullEvery
	m.mu.Unlock()
	return list, p
}

// Run discovers and samples until ctx ends, then closes everything. Each
// sweep visits every namespace once, one dump at a time; after each dump it
// waits the dump's CPU time divided by the budget, so the dumps never use
// more than the budget whatever the number of namespaces, and a sweep
// starts no sooner than the plan's period after the previous one.
// Discovery runs every Refresh, and at once when a namespace's processes
// and bind mount are found gone.
func (m *Manager) Run(ctx context.Context) {
	defer m.Close()
	m.refreshLogged()
	nextRefresh := time.Now().Add(m.cfg.Refresh)
	refreshIfDue := func() {
		if m.refreshWanted.Swap(false) || !time.Now().Before(nextRefresh) {
			m.refreshLogged()
			nextRefresh = time.Now().Add(m.cfg.Refresh)
		}
	}
	for ctx.Err() == nil {
		start := time.Now()
		list, p := m.snapshot()
		var cpu time.Duration
		for _, e := range list {
			refreshIfDue()
			cost, ran := m.sampleOne(e, p)
			if !ran {
				continue
			}
			cpu += cost
			if !sleep(ctx, time.Duration(float64(cost)/m.cfg.CPUBudget)) {
				return
			}
		}
		if len(list) > 0 {
			m.mu.Lock()
			m.stats.Sweeps++
			m.stats.SweepDuration = time.Since(start)
			m.stats.SweepCPU = cpu
			m.mu.Unlock()
		}
		// Wait for the next sweep, waking for discoveries in between.
		for {
			refreshIfDue()
			left := p.period - time.Since(start)
			if left <= 0 {
				break
			}
			wake := min(left, time.Until(nextRefresh))
			if m.refreshWanted.Load() {
				wake = 0
			}
			if !sleep(ctx, max(wake, 0)) {
				return
			}
		}
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
