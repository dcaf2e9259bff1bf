package collector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

func near(got time.Duration, want float64) bool {
	return got.Seconds() > want*0.999 && got.Seconds() < want*1.001
}

// planOf plans the Sampler's kinds for targets of equal costs (listen,
// rare, full; seconds of CPU).
func planOf(n int, listen, rare, full float64) map[Kind]KindPlan {
	costs := make([][]float64, n)
	for i := range costs {
		costs[i] = []float64{listen, rare, full}
	}
	plans, _ := planKinds(SamplerJobs(0), 0.05, func(int) time.Duration { return time.Second }, costs)
	out := map[Kind]KindPlan{}
	for _, p := range plans {
		out[p.Kind] = p
	}
	return out
}

func spent(ps map[Kind]KindPlan) float64 {
	var r float64
	for _, p := range ps {
		r += p.Rate
	}
	return r
}

func TestPlanKinds(t *testing.T) {
	// Nothing measured: every kind at the asked interval, the covered
	// ones off (their jobs run once to be measured).
	p := planOf(1, 0, 0, 0)
	if !p[Listen].Off || !p[Rare].Off || p[Full].Off || p[Full].Planned != time.Second {
		t.Errorf("unmeasured: %+v", p)
	}
	// Host mode at 1M sockets: cheap path 0.3 ms, rare dump 0.17 s, full
	// 1.4 s. As before the cheap path: rare dumps at half the budget
	// (6.8 s), full dumps with the rest; the cheap path every second.
	p = planOf(1, 0.0003, 0.17, 1.4)
	if p[Listen].Off || p[Listen].Planned != time.Second {
		t.Errorf("1M: cheap path %+v, want every 1s", p[Listen])
	}
	if ri := p[Rare].Planned.Seconds(); ri < 6.7 || ri > 6.9 {
		t.Errorf("1M: rare every %.2fs, want 6.8s", ri)
	}
	if fi := p[Full].Planned.Seconds(); fi <= p[Rare].Planned.Seconds() || fi > 56 {
		t.Errorf("1M: full every %.2fs, want under 56s", fi)
	}
	if r := spent(p); r > 0.05*1.001 {
		t.Errorf("1M: %.4f of a core, budget 0.05", r)
	}
	// 100k sockets: every cycle a full dump at 1 s, nothing else, as the
	// Sampler always did.
	p = planOf(1, 0.0002, 0.005, 0.02)
	if !p[Listen].Off || !p[Rare].Off || p[Full].Planned != time.Second {
		t.Errorf("100k: %+v, want full dumps every second only", p)
	}
	// 50 namespaces whose dumps are dominated by the shared hash walk
	// (full 18.4 ms, rare 16 ms, cheap 0.3 ms): the cheap path every
	// second (15 ms/s), every dump full, spaced by the rest of the budget:
	// 50 x 18.1 ms / 0.035 = 25.9 s.
	p = planOf(50, 0.0003, 0.016, 0.0184)
	if p[Listen].Off || p[Listen].Planned != time.Second || !p[Rare].Off || !near(p[Full].Planned, 25.857) {
		t.Errorf("hash-bound: %+v, want cheap 1s, all full every 25.9s", p)
	}
	if r := spent(p); r > 0.05*1.001 {
		t.Errorf("hash-bound: %.4f of a core", r)
	}
	// 200 namespaces: the cheap path alone needs 60 ms/s, more than its
	// share (60% of 5%): it stretches to 2 s.
	p = planOf(200, 0.0003, 0.016, 0.0184)
	if !near(p[Listen].Planned, 2) {
		t.Errorf("200 namespaces: cheap path every %v, want 2s", p[Listen].Planned)
	}
	if r := spent(p); r > 0.05*1.001 {
		t.Errorf("200 namespaces: %.4f of a core", r)
	}
}

// burner is a Runner whose jobs burn CPU.
type burner struct {
	cost   map[Kind]time.Duration
	urgent bool
	mu     sync.Mutex
	runs   map[Kind]int
	used   time.Duration
}

