package collector

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"
)

// JobKind describes one kind of periodic kernel work the Scheduler runs for
// every target: a dump of some states, a read of the kernel counters, a
// sweep for socket details, a read of a BPF map. Kinds are planned in the
// order given: earlier kinds are served first out of the budget.
type JobKind struct {
	// Kind identifies the work; the Runner is asked to run it.
	Kind Kind
	// Share is the largest part of what the kinds planned before it leave
	// of the CPU budget that the jobs of this kind, over all targets, may
	// use; zero means all of it.
	Share float64
	// Interval is the interval asked for between two jobs of this kind on
	// one target; zero means the Scheduler's Interval.
	Interval time.Duration
	// Covers lists kinds whose work a job of this kind also does (a full
	// dump reads everything a rare one does). A job of this kind counts as
	// a job of each of them on its target; and when the plan runs this
	// kind at least as often as a covered kind, the covered kind is
	// switched off and its share goes to this one.
	Covers []Kind
	// Fast jobs run on a goroutine of their own, so that a long job of
	// another kind (a dump of a million sockets) never delays them.
	Fast bool
}

// SamplerJobs returns the kinds of work a Sampler does, in planning order:
// the cheap path (kernel counters and a LISTEN-only dump, which skips the
// established hash) every interval on its own goroutine, then rare dumps,
// then the half-open sweep every halfOpen (none when halfOpen is not
// positive; see SweepInterval), then full dumps with what is left. Another
// kind of work plugs in here with its own share, and in Sampler.Sample.
func SamplerJobs(halfOpen time.Duration) []JobKind {
	jobs := []JobKind{
		{Kind: Listen, Share: listenShare, Fast: true},
		{Kind: Rare, Share: rareShare, Covers: []Kind{Listen}},
	}
	if halfOpen > 0 {
		// Nothing else reads tcp_info, so the sweep covers no kind and
		// no kind covers it.
		jobs = append(jobs, JobKind{Kind: HalfOpen, Share: sweepShare, Interval: halfOpen})
	}
	return append(jobs, JobKind{Kind: Full, Covers: []Kind{Rare, Listen}})
}

// Budget shares of the Sampler's kinds.
const (
	// listenShare is the largest part of the budget the cheap path may
	// take. It detects SYN floods and accept-queue overflows within
	// seconds in every namespace, so it is served first; in the running
	// agent at 100 namespaces it costs about 0.17-0.2 ms of CPU per
	// namespace with its jobs run in bursts (BENCHMARKS.md), so 0.6 of
	// the default budget holds one second for about 150 namespaces, and
	// stretches beyond.
	listenShare = 0.6
	// rareShare is the largest part of what the cheap path leaves that
	// rare dumps may take; full dumps (the only source of ESTABLISHED and
	// TIME_WAIT, which the port exhaustion detector needs) keep the rest.
	rareShare = 0.5
)

// ewmaWeight weighs the latest cost in a job's moving average.
const ewmaWeight = 0.3

// maxPlanned caps a planned interval, so that a kind starved of budget
// still says how long it waits.
const maxPlanned = time.Hour

// ErrNotReady is returned by a Runner's RunJob when a job cannot run yet
// (the half-open sweep before the target's first full dump names listening
// ports): the Scheduler measures nothing and asks again after its Interval,
// not the kind's.
var ErrNotReady = errors.New("job not ready: no full sample yet")

// Runner does the scheduled work of one target.
type Runner interface {
	// RunJob runs one job of kind k. It returns the CPU the job used on
	// threads other than the calling one (the Scheduler measures the
	// calling thread itself), such as reads done inside another network
	// namespace.
	RunJob(k Kind) (otherCPU time.Duration, err error)
	// Urgent reports recent findings: when the budget cannot serve every
	// target at the interval asked, urgent targets are served first.
	Urgent() bool
}

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	// Interval is the interval asked for by kinds without their own;
	// default 1s.
	Interval time.Duration
	// Budget is the fraction of one core all jobs together may use on
	// average; default 0.05.
	Budget float64
	// Kinds are the kinds of work, in planning order; default
	// SamplerJobs(0), without the half-open sweep.
	Kinds []JobKind
	// Logger receives one line whenever the budget starts or stops holding
	// a kind's asked interval; default slog.Default().
	Logger *slog.Logger
}

