//go:build linux

package collector

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// burnOutside burns share of one core on a goroutine of its own, outside
// any job (as scrapes, discovery and the runtime do in the agent), until
// ctx ends.
func burnOutside(ctx context.Context, wg *sync.WaitGroup, share float64) {
	wg.Go(func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		const period = 50 * time.Millisecond
		for ctx.Err() == nil {
			c0 := threadCPU()
			for threadCPU()-c0 < time.Duration(share*float64(period)) {
				for range 10000 {
				}
			}
			time.Sleep(period - time.Duration(share*float64(period)))
		}
	})
}

// settleHeap collects the garbage earlier tests of the package left (some
// build heaps of 100k sockets and more) before a test measures the whole
// process's CPU, so that the collector's background work on it does not
// count as the process's over the measured seconds.
func settleHeap() {
	runtime.GC()
	debug.FreeOSMemory()
}

// runBurners runs a Scheduler over ten burners for d (or until until, if
// not nil, returns true, asked every 50 ms) while CPU is burnt outside the
// jobs, and returns the process's share of a core and the burners.
func runBurners(t *testing.T, sch *Scheduler, listen time.Duration, outside float64, d time.Duration, until func() bool) (float64, []*burner) {
	t.Helper()
	var bs []*burner
	for i := range 10 {
		b := &burner{cost: map[Kind]time.Duration{Listen: listen, Rare: 4 * time.Millisecond, Full: 6 * time.Millisecond}, runs: map[Kind]int{}}
		bs = append(bs, b)
		sch.Add(string(rune('a'+i)), b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	settleHeap()
	p0, w0 := processCPU(), time.Now()
	burnOutside(ctx, &wg, outside)
	if until != nil {
		wg.Go(func() {
			tk := time.NewTicker(50 * time.Millisecond)
			defer tk.Stop()
			for ctx.Err() == nil && !until() {
				select {
				case <-ctx.Done():
				case <-tk.C:
				}
			}
			cancel()
		})
	}
	sch.Run(ctx)
	wg.Wait()
	return (processCPU() - p0).Seconds() / time.Since(w0).Seconds(), bs
}

// With CountProcess, CPU the process burns outside the jobs comes out of
// the budget: dumps give way, the process as a whole stays inside it.
func TestSchedulerCountsProcessCPU(t *testing.T) {
	const budget = 0.2
	sch := NewScheduler(SchedulerOptions{Interval: 100 * time.Millisecond, Budget: budget, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	sch.CountProcess()
	// Cheap path 10 x 0.5 ms every 100 ms (0.05 of a core), 0.1 burnt
	// outside: dumps, which alone would take the rest of the budget and
	// more, get what is left.
	share, bs := runBurners(t, sch, 500*time.Microsecond, 0.1, 5*time.Second, nil)
	dumps, deliveries := 0, 0
	for _, b := range bs {
		dumps += b.count(Rare) + b.count(Full)
		// Every kind delivers the cheap path's data.
		deliveries += b.count(Listen) + b.count(Rare) + b.count(Full)
	}
	t.Logf("process %.3f of a core (budget %.2f), %d dumps, %d deliveries of the cheap path's data, plan %+v", share, budget, dumps, deliveries, sch.Plan())
	// The account starts with no credit and lets the process run at most
	// one dump over it; 10% for the test's own goroutines.
	if share > budget*1.1+0.006/5 {
		t.Errorf("the process used %.3f of a core, budget %.2f", share, budget)
	}
	// Every 100 ms for 5 s would be 500: the cheap path keeps most of its
	// pace (the machine is shared: a generous margin).
	if dumps == 0 || deliveries < 300 {
		t.Errorf("%d dumps and %d deliveries of the cheap path's data in 5 s: the process account starves the jobs", dumps, deliveries)
	}
}

// When CPU burnt outside the jobs leaves the cheap path too little, its
// achieved interval says so, and so does Exceeded, although its plan
// (from its own costs) holds the interval.
func TestSchedulerFlagsAchievedInterval(t *testing.T) {
	const budget = 0.1
	sch := NewScheduler(SchedulerOptions{Interval: 100 * time.Millisecond, Budget: budget, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	sch.CountProcess()
	// 0.15 of a core outside the jobs: more than the budget. The cheap
	// path waits once the process is fastSlackSeconds over (after about
	// 2.5 s), its achieved interval grows over the next second, and
	// Exceeded follows exceededHold later: about 5 s on an idle machine,
	// so the test waits for it up to 20 s.
	listenPlan := func() KindPlan {
		for _, p := range sch.Plan() {
			if p.Kind == Listen {
				return p
			}
		}
		return KindPlan{}
	}
	start := time.Now()
	share, _ := runBurners(t, sch, 300*time.Microsecond, 0.15, 20*time.Second, func() bool {
		p := listenPlan()
		return p.Exceeded && p.Achieved >= time.Duration(achievedSet*float64(p.Asked))
	})
	listen := listenPlan()
	t.Logf("after %v: process %.3f of a core, cheap path %+v", time.Since(start).Round(10*time.Millisecond), share, listen)
	if listen.Planned > listen.Asked {
		t.Errorf("cheap path planned at %v: its own cost (0.03 of a core) fits, the plan should hold %v", listen.Planned, listen.Asked)
	}
	if listen.Achieved < time.Duration(achievedSet*float64(listen.Asked)) || !listen.Exceeded {
		t.Errorf("cheap path achieved %v (asked %v), exceeded %v: want it flagged", listen.Achieved, listen.Asked, listen.Exceeded)
	}
}

// spiky is a burner whose every twentieth cheap job also does 10 ms of
// work for the whole node (as the read of the eBPF event maps).
type spiky struct {
	*burner
	n int
}

func (s *spiky) RunJob(k Kind) (time.Duration, error) {
	if k == Listen {
		s.n++
		if s.n%20 == 0 {
			c0 := threadCPU()
			for threadCPU()-c0 < 10*time.Millisecond {
				for range 10000 {
				}
			}
		}
	}
	return s.burner.RunJob(k)
}

// With the process account, node-wide work a cheap job happens to do is
// left to the process account: the cheap path keeps its pace, the dumps
// give way.
func TestSchedulerChargesOutliersToTheProcess(t *testing.T) {
	const budget = 0.1
	sch := NewScheduler(SchedulerOptions{Interval: 100 * time.Millisecond, Budget: budget, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	sch.CountProcess()
	var bs []*spiky
	for i := range 10 {
		b := &spiky{burner: &burner{cost: map[Kind]time.Duration{Listen: 200 * time.Microsecond, Rare: 2 * time.Millisecond, Full: 3 * time.Millisecond}, runs: map[Kind]int{}}}
		bs = append(bs, b)
		sch.Add(string(rune('a'+i)), b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	settleHeap()
	p0, w0 := processCPU(), time.Now()
	sch.Run(ctx)
	share := (processCPU() - p0).Seconds() / time.Since(w0).Seconds()
	var listen KindPlan
	for _, p := range sch.Plan() {
		if p.Kind == Listen {
			listen = p
		}
	}
	deliveries := 0
	for _, b := range bs {
		deliveries += b.count(Listen) + b.count(Rare) + b.count(Full)
	}
	t.Logf("process %.3f of a core, cheap path %+v, %d deliveries", share, listen, deliveries)
	// Uncapped, the spikes alone (10 x 10 ms every 2 s, 0.05 of a core)
	// would cost the cheap path 0.07 of a core against its 0.06.
	if listen.Planned > listen.Asked {
		t.Errorf("cheap path planned at %v, asked %v: the spikes were charged to it", listen.Planned, listen.Asked)
	}
	// While the cheap path and its spikes (0.07 of a core) leave part of
	// the budget unused, the account banks it (up to procCreditSeconds of
	// the budget) and dumps may spend it later: over 5 s the process may
	// be that much over on top of 10%.
	if limit := budget*1.1 + procCreditSeconds*budget/5; share > limit {
		t.Errorf("the process used %.3f of a core, budget %.2f (at most %.3f over 5 s)", share, budget, limit)
	}
	if deliveries < 300 {
		t.Errorf("%d deliveries of the cheap path's data in 5 s, want most of 500", deliveries)
	}
}

// With the process account the cheap path is never switched off for dumps
// that would stand in for it: the account holds dumps back first.
func TestPlanKeepsTheCheapPathWithTheProcessAccount(t *testing.T) {
	costs := [][]float64{{0.0002, 0.005, 0.02}} // 100k sockets, host mode
	asked := func(int) time.Duration { return time.Second }
	plans, _ := planKinds(SamplerJobs(0), 0.05, asked, costs)
	if !plans[0].Off {
		t.Fatalf("without the process account the cheap path is switched off at 100k (full dumps every second): %+v", plans[0])
	}
	plans, _ = planKindsReserving(SamplerJobs(0), 0.05, 0.01, asked, costs)
	if plans[0].Off || plans[0].Planned != time.Second {
		t.Errorf("with the process account: cheap path %+v, want on, every second", plans[0])
	}
	// The reserve comes out of what the cheap path leaves: full dumps of
	// 20 ms (beyond the cheap path's 0.2 ms) in 0.05-0.0002-0.01 of a core.
	if got := plans[len(plans)-1].Planned.Seconds(); got < 0.0198/0.0398*0.999 && got != 1 {
		t.Errorf("full dumps every %.3fs", got)
	}
}

// A dump still running burns the process's CPU before its job ends: the
// process account attributes that CPU to the dumps, so the cheap path's
// balance does not grow with it, and settles when the dump's cost is in.
func TestProcessAccountAttributesADumpInFlight(t *testing.T) {
	const budget = 0.05
	sch := NewScheduler(SchedulerOptions{Interval: 100 * time.Millisecond, Budget: budget, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	sch.CountProcess()
	burn := func(d time.Duration) time.Duration {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c0 := threadCPU()
		for threadCPU()-c0 < d {
			for range 10000 {
			}
		}
		return threadCPU() - c0
	}
	sch.mu.Lock()
	start := time.Now()
	sch.processLocked(start)
	sch.dumpStart, sch.dumpSoFar = start, 0
	sch.mu.Unlock()
	burnt := burn(300 * time.Millisecond) // the dump, as yet unfinished
	sch.mu.Lock()
	sch.processLocked(time.Now())
	fastDuring, procDuring := sch.fastDebt, sch.procDebt
	sch.mu.Unlock()
	if procDuring < 0.2 {
		t.Fatalf("process balance %.3f s after burning %v: the account missed the dump in flight", procDuring, burnt)
	}
	if credit := fastSlackSeconds * budget; fastDuring > credit {
		t.Errorf("cheap path's balance %.3f s while a dump burnt %v: over its slack of %.3f s, the cheap path would wait on a dump", fastDuring, burnt, credit)
	}
	// The dump ends: its cost settles what was attributed to it. The cheap
	// path's balance neither jumps down by the dump's CPU (forgiving the
	// cheap path) nor up.
	time.Sleep(2 * processEvery) // the account reads the clock at most that often
	sch.mu.Lock()
	sch.dumpEndedLocked(burnt)
	sch.processLocked(time.Now())
	fastAfter := sch.fastDebt
	sch.mu.Unlock()
	if d := fastAfter - fastDuring; d < -0.05 || d > 0.05 {
		t.Errorf("cheap path's balance moved %.3f s when the dump's cost came in (during %.3f, after %.3f)", d, fastDuring, fastAfter)
	}
}