func (b *burner) RunJob(k Kind) (time.Duration, error) {
	c0 := threadCPU()
	for threadCPU()-c0 < b.cost[k] {
		for range 10000 {
		}
	}
	b.mu.Lock()
	b.runs[k]++
	b.used += threadCPU() - c0
	b.mu.Unlock()
	return 0, nil
}

func (b *burner) Urgent() bool { return b.urgent }

func (b *burner) count(k Kind) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runs[k]
}

// The Scheduler holds the budget over many targets, says when it cannot
// hold the asked interval (metric and one log line), and serves targets
// with recent findings first.
func TestSchedulerHoldsBudget(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	sch := NewScheduler(SchedulerOptions{Interval: 100 * time.Millisecond, Budget: 0.2, Logger: logger})
	var bs []*burner
	for i := range 10 {
		b := &burner{cost: map[Kind]time.Duration{Listen: time.Millisecond, Rare: 4 * time.Millisecond, Full: 6 * time.Millisecond}, runs: map[Kind]int{}}
		bs = append(bs, b)
		b.urgent = i == 3
		sch.Add(string(rune('a'+i)), b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	start := time.Now()
	sch.Run(ctx)
	wall := time.Since(start)
	var used time.Duration
	for _, b := range bs {
		used += b.used
	}
	share := used.Seconds() / wall.Seconds()
	// One job may overrun the budget's pacing (the last one started).
	if share > 0.2*1.25+0.012/wall.Seconds() {
		t.Errorf("jobs used %.3f of a core over %v, budget 0.2", share, wall)
	}
	if share < 0.05 {
		t.Errorf("jobs used only %.3f of a core: the scheduler starves", share)
	}
	var plan KindPlan
	for _, p := range sch.Plan() {
		if p.Kind == Full {
			plan = p
		}
	}
	// Ten full dumps of 6 ms every 100 ms would need 0.6 of a core.
	if !plan.Exceeded || plan.Planned <= plan.Asked {
		t.Errorf("full plan %+v: want the budget flagged as exceeded", plan)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "cannot hold the sampling interval"); n < 1 || n > 3 {
		t.Errorf("%d budget log lines, want one per kind that changed:\n%s", n, out)
	}
	// The urgent target got more dumps than the average of the others.
	others := 0
	for i, b := range bs {
		if i != 3 {
			others += b.count(Rare) + b.count(Full)
		}
	}
	if got, avg := bs[3].count(Rare)+bs[3].count(Full), float64(others)/9; float64(got) < 1.3*avg {
		t.Errorf("urgent target: %d dumps, others %.1f on average", got, avg)
	}
	t.Logf("share %.3f, plan %+v, urgent %d dumps, others %.1f", share, sch.Plan(), bs[3].count(Rare)+bs[3].count(Full), float64(others)/9)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A Listen sample carries the half-open counts of the latest dump and its
// own queues; it runs beside a dump.
func TestListenSampleCarriesDumpData(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the fake kernel answers on Linux only")
	}
	v4lo := netip.MustParseAddr("127.0.0.1")
	socks := []diag.Socket{
		listener(diag.AFInet, v4lo, 8080, 3, 16),
		synRecv(v4lo, 8080, netip.MustParseAddr("10.0.0.1")),
		synRecv(v4lo, 8080, netip.MustParseAddr("10.0.0.2")),
		sock(diag.AFInet, diag.Established, v4lo, 8080, v4lo, 50000),
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), Logger: slog.New(slog.DiscardHandler)})
	if _, err := s.Sample(Rare); err != nil {
		t.Fatal(err)
	}
	smp, err := s.Sample(Listen)
	if err != nil {
		t.Fatal(err)
	}
	if len(smp.Listeners) != 1 || smp.Listeners[0].SynRecv != 2 || smp.Listeners[0].QueueLen != 3 {
		t.Fatalf("listen sample listeners %+v", smp.Listeners)
	}
	if got := smp.Counts.Get(diag.AFInet, diag.SynRecv) + smp.Counts.Get(diag.AFInet, diag.Established); got != 0 {
		t.Errorf("a LISTEN-only dump counted %d other sockets", got)
	}
	v := s.View(time.Now())
	if v.Latest != smp || v.Counts.Get(diag.AFInet, diag.SynRecv) != 2 || v.Counts.Get(diag.AFInet, diag.Listen) != 1 {
		t.Errorf("view: latest %v, counts %v", v.Latest == smp, v.Counts)
	}
	if v.Stats[Listen].Dumps != 1 {
		t.Errorf("listen stats %+v", v.Stats[Listen])
	}
}