// KindPlan is the plan in force for one kind of work.
type KindPlan struct {
	Kind Kind
	// Asked is the interval asked for; Planned the interval each target
	// gets its job at, which the budget may stretch.
	Asked, Planned time.Duration
	// Cost is the CPU one round of this kind over every target costs, in
	// seconds (for covering kinds, beyond what the covered kinds cost).
	Cost float64
	// Rate is the CPU per second the kind may use.
	Rate float64
	// Targets is the number of targets.
	Targets int
	// Off is set when a covering kind runs at least as often: this kind's
	// own jobs then run only to measure their cost once per target.
	Off bool
	// Exceeded is set while the budget cannot hold the asked interval:
	// planned more than 10% over asked, or achieved (Achieved) more than
	// 15% over; cleared when planned is back at asked and achieved within
	// 5% of it.
	Exceeded bool
	// Achieved is the moving average of the time between two deliveries
	// of the kind's data to a target (0 before any).
	Achieved time.Duration
}

// schedTarget is one target's scheduling state.
type schedTarget struct {
	key   string
	r     Runner
	order uint64
	// Per kind index: the start of the latest job (or of a covering job),
	// the moving average of its cost in seconds, and whether it was
	// measured.
	last     []time.Time
	cost     []float64
	measured []bool
	running  []bool
	// warm is set once a Fast kind's first job ran: that one dials and
	// opens what later jobs reuse, so it is charged but not taken as the
	// kind's cost.
	warm []bool
	// urgent is what the Runner's Urgent said after its latest job.
	urgent bool
}

// Scheduler runs the periodic kernel work of many targets inside one CPU
// budget: the same code for the agent's own namespace and for every
// namespace of the node. Each kind of work has its own pacing: its jobs
// charge their measured CPU to the kind's account, which drains at the
// kind's share of the budget; a kind runs a job when its account is empty
// and a target is due, the target that waited longest first (targets with
// recent findings count their wait twice). A plan, recomputed from the
// measured costs, says what interval each kind achieves.
type Scheduler struct {
	cfg   SchedulerOptions
	kinds []JobKind
	idx   map[Kind]int

	mu      sync.Mutex
	targets map[string]*schedTarget
	nextOrd uint64
	plan    []KindPlan
	avail   []float64 // CPU seconds per second each kind's account drains
	debt    []float64 // each kind's account, CPU seconds
	drained time.Time
	dirty   bool
	planned time.Time
	// wake holds one channel per lane (fast, then the other).
	wake [2]chan struct{}

	// overhead is the process's CPU per second of CPU its jobs measured
	// (thread switches into namespaces, discovery, the runtime, scrapes),
	// at least 1: every cost is scaled by it, so that the budget holds for
	// the whole process. calAt, calProc and calJobs start the current
	// calibration period; jobCPU sums the jobs' measured CPU.
	// since holds, per kind, when the plan first disagreed with the
	// published Exceeded state (zero while it agrees).
	since []time.Time

	overhead         float64
	calAt            time.Time
	calProc, calJobs time.Duration
	jobCPU           time.Duration
	// procRatio is the process's CPU per second of wall time over the
	// latest calibration period (0 before one).
	procRatio float64
	// outside is the process's CPU per second outside the jobs, a moving
	// average over calibration periods.
	outside float64

	// achieved holds, per kind, the moving average of the time between
	// two deliveries of the kind's data to a target.
	achieved []float64

	// The process account (see CountProcess): whether it is kept, the
	// process's CPU and the time of its latest reading, and the CPU
	// seconds the process used beyond the budget since (negative: what it
	// left unused, down to -procCredit).
	process  bool
	procAt   time.Time
	procCPU  time.Duration
	procDebt float64
	// fastDebt is the same balance without the dumps' CPU; dumpCPU sums
	// the CPU of the jobs of kinds that are not Fast, procDumps its value
	// at procAt.
	fastDebt           float64
	dumpCPU, procDumps time.Duration
	// dumpStart is when the dump in flight started (zero when none), and
	// dumpSoFar the CPU the process account has attributed to it so far:
	// a long dump's CPU shows in the process's time before its job ends.
	dumpStart time.Time
	dumpSoFar float64
}

// NewScheduler returns a Scheduler; add targets with Add and start it with
// Run.
func NewScheduler(cfg SchedulerOptions) *Scheduler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 0.05
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = SamplerJobs(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Scheduler{
		cfg:      cfg,
		kinds:    cfg.Kinds,
		idx:      map[Kind]int{},
		targets:  map[string]*schedTarget{},
		debt:     make([]float64, len(cfg.Kinds)),
		achieved: make([]float64, len(cfg.Kinds)),
		wake:     [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)},
		dirty:    true,
		overhead: 1,
	}
	for i, k := range cfg.Kinds {
		s.idx[k.Kind] = i
	}
	s.mu.Lock()
	s.replanLocked(time.Now())
	s.mu.Unlock()
	return s
}

