package collector

import (
	"math"
	"slices"
	"time"
)

// The process account. The kinds' accounts pace the jobs by their measured
// CPU, scaled by the process's overhead (calibrateLocked); what they miss
// (overhead that does not follow the jobs: discovery, scrapes, the
// runtime; an overhead estimate that lags) the process account catches.
// It keeps a balance of the process's own CPU time
// (CLOCK_PROCESS_CPUTIME_ID) against the budget, bounded by
// procCreditSeconds either way: while the process is over, dumps
// wait; the cheap path waits only when the process without its dumps is
// fastSlackSeconds over, so that the cheap path keeps its pace while dumps
// absorb the excess.
const (
	// procCreditSeconds bounds, in seconds of the budget, what the
	// account banks while the process uses less than the budget (and what
	// the cheap path's balance owes): at the default budget 0.2 s of CPU, about one full dump of a namespace that
	// walks a shared hash of a million sockets. A dump waits until the
	// account holds its estimated cost (or all it can bank), so that it
	// ends inside the budget.
	procCreditSeconds = 4
	// fastSlackSeconds is how far over the budget, in seconds of it, the
	// process may be before the cheap path waits too.
	fastSlackSeconds = 2
	// fastFloor: however far over the budget the process is, a target's
	// cheap path waits at most this many times its asked interval.
	fastFloor = 10
)

// outlierFactor: with the process account, a cheap job's cost beyond this
// many times its target's usual cost is charged to the process account
// alone, as CPU outside the jobs (see chargeLocked).
const outlierFactor = 4

// chargeLocked returns the part of a job's CPU (c seconds) that its kind's
// account pays and its cost estimate sees. With the process account, a
// cheap job that costs more than outlierFactor times its target's usual
// (measured) cost pays only that much: the excess is work the job
// happened to do for the whole node, such as the read of the eBPF event
// maps that serves every namespace for half a second, or a periodic
// read. That excess is still the process's CPU: the process account
// counts it, and the plan reserves it from what the cheap path leaves, so
// that dumps give way to it, not the cheap path.
func (s *Scheduler) chargeLocked(t *schedTarget, i int, c float64) float64 {
	if !s.process || !s.kinds[i].Fast || !t.measured[i] || t.cost[i] <= 0 {
		return c
	}
	return min(c, outlierFactor*t.cost[i])
}

// processEvery is how often, at most, the process account reads the
// process's CPU clock: a system call that sums over every thread, made on
// every pick otherwise (hundreds a second at a hundred namespaces). The
// balances lag by that much at most.
const processEvery = 10 * time.Millisecond

// minProcessWait is the shortest wait on the process account. The account
// drains by the budget less what the process goes on using, so the wait
// it computes is short of the real one; a floor keeps a lane from waking
// again and again to find it still over.
const minProcessWait = 25 * time.Millisecond

// Hysteresis of the achieved interval in Exceeded: set above achievedSet
// times the asked interval, cleared at achievedClear times.
const (
	achievedSet   = 1.15
	achievedClear = 1.05
)

// CountProcess makes the Scheduler hold the whole process's CPU time, not
// only its jobs', inside the budget (see the process account above). Call
// it before Run, in a process that runs one Scheduler and nothing else of
// note (the agent); tests that burn CPU of their own leave it off.
func (s *Scheduler) CountProcess() {
	s.mu.Lock()
	s.process = true
	s.mu.Unlock()
}

