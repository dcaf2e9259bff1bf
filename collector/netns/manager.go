package netns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// TargetLabels are the names of the labels Manager.Targets sets, in order;
// pass them as collector.ExporterOptions.TargetLabels.
var TargetLabels = []string{"netns", "namespace", "pod"}

// ManagerOptions configure a Manager.
type ManagerOptions struct {
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
	// HalfOpenInterval is the interval the half-open sweep of each
	// namespace asks for, within a quarter of the one CPU budget, as
	// collector.SamplerOptions.HalfOpenInterval: zero means
	// collector.DefaultHalfOpenInterval, negative no sweep. The Samplers
	// that NewSampler makes should be given the same.
	HalfOpenInterval time.Duration
	// NewSampler makes the Sampler of a namespace. It should set
	// collector.SamplerOptions.Dial to h.Dial and InNetns to h.Do. The Manager drives the Sampler with Sample
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
	// ScrapeErrors counts the series of the Manager's Collector that a
	// scrape could not build (part netns); nil: not counted.
	ScrapeErrors *collector.ScrapeErrors
	// FDBudget returns how many descriptors the sampled namespaces may
	// hold in all: the open-file limit less what the rest of the process
	// keeps (the HTTP server's connections, a reserve). Every sampled
	// namespace, the agent's own included, is counted at NamespaceFDs
	// whether or not it has opened them all yet (its sockets open with
	// its first jobs of each kind), and a discovery opens new namespaces
	// only while that stays within the budget; the others wait for a
	// later discovery and are counted (Stats.FDLimited). The agent's own
	// namespace is always opened. nil: no limit.
	FDBudget func() int
}

// NamespaceFDs is the number of descriptors a sampled namespace may hold:
// 8 measured in the agent (its descriptors grew by 80 with 10 more
// namespaces: the namespace handle, the four net files read on the cheap
// path, and the sock_diag sockets its jobs dial), and one for a redial.
const NamespaceFDs = 9

func (c *ManagerOptions) setDefaults() {
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
		iv, root, ho := c.Interval, c.ProcRoot, c.HalfOpenInterval
		c.NewSampler = func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.SamplerOptions{Interval: iv, Dial: h.Dial, InNetns: h.Do, ProcRoot: root, HalfOpenInterval: ho}), nil
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
	// Failing and FDLimited are the namespaces found by the latest
	// discovery that are not sampled: those that could not be opened or
	// given a Sampler, and those left for want of descriptors (see
	// ManagerOptions.FDBudget).
	Failing, FDLimited int
	// Refreshes counts discoveries, RefreshErrors those that failed.
	Refreshes, RefreshErrors uint64
	// Discover describes the latest successful discovery.
	Discover DiscoverStats
	// Sweeps counts completed passes over all namespaces: every namespace
	// sampled at the time a pass started got a dump (rare or full) since.
	// SweepDuration is the wall time of the latest pass and SweepCPU the
	// CPU its dumps used.
	Sweeps        uint64
	SweepDuration time.Duration
	SweepCPU      time.Duration
	// Period is the planned time between two dumps of a namespace (rare
	// ones, or full ones when every dump is full), and FullEvery the
	// planned time between two full dumps of a namespace: the plan the
	// Scheduler holds to.
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

	// mu is read-held by every job and write-held to close the entry, so
	// a Sampler or Handle is never closed under a running job.
	mu   sync.RWMutex
	dead bool
	// lastErr holds, per lane (dumps, cheap path), the latest failure
	// logged.
	errMu   sync.Mutex
	lastErr [2]string
}

// Manager samples every network namespace on the node; see the package
// documentation. Create it with NewManager, start it with Run.
type Manager struct {
	cfg ManagerOptions

	// sch runs every namespace's jobs within the one budget.
	sch *collector.Scheduler

	// runMu serialises discoveries and Close.
	runMu         sync.Mutex
	failed        map[Key]string // namespaces that could not be opened, logged once
	lastRefresh   string         // latest discovery error logged
	refreshWanted atomic.Bool
	refreshNow    chan struct{}

	// mu guards what scrapes read; it is never held during a dump.
	mu      sync.Mutex
	entries map[Key]*entry
	list    []*entry // host first, then by inode
	stats   Stats
	// The pass in progress: its start, the namespaces dumped since and
	// their CPU.
	sweepStart time.Time
	sweepSeen  map[Key]bool
	sweepCPU   time.Duration
}