// Add starts scheduling r under key; a key already present is replaced.
func (s *Scheduler) Add(key string, r Runner) {
	n := len(s.kinds)
	s.mu.Lock()
	s.nextOrd++
	s.targets[key] = &schedTarget{key: key, r: r, order: s.nextOrd,
		last: make([]time.Time, n), cost: make([]float64, n), measured: make([]bool, n), running: make([]bool, n), warm: make([]bool, n)}
	s.dirty = true
	s.mu.Unlock()
	s.poke()
}

// Remove stops scheduling key. A job of it already running finishes.
func (s *Scheduler) Remove(key string) {
	s.mu.Lock()
	delete(s.targets, key)
	s.dirty = true
	s.mu.Unlock()
}

// Plan returns the plan in force, one entry per kind in planning order.
func (s *Scheduler) Plan() []KindPlan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.plan)
}

// Planned returns the interval at which each target gets the data of kind
// k: the kind's planned interval, or that of the kind covering it when it
// is switched off. Unknown kinds return 0.
func (s *Scheduler) Planned(k Kind) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.idx[k]
	if !ok || len(s.plan) == 0 {
		return 0
	}
	p := s.plan[i].Planned
	if s.plan[i].Off {
		for j := range s.kinds {
			if !s.plan[j].Off && slices.Contains(s.kinds[j].Covers, k) {
				p = s.plan[j].Planned
			}
		}
	}
	return p
}