// spans records when a burner's jobs of one kind started and ended.
type spans struct {
	*burner
	kind Kind
	mu   *sync.Mutex
	at   *[][2]time.Time
}

func (s spans) RunJob(k Kind) (time.Duration, error) {
	start := time.Now()
	other, err := s.burner.RunJob(k)
	if k == s.kind {
		s.mu.Lock()
		*s.at = append(*s.at, [2]time.Time{start, time.Now()})
		s.mu.Unlock()
	}
	return other, err
}

// The cheap path runs its jobs back to back, up to fastBurst of its share,
// before its lane waits, rather than waiting after every job: at the same
// rate, with a few wakes a second instead of one per target.
func TestCheapPathRunsInBursts(t *testing.T) {
	// The cheap path alone: no dump covers it (a dump delivering its
	// data to one target makes that target due on its own, later).
	sch := NewScheduler(SchedulerOptions{Interval: time.Second, Budget: 0.1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Kinds: []JobKind{{Kind: Listen, Share: listenShare, Fast: true}}})
	var mu sync.Mutex
	var at [][2]time.Time
	// 40 targets of 1 ms: 0.04 of a core against the cheap path's 0.06.
	// Waiting after every job would leave 1 ms / 0.06 = 17 ms between
	// two jobs.
	const targets = 40
	var bs []*burner
	for i := range targets {
		b := &burner{cost: map[Kind]time.Duration{Listen: time.Millisecond}, runs: map[Kind]int{}}
		bs = append(bs, b)
		sch.Add(fmt.Sprintf("t%d", i), spans{burner: b, kind: Listen, mu: &mu, at: &at})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	start := time.Now()
	sch.Run(ctx)
	for _, p := range sch.Plan() {
		if p.Kind == Listen && p.Off {
			t.Fatalf("cheap path switched off (%+v): its jobs ran on a dump's account", p)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// The first rounds run before the costs are measured: judge the
	// jobs after them.
	at = slices.DeleteFunc(at, func(s [2]time.Time) bool { return s[0].Sub(start) < 1500*time.Millisecond })
	slices.SortFunc(at, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	waits := 0
	for i := 1; i < len(at); i++ {
		if at[i][0].Sub(at[i-1][1]) > 5*time.Millisecond {
			waits++
		}
	}
	deliveries := 0
	for _, b := range bs {
		deliveries += b.count(Listen)
	}
	t.Logf("%d cheap jobs in the last 2.5 s, %d waits between them; %d in 4 s", len(at), waits, deliveries)
	// Each target every second: about 160 in 4 s (the rate is
	// unchanged).
	if deliveries < 130 {
		t.Errorf("%d cheap jobs in 4 s, want about %d", deliveries, 4*targets)
	}
	if len(at) < 40 {
		t.Fatalf("only %d cheap jobs in the last 2.5 s: too few to judge how they ran", len(at))
	}
	// A burst holds about 15 jobs (250 ms of 0.06 of a core): a wait
	// every few jobs at most.
	if waits*3 > len(at) {
		t.Errorf("%d waits for %d cheap jobs: the lane waits after (nearly) every job", waits, len(at))
	}
}