// NewManager returns a Manager. Nothing is opened before Refresh or Run.
func NewManager(cfg ManagerOptions) (*Manager, error) {
	if cfg.CPUBudget < 0 || cfg.CPUBudget > 1 {
		return nil, fmt.Errorf("netns: CPU budget %g is not a fraction of one core in (0, 1]", cfg.CPUBudget)
	}
	cfg.setDefaults()
	m := &Manager{cfg: cfg, failed: map[Key]string{}, entries: map[Key]*entry{}, sweepSeen: map[Key]bool{}, refreshNow: make(chan struct{}, 1)}
	m.sch = collector.NewScheduler(collector.SchedulerOptions{Interval: cfg.Interval, Budget: cfg.CPUBudget, Logger: cfg.Logger,
		Kinds: collector.SamplerJobs(collector.SweepInterval(cfg.HalfOpenInterval, cfg.Interval))})
	return m, nil
}

// Scheduler returns the Scheduler that runs every namespace's jobs, for
// its plan and metrics.
func (m *Manager) Scheduler() *collector.Scheduler { return m.sch }

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	st := m.stats
	m.mu.Unlock()
	st.Period = m.sch.Planned(collector.Rare)
	st.FullEvery = m.sch.Planned(collector.Full)
	return st
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
				// Names from the Kubernetes API become label values.
				labels[1], labels[2] = collector.SafeLabel(ns), collector.SafeLabel(name)
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
	// Descriptors left for new namespaces: the budget less what the
	// namespaces already sampled were promised (those gone from found
	// give theirs back only once closed, after the loop).
	left, fdLimited := math.MaxInt, 0
	if m.cfg.FDBudget != nil {
		m.mu.Lock()
		left = m.cfg.FDBudget() - NamespaceFDs*len(m.entries)
		m.mu.Unlock()
	}
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
		if !ns.IsHost && left < NamespaceFDs {
			fdLimited++
			// Counted under one reason only.
			delete(m.failed, ns.Key)
			continue
		}
		left -= NamespaceFDs
		h, err := Open(ns, m.cfg.ProcRoot)
		if errors.Is(err, ErrGone) {
			vanished++
			left += NamespaceFDs
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
				s.SetPlan(m.sch.Planned)
				m.resolvePod(e, ns)
				added = append(added, e)
				delete(m.failed, ns.Key)
				continue
			}
		}
		left += NamespaceFDs // Open and NewSampler failed: nothing held
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
	m.mu.Lock()
	wasLimited := m.stats.FDLimited
	m.stats.FDLimited, m.stats.Failing = fdLimited, len(m.failed)
	m.mu.Unlock()
	switch {
	case fdLimited > 0 && wasLimited == 0:
		budget := m.cfg.FDBudget()
		m.cfg.Logger.Warn("not sampling some network namespaces: the process is near its open-file limit (RLIMIT_NOFILE) less what its HTTP connections may take; raise the limit or lower --web.max-connections",
			"namespaces", fdLimited, "namespace_fd_budget", budget, "per_namespace", NamespaceFDs)
	case fdLimited == 0 && wasLimited > 0:
		m.cfg.Logger.Info("no network namespace is left unsampled for want of descriptors any more")
	}

	var removed []*entry
	m.mu.Lock()
	for k, e := range m.entries {
		if !seen[k] {
			removed = append(removed, e)
			delete(m.entries, k)
		}
	}
	isNew := map[*entry]bool{}
	for _, e := range added {
		m.entries[e.key] = e
		isNew[e] = true
	}
	m.rebuildLocked()
	// In list order, host first: the Scheduler serves new targets in the
	// order they came, and readiness waits for the host's first full dump.
	for _, e := range m.list {
		if isNew[e] {
			m.sch.Add(schedKey(e.key), &runner{m: m, e: e})
		}
	}
	m.stats.Added += uint64(len(added))
	m.stats.Dropped += vanished + uint64(len(removed))
	m.stats.OpenErrors += openErrs
	m.mu.Unlock()
	for _, e := range removed {
		m.sch.Remove(schedKey(e.key))
		m.closeEntry(e)
		m.cfg.Logger.Debug("network namespace gone", "netns", e.label)
	}
	return nil
}

// schedKey is a namespace's key in the Scheduler.
func schedKey(k Key) string {
	return strconv.FormatUint(k.Dev, 10) + ":" + strconv.FormatUint(k.Inode, 10)
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

// closeEntry releases an entry removed from the map, once its running jobs
// have finished.
func (m *Manager) closeEntry(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return
	}
	e.dead = true
	if err := errors.Join(e.s.Close(), e.h.Close()); err != nil {
		m.cfg.Logger.Debug("closing network namespace", "netns", e.label, "err", err)
	}
}