// poke wakes both lanes.
func (s *Scheduler) poke() {
	for _, w := range s.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// estimate returns a target's cost of kind i: its measurement, or zero
// until it is measured, so that every kind starts at its asked interval on
// its own account and is measured there.
func (s *Scheduler) estimate(t *schedTarget, i int) float64 {
	if t.measured[i] {
		return t.cost[i]
	}
	return 0
}

// planKinds computes the plan from per-target costs: each kind in order
// gets its share of what the kinds before it left of the budget; its interval is
// the asked one, or longer when a round over every target costs more than
// the share allows. A kind that covers others pays only its cost beyond
// theirs, and switches off a covered kind it would run at least as often.
func planKinds(kinds []JobKind, budget float64, asked func(i int) time.Duration, costs [][]float64) (plans []KindPlan, avail []float64) {
	return planKindsReserving(kinds, budget, -1, asked, costs)
}

// planKindsReserving is planKinds for the process account (reserve >= 0):
// reserve (CPU seconds per second) is taken out of the budget after the
// Fast kinds, the process's CPU outside the jobs, which the process
// account makes the dumps give way to; and a Fast kind is never switched
// off, since the dumps that would stand in for it are what the process
// account holds back first.
func planKindsReserving(kinds []JobKind, budget, reserve float64, asked func(i int) time.Duration, costs [][]float64) (plans []KindPlan, avail []float64) {
	keepFast := reserve >= 0
	reserve = max(reserve, 0)
	n := len(kinds)
	plans = make([]KindPlan, n)
	avail = make([]float64, n)
	idx := map[Kind]int{}
	for i, k := range kinds {
		idx[k.Kind] = i
	}
	secs := func(v float64) time.Duration {
		if v >= maxPlanned.Seconds() || math.IsNaN(v) {
			return maxPlanned
		}
		return time.Duration(v * float64(time.Second))
	}
	left := budget
	reserved := false
	for i, k := range kinds {
		if !k.Fast && !reserved {
			left, reserved = max(left-reserve, 0), true
		}
		p := &plans[i]
		p.Kind, p.Asked, p.Targets = k.Kind, asked(i), len(costs)
		share := k.Share
		// covered returns the covered kinds still on.
		covered := func() []int {
			var on []int
			for _, c := range k.Covers {
				if j, ok := idx[c]; ok && j < i && !plans[j].Off {
					on = append(on, j)
				}
			}
			return on
		}
		round := func(on []int) float64 {
			var sum float64
			for _, tc := range costs {
				base := 0.0
				for _, j := range on {
					base = max(base, tc[j])
				}
				sum += max(tc[i]-base, 0)
			}
			return sum
		}
		allot := func() float64 {
			a := left
			if share > 0 {
				a = min(left, share*left)
			}
			return max(a, 1e-9)
		}
		on := covered()
		a := allot()
		cost := round(on)
		planned := max(p.Asked, secs(cost/a))
		merged := false
		for _, j := range on {
			if keepFast && kinds[j].Fast {
				continue
			}
			if plans[j].Planned >= planned {
				plans[j].Off = true
				left += plans[j].Rate
				plans[j].Rate = 0
				if share > 0 {
					share += kinds[j].Share
				}
				merged = true
			}
		}
		if merged {
			on = covered()
			a = allot()
			cost = round(on)
			planned = max(p.Asked, secs(cost/a))
		}
		p.Cost = cost
		p.Planned = planned
		p.Rate = cost / planned.Seconds()
		avail[i] = a
		left = max(left-p.Rate, 0)
	}
	return plans, avail
}

// replanLocked recomputes the plan and logs kinds whose asked interval the
// budget starts or stops holding.
func (s *Scheduler) replanLocked(now time.Time) {
	costs := make([][]float64, 0, len(s.targets))
	waits := make([]time.Duration, len(s.kinds))
	scale := s.scaleLocked()
	for _, t := range s.targets {
		tc := make([]float64, len(s.kinds))
		for i := range s.kinds {
			tc[i] = s.estimate(t, i) * scale
			if !t.last[i].IsZero() {
				waits[i] = max(waits[i], now.Sub(t.last[i]))
			}
		}
		costs = append(costs, tc)
	}
	asked := func(i int) time.Duration {
		if iv := s.kinds[i].Interval; iv > 0 {
			return iv
		}
		return s.cfg.Interval
	}
	reserve := -1.0
	if s.process {
		reserve = s.outside
	}
	plans, avail := planKindsReserving(s.kinds, s.cfg.Budget, reserve, asked, costs)
	// A kind switched off gets its data with the covering kind's jobs:
	// what those deliver is what it achieves (as Achieved reports).
	from := make([]int, len(plans))
	for i := range plans {
		from[i] = i
		if plans[i].Off {
			for j := range s.kinds {
				if j != i && !plans[j].Off && slices.Contains(s.kinds[j].Covers, s.kinds[i].Kind) {
					from[i] = j
				}
			}
		}
		plans[i].Achieved = secondsDuration(s.achieved[from[i]])
	}
	if len(s.since) != len(plans) {
		s.since = make([]time.Time, len(plans))
	}
	for i := range plans {
		p := &plans[i]
		was := len(s.plan) > i && s.plan[i].Exceeded
		var now2 bool
		// What targets get: the moving average of the gaps, or longer
		// when a target has waited longer than that by now.
		got := max(s.achieved[from[i]], waits[from[i]].Seconds())
		switch {
		case p.Off && was:
			// Its data comes with the covering kind's jobs: only
			// what they deliver counts.
			now2 = got > achievedClear*p.Asked.Seconds()
		case p.Off:
			now2 = got > achievedSet*p.Asked.Seconds()
		case was:
			now2 = p.Planned > p.Asked || got > achievedClear*p.Asked.Seconds()
		default:
			now2 = float64(p.Planned) > 1.1*float64(p.Asked) || got > achievedSet*p.Asked.Seconds()
		}
		// A change must hold for exceededHold before it is published and
		// logged: costs measured one target at a time make the plan
		// waver at first.
		p.Exceeded = was
		if now2 == was {
			s.since[i] = time.Time{}
			continue
		}
		if s.since[i].IsZero() {
			s.since[i] = now
		}
		if now.Sub(s.since[i]) < exceededHold {
			continue
		}
		s.since[i] = time.Time{}
		p.Exceeded = now2
		if p.Exceeded {
			s.cfg.Logger.Info("the CPU budget cannot hold the sampling interval asked; sampling less often",
				"kind", p.Kind, "asked", p.Asked, "planned", p.Planned.Round(time.Millisecond),
				"achieved", secondsDuration(got).Round(time.Millisecond), "targets", p.Targets, "cpu_budget", s.cfg.Budget)
		} else {
			s.cfg.Logger.Info("the CPU budget holds the sampling interval asked again", "kind", p.Kind, "asked", p.Asked, "targets", p.Targets)
		}
	}
	s.plan, s.avail = plans, avail
	s.dirty = false
	s.planned = now
}

// Calibration of the overhead: over periods of calibrateEvery, bounded to
// [1, maxOverhead].
const (
	calibrateEvery = 10 * time.Second
	maxOverhead    = 4
)

// calibrateLocked updates the overhead from the process's CPU and the
// jobs' over the latest period.
func (s *Scheduler) calibrateLocked(now time.Time) {
	if s.calAt.IsZero() {
		s.calAt, s.calProc, s.calJobs = now, processCPU(), s.jobCPU
		return
	}
	if now.Sub(s.calAt) < calibrateEvery {
		return
	}
	proc := processCPU()
	dp, dj := proc-s.calProc, s.jobCPU-s.calJobs
	wall := now.Sub(s.calAt).Seconds()
	s.procRatio = dp.Seconds() / wall
	out := max(dp-dj, 0).Seconds() / wall
	if s.outside == 0 {
		s.outside = out
	} else {
		s.outside = 0.5*s.outside + 0.5*out
	}
	s.dirty = true
	if dj >= 10*time.Millisecond && dp > 0 {
		r := min(max(dp.Seconds()/dj.Seconds(), 1), maxOverhead)
		s.overhead = 0.5*s.overhead + 0.5*r
		s.dirty = true
	}
	s.calAt, s.calProc, s.calJobs = now, proc, s.jobCPU
}

// Overhead returns the process's CPU per second of CPU its jobs measured,
// as the plan currently scales costs by.
func (s *Scheduler) Overhead() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overhead
}