// processLocked brings the process account up to now. It keeps two
// balances: the whole process's (procDebt), which dumps wait on, and the
// process's without the dumps' CPU (fastDebt), which the cheap path waits
// on, so that a dump that overran never holds the cheap path back.
func (s *Scheduler) processLocked(now time.Time) {
	if !s.process {
		return
	}
	// A lane's now may be older than procAt (taken before the lock).
	if !s.procAt.IsZero() && now.Sub(s.procAt) < processEvery {
		return
	}
	cpu := processCPU()
	credit := procCreditSeconds * s.cfg.Budget
	if !s.procAt.IsZero() {
		dt := now.Sub(s.procAt).Seconds()
		used := (cpu - s.procCPU).Seconds()
		dumps := (s.dumpCPU - s.procDumps).Seconds()
		if !s.dumpStart.IsZero() {
			// A dump still running: its CPU so far, at most the time
			// since it started and what the process used, is the
			// dumps', not the cheap path's.
			add := min(max(now.Sub(s.dumpStart).Seconds()-s.dumpSoFar, 0), max(used-dumps, 0))
			s.dumpSoFar += add
			dumps += add
		}
		s.procDebt = max(s.procDebt+used-s.cfg.Budget*dt, -credit)
		// A burst beyond the credit's size (the first cheap job of every
		// namespace at start) is forgiven rather than repaid by seconds
		// without a cheap path.
		s.fastDebt = min(max(s.fastDebt+used-dumps-s.cfg.Budget*dt, -credit), credit)
	}
	s.procAt, s.procCPU, s.procDumps = now, cpu, s.dumpCPU
}

// dumpEndedLocked records the CPU of a dump that ended. What the process
// account attributed to the dump while it ran is settled: the next update
// counts only the rest of its CPU (or gives back what was attributed
// beyond it).
func (s *Scheduler) dumpEndedLocked(cost time.Duration) {
	s.dumpCPU += cost
	s.procDumps += secondsDuration(s.dumpSoFar)
	s.dumpStart, s.dumpSoFar = time.Time{}, 0
}

// processWait returns how long a job of the lane (fast or not), estimated
// to cost est seconds of CPU, must wait on the process account; 0: it may
// run now. A job of the cheap path whose target has waited fastFloor times
// its asked interval runs whatever the account says, so that detection
// slows down under pressure but never stops.
func (s *Scheduler) processWait(fast bool, waited, asked time.Duration, est float64) time.Duration {
	if !s.process {
		return 0
	}
	over := s.procDebt + min(est, procCreditSeconds*s.cfg.Budget)
	if fast {
		if waited >= fastFloor*asked {
			return 0
		}
		over = s.fastDebt - fastSlackSeconds*s.cfg.Budget
	}
	if over <= 0 {
		return 0
	}
	return secondsDuration(over / s.cfg.Budget)
}

// scaleLocked returns what job costs are multiplied by in the plan and the
// accounts: the process's overhead, or 1 with the process account, which
// plans the CPU outside the jobs as a rate of its own (Scheduler.outside)
// taken from what the cheap path leaves.
func (s *Scheduler) scaleLocked() float64 {
	if s.process {
		return 1
	}
	return s.overhead
}

// noteAchievedLocked records that a target got the data of kind i after
// gap, in the kind's moving average over about one round of the targets.
func (s *Scheduler) noteAchievedLocked(i int, gap time.Duration) {
	w := min(max(1/float64(max(len(s.targets), 1)), 0.02), 0.3)
	if s.achieved[i] == 0 {
		w = 1
	}
	s.achieved[i] = (1-w)*s.achieved[i] + w*gap.Seconds()
}

// Achieved returns the moving average of the time between two deliveries
// of kind k's data to a target: the kind's own, or that of the kind
// covering it when it is switched off. Unknown kinds and kinds not yet
// delivered twice return 0.
func (s *Scheduler) Achieved(k Kind) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.idx[k]
	if !ok {
		return 0
	}
	a := s.achieved[i]
	if len(s.plan) > i && s.plan[i].Off {
		for j := range s.kinds {
			if !s.plan[j].Off && slices.Contains(s.kinds[j].Covers, k) {
				a = s.achieved[j]
			}
		}
	}
	return secondsDuration(a)
}

// ProcessRatio returns the process's CPU time per second of wall time over
// the latest calibration period (every thread: sampling, scrapes,
// discovery, the runtime), 0 before one.
func (s *Scheduler) ProcessRatio() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procRatio
}

// secondsDuration converts seconds to a Duration, capped at maxPlanned.
func secondsDuration(v float64) time.Duration {
	if math.IsNaN(v) || v >= maxPlanned.Seconds() {
		return maxPlanned
	}
	return time.Duration(v * float64(time.Second))
}