// drop removes an entry whose dump said its namespace is gone; the caller
// holds no lock of the entry.
func (m *Manager) drop(e *entry) {
	m.mu.Lock()
	if m.entries[e.key] == e {
		delete(m.entries, e.key)
		m.rebuildLocked()
		m.stats.Dropped++
	}
	m.mu.Unlock()
	m.sch.Remove(schedKey(e.key))
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
		m.sch.Remove(schedKey(e.key))
		e.mu.Lock()
		if !e.dead {
			e.dead = true
			errs = append(errs, e.s.Close(), e.h.Close())
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

// runner runs one namespace's jobs for the Scheduler.
type runner struct {
	m *Manager
	e *entry
}

// Urgent reports recent findings in the namespace.
func (r *runner) Urgent() bool { return r.e.s.Urgent() }

// RunJob runs one sample of the namespace. A namespace found gone is
// dropped; a failure is logged once per lane while it lasts.
func (r *runner) RunJob(kind collector.Kind) (time.Duration, error) {
	m, e := r.m, r.e
	e.mu.RLock()
	if e.dead {
		e.mu.RUnlock()
		return 0, ErrGone
	}
	if !e.h.present(m.cfg.ProcRoot) {
		e.mu.RUnlock()
		// Its processes and bind mount are gone: a dump would read a
		// namespace kept alive by our own descriptors. Let a discovery
		// decide.
		m.wantRefresh()
		return 0, ErrGone
	}
	smp, err := e.s.Sample(kind)
	e.mu.RUnlock()
	ln := 0
	if kind == collector.Listen {
		ln = 1
	}
	if err != nil {
		switch {
		case errors.Is(err, collector.ErrNotReady):
			// The sweep waits for the namespace's first full dump.
		case errors.Is(err, ErrGone):
			m.drop(e)
		case !e.h.present(m.cfg.ProcRoot):
			m.wantRefresh()
		default:
			e.errMu.Lock()
			if err.Error() != e.lastErr[ln] {
				// Once per distinct failure, not every cycle.
				m.cfg.Logger.Warn("sampling network namespace failed", "netns", e.label, "kind", kind, "err", err)
				e.lastErr[ln] = err.Error()
			}
			e.errMu.Unlock()
		}
		return 0, err
	}
	e.errMu.Lock()
	if e.lastErr[ln] != "" {
		m.cfg.Logger.Info("sampling network namespace recovered", "netns", e.label)
		e.lastErr[ln] = ""
	}
	e.errMu.Unlock()
	if kind == collector.Full || kind == collector.Rare {
		m.noteDump(e, smp.Dump.CPU)
	}
	return smp.ReadCPU, nil
}

// noteDump counts a dump towards the pass over all namespaces.
func (m *Manager) noteDump(e *entry, cpu time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sweepStart.IsZero() {
		m.sweepStart = time.Now()
	}
	m.sweepSeen[e.key] = true
	m.sweepCPU += cpu
	for _, x := range m.list {
		if !m.sweepSeen[x.key] {
			return
		}
	}
	m.stats.Sweeps++
	m.stats.SweepDuration = time.Since(m.sweepStart)
	m.stats.SweepCPU = m.sweepCPU
	m.sweepStart, m.sweepCPU = time.Now(), 0
	clear(m.sweepSeen)
}

// wantRefresh asks the discovery loop for a discovery now.
func (m *Manager) wantRefresh() {
	m.refreshWanted.Store(true)
	select {
	case m.refreshNow <- struct{}{}:
	default:
	}
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

// Run discovers and samples until ctx ends, then closes everything. The
// Scheduler runs every namespace's jobs within the one CPU budget: the
// cheap path (counters and a LISTEN-only dump) every interval, rare and
// full dumps as the budget allows, namespaces with recent findings first
// when it is short. Discovery runs every Refresh, and at once when a
// namespace's processes and bind mount are found gone.
func (m *Manager) Run(ctx context.Context) {
	defer m.Close()
	m.refreshLogged()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			t := time.NewTimer(m.cfg.Refresh)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-m.refreshNow:
				t.Stop()
			}
			m.refreshWanted.Store(false)
			m.refreshLogged()
		}
	}()
	m.sch.Run(ctx)
	cancel()
	wg.Wait()
}