// drainLocked empties the accounts by the time passed.
func (s *Scheduler) drainLocked(now time.Time) {
	if !s.drained.IsZero() {
		dt := now.Sub(s.drained).Seconds()
		for i := range s.debt {
			s.debt[i] = max(s.debt[i]-s.avail[i]*dt, 0)
		}
	}
	s.drained = now
}

// account returns the kind whose account a job of kind i is paced by: its
// own, or for a kind switched off (whose jobs run only to be measured) that
// of an active kind covering it, which holds its share of the budget.
func (s *Scheduler) account(i int) int {
	if !s.plan[i].Off {
		return i
	}
	for j, k := range s.kinds {
		if !s.plan[j].Off && slices.Contains(k.Covers, s.kinds[i].Kind) {
			return j
		}
	}
	return i
}

// fastBurst is how far ahead of its share, in seconds of wall time at
// that share, the cheap path may run its jobs back to back before its lane
// waits for the account to drain.
const fastBurst = 250 * time.Millisecond

// exceededHold is how long a change of a kind's Exceeded state must hold
// before it is published and logged.
const exceededHold = 2 * time.Second

// urgentWeight multiplies the wait of a target with recent findings.
const urgentWeight = 2

// pickLocked returns the next job of the lane (fast or not) due at now, or
// the time to look again. It looks at every target once per kind of the
// lane: O(targets) per job.
func (s *Scheduler) pickLocked(fast bool, now time.Time) (*schedTarget, int, time.Time) {
	s.calibrateLocked(now)
	if s.dirty || now.Sub(s.planned) >= 250*time.Millisecond {
		s.replanLocked(now)
	}
	s.drainLocked(now)
	s.processLocked(now)
	next := now.Add(time.Second)
	// Covering kinds first: a full dump due at once makes the rare one
	// unnecessary.
	for i := len(s.kinds) - 1; i >= 0; i-- {
		k := &s.kinds[i]
		if k.Fast != fast {
			continue
		}
		p := &s.plan[i]
		// The cheap path runs its jobs in bursts of up to fastBurst of
		// its share before it waits for its account to drain: the same
		// rate, with a lane that sleeps and wakes a few times a second
		// rather than after every job. At a hundred namespaces a wake
		// per job cost more CPU than the jobs (BENCHMARKS.md). Only
		// on its own account: switched off, it is paced by a dump's.
		allow := 0.0
		if k.Fast && !p.Off {
			allow = fastBurst.Seconds()
		}
		if a := s.account(i); s.debt[a] > allow*s.avail[a] {
			next = minTime(next, now.Add(time.Duration(s.debt[a]/s.avail[a]*float64(time.Second))))
			continue
		}
		var best *schedTarget
		var bestPrio float64
		for _, t := range s.targets {
			if t.running[i] {
				continue
			}
			// A kind switched off runs once per target to be
			// measured, and again only where the kind covering it has
			// not delivered for fastFloor asked intervals (held back
			// by the process account, or failing).
			if p.Off && t.measured[i] && now.Sub(t.last[i]) < fastFloor*p.Asked {
				continue
			}
			if t.last[i].IsZero() {
				if best == nil || !best.last[i].IsZero() || t.order < best.order {
					best, bestPrio = t, math.Inf(1)
				}
				continue
			}
			due := t.last[i].Add(p.Asked)
			if due.After(now) {
				next = minTime(next, due)
				continue
			}
			prio := now.Sub(t.last[i]).Seconds()
			if t.urgent {
				prio *= urgentWeight
			}
			if best == nil || prio > bestPrio || (prio == bestPrio && t.order < best.order) {
				best, bestPrio = t, prio
			}
		}
		if best == nil {
			continue
		}
		if w := s.processWait(fast, now.Sub(best.last[i]), p.Asked, s.estimate(best, i)); w > 0 {
			// The whole process is over the budget: this lane waits
			// (see CountProcess).
			return nil, 0, minTime(next, now.Add(max(w, minProcessWait)))
		}
		if !best.last[i].IsZero() {
			s.noteAchievedLocked(i, now.Sub(best.last[i]))
		}
		return best, i, now
	}
	return nil, 0, next
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// done records a finished job: its cost is charged to its kind's account
// (and, for a covering kind, the covered kinds' estimates to theirs, since
// it stands in for their jobs), and whether its target is urgent now.
func (s *Scheduler) done(t *schedTarget, i int, start time.Time, cost time.Duration, ok, urgent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.running[i] = false
	t.urgent = urgent
	c := s.chargeLocked(t, i, cost.Seconds())
	s.jobCPU += secondsDuration(c)
	if !s.kinds[i].Fast {
		s.dumpEndedLocked(cost)
	}
	s.drainLocked(time.Now())
	base := 0.0
	for _, ck := range s.kinds[i].Covers {
		if j, found := s.idx[ck]; found {
			if !s.plan[j].Off {
				e := s.estimate(t, j)
				base = max(base, e)
				s.debt[j] += min(e, c) * s.scaleLocked()
			}
			if ok {
				t.last[j] = start
			}
		}
	}
	s.debt[s.account(i)] += max(c-base, 0) * s.scaleLocked()
	if !ok {
		return
	}
	switch {
	case s.kinds[i].Fast && !t.warm[i]:
		t.warm[i] = true
	case !t.measured[i]:
		t.cost[i], t.measured[i] = c, true
		s.dirty = true
	default:
		t.cost[i] = (1-ewmaWeight)*t.cost[i] + ewmaWeight*c
	}
}

// retrySoon makes a job that was not ready due again one Interval after
// its start, however long its kind's asked interval.
func (s *Scheduler) retrySoon(t *schedTarget, i int, start time.Time) {
	asked := s.kinds[i].Interval
	if asked <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.last[i].Equal(start) {
		t.last[i] = start.Add(min(s.cfg.Interval-asked, 0))
	}
}

// Run runs the jobs until ctx ends: the fast kinds on one goroutine, the
// others on the calling one. Each job runs locked to its OS thread, so
// that the thread's CPU time measures it.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.lane(ctx, true)
	}()
	s.lane(ctx, false)
	wg.Wait()
}

func (s *Scheduler) lane(ctx context.Context, fast bool) {
	wake := s.wake[1]
	if fast {
		wake = s.wake[0]
	}
	for ctx.Err() == nil {
		now := time.Now()
		s.mu.Lock()
		t, i, next := s.pickLocked(fast, now)
		if t != nil {
			t.running[i] = true
			t.last[i] = now
			if !fast {
				s.dumpStart, s.dumpSoFar = now, 0
			}
		}
		s.mu.Unlock()
		if t == nil {
			wait := time.Until(next)
			if wait < time.Millisecond {
				wait = time.Millisecond
			}
			tm := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			case <-wake:
				tm.Stop()
			}
			continue
		}
		// The lane holds its thread only while a job runs: a goroutine
		// locked to its thread while it waits makes every wake a
		// hand-off between two threads, which at a hundred small jobs
		// a second costs more CPU than the jobs (profiled at 100
		// namespaces; see BENCHMARKS.md).
		runtime.LockOSThread()
		cpu0 := threadCPU()
		other, err := t.r.RunJob(s.kinds[i].Kind)
		cost := threadCPU() - cpu0 + other
		runtime.UnlockOSThread()
		// Urgency changes with a job's findings (and expires with
		// time, which the target's next job sees): asked once per job,
		// outside the lock, since Runners take their own locks.
		s.done(t, i, now, cost, err == nil, t.r.Urgent())
		if errors.Is(err, ErrNotReady) {
			s.retrySoon(t, i, now)
		}
	}
}
