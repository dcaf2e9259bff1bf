package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// idleSock is an ESTABLISHED socket whose tcp_info says it received
// nothing for idle (data) and ackIdle (ACKs).
func idleSock(sport uint16, dst string, timer diag.Timer, idle, ackIdle time.Duration, cookie uint64, inode uint32) diag.Socket {
	s := sock(diag.AFInet, diag.Established, v4lo, sport, netip.MustParseAddr(dst), 50000)
	s.Timer, s.Cookie, s.Inode = timer, cookie, inode
	ti := make([]byte, 232)
	ti[0] = byte(diag.Established)
	binary.NativeEndian.PutUint32(ti[52:], uint32(idle.Milliseconds()))
	binary.NativeEndian.PutUint32(ti[56:], uint32(ackIdle.Milliseconds()))
	s.Attrs = diagtest.Attr(diag.AttrInfo, ti)
	return s
}

// TestSweepGroups checks the sweep over a scripted kernel: only ESTABLISHED
// sockets with no timer whose data and ACKs are both older than the minimum
// count; they group by listening port (with the listener) or "ephemeral",
// and owner; a reply without tcp_info is counted and skipped; groups beyond
// the limit fold into "other"; the exporter shows them; the detector fires
// on the next sample.
func TestSweepGroups(t *testing.T) {
	cfg := detect.DefaultConfig()
	cfg.HalfOpenMinIdle = time.Minute
	cfg.HalfOpenMinCount = 3
	noInfo := sock(diag.AFInet, diag.Established, v4lo, 8080, v4lo, 50001)
	socks := []diag.Socket{
		listener(diag.AFInet, v4any, 8080, 0, 128),
		listener(diag.AFInet, v4any, 9090, 0, 128),
		idleSock(8080, "10.0.0.1", diag.TimerNone, time.Hour, time.Hour, 1, 101),
		idleSock(8080, "10.0.0.2", diag.TimerNone, 2*time.Hour, 3*time.Hour, 2, 102),
		idleSock(8080, "10.0.0.3", diag.TimerNone, 2*time.Minute, 2*time.Minute, 3, 103),
		idleSock(8080, "10.0.0.4", diag.TimerNone, time.Hour, time.Second, 4, 104),      // ACKs arrive: alive
		idleSock(8080, "10.0.0.5", diag.TimerKeepalive, time.Hour, time.Hour, 5, 105),   // keepalive on
		idleSock(8080, "10.0.0.6", diag.TimerRetransmit, time.Hour, time.Hour, 6, 106),  // data in flight
		idleSock(8080, "10.0.0.7", diag.TimerNone, 30*time.Second, time.Hour, 7, 107),   // data arrives
		idleSock(9090, "10.0.0.8", diag.TimerNone, time.Hour, time.Hour, 8, 108),        // another port
		idleSock(45000, "10.0.0.9", diag.TimerNone, time.Hour, time.Hour, 9, 109),       // outbound
		idleSock(45001, "10.0.0.10", diag.TimerNone, 5*time.Hour, 5*time.Hour, 10, 110), // outbound, other owner
		noInfo,
	}
	owners := map[uint64][]procnet.Process{
		101: {{PID: 7, Comm: "server"}}, 102: {{PID: 7, Comm: "server"}}, 103: {{PID: 8, Comm: "server"}},
		108: {{PID: 9, Comm: "metrics"}}, 109: {{PID: 10, Comm: "client"}}, 110: {{PID: 11, Comm: "batch\x01"}},
	}
	lookups := 0
	s := NewSampler(SamplerOptions{
		Dial:              diagtest.Dialer(socks),
		Detect:            cfg,
		MaxHalfOpenGroups: 3,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		LookupOwners: func(inodes []uint64, _ time.Duration) (map[uint64][]procnet.Process, bool, error) {
			lookups++
			out := map[uint64][]procnet.Process{}
			for _, i := range inodes {
				if ps, ok := owners[i]; ok {
					out[i] = ps
				}
			}
			return out, true, nil
		},
	})
	if _, err := s.Sample(HalfOpen); !errors.Is(err, ErrNotReady) {
		t.Errorf("sweep job before a full sample: %v, want ErrNotReady", err)
	}
	if _, err := s.Sample(Full); err != nil {
		t.Fatal(err)
	}
	if smp, err := s.Sample(HalfOpen); err != nil || smp.Kind != HalfOpen || smp.Dump.Sockets == 0 {
		t.Fatalf("sweep job after the first full sample: %+v, %v", smp, err)
	}
	ho := s.View(time.Now()).HalfOpen.Latest
	if ho == nil {
		t.Fatal("no sweep published")
	}
	if ho.Suspects != 6 || ho.NoInfo != 1 || ho.NoTimer != 9 || ho.Folded != 1 || len(ho.Groups) != 4 {
		t.Fatalf("sweep %+v", ho)
	}
	g := ho.Groups[0]
	if g.Port != "8080" || g.Command != "server" || g.Count != 3 || g.OldestIdle != 2*time.Hour ||
		strings.Join(g.Listeners, ",") != "0.0.0.0:8080" || len(g.PIDs) != 2 || g.PIDs[0] != 7 || g.PIDs[1] != 8 ||
		strings.Join(g.Remotes, ",") != "10.0.0.2,10.0.0.1,10.0.0.3" {
		t.Errorf("first group %+v", g)
	}
	if other := ho.Groups[3]; other.Port != "other" || other.Command != "other" || other.Count != 1 {
		t.Errorf("other group %+v", other)
	}
	// Owners are remembered by cookie: a second sweep looks nothing up.
	if _, err := s.Sweep(); err != nil || lookups != 1 {
		t.Errorf("second sweep: %v, %d lookups", err, lookups)
	}
	if _, err := s.Sample(Rare); err != nil {
		t.Fatal(err)
	}
	fs := s.Findings()
	var fired []string
	for _, f := range fs {
		if f.Alert == detect.AlertHalfOpenSuspect {
			fired = append(fired, f.Labels["port"]+"/"+f.Labels["command"])
		}
	}
	if strings.Join(fired, ",") != "8080/server" {
		t.Errorf("TCPHalfOpenSuspect for %v, want 8080/server", fired)
	}

	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	want := `
# HELP tcpstate_halfopen_suspects Half-open suspects in the latest half-open sweep: ESTABLISHED sockets with no timer armed (no keepalive, nothing in flight) that received nothing for longer than --halfopen.min-idle, by local port ("ephemeral" for outbound connections) and owning command.
# TYPE tcpstate_halfopen_suspects gauge
tcpstate_halfopen_suspects{command="batch�",port="ephemeral"} 1
tcpstate_halfopen_suspects{command="metrics",port="9090"} 1
tcpstate_halfopen_suspects{command="other",port="other"} 1
tcpstate_halfopen_suspects{command="server",port="8080"} 3
# HELP tcpstate_halfopen_oldest_idle_seconds Longest time a half-open suspect of the group received nothing (tcpi_last_data_recv and tcpi_last_ack_recv), in the latest half-open sweep.
# TYPE tcpstate_halfopen_oldest_idle_seconds gauge
tcpstate_halfopen_oldest_idle_seconds{command="batch�",port="ephemeral"} 18000
tcpstate_halfopen_oldest_idle_seconds{command="metrics",port="9090"} 3600
tcpstate_halfopen_oldest_idle_seconds{command="other",port="other"} 3600
tcpstate_halfopen_oldest_idle_seconds{command="server",port="8080"} 7200
# HELP tcpstate_halfopen_sweep_no_info_sockets ESTABLISHED sockets with no timer armed that the latest half-open sweep skipped because their reply carried no usable tcp_info.
# TYPE tcpstate_halfopen_sweep_no_info_sockets gauge
tcpstate_halfopen_sweep_no_info_sockets 1
# HELP tcpstate_dumps_total sock_diag dumps run.
# TYPE tcpstate_dumps_total counter
tcpstate_dumps_total{kind="full"} 1
tcpstate_dumps_total{kind="halfopen"} 2
tcpstate_dumps_total{kind="listen"} 0
tcpstate_dumps_total{kind="rare"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_halfopen_suspects", "tcpstate_halfopen_oldest_idle_seconds",
		"tcpstate_halfopen_sweep_no_info_sockets", "tcpstate_dumps_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tcpstate_halfopen_sweep_budget_share", "tcpstate_sample_interval_planned_seconds"); err != nil || n != 1+len(Kinds) {
		t.Errorf("budget share and planned intervals: %d series, %v", n, err)
	}
}

// TestSweepDisabled checks that a negative interval turns the sweep off:
// no job kind for the Scheduler, Sweep refuses, and no series.
func TestSweepDisabled(t *testing.T) {
	s := NewSampler(SamplerOptions{Dial: diagtest.Dialer(nil), HalfOpenInterval: -1})
	if _, err := s.Sample(Full); err != nil {
		t.Fatal(err)
	}
	for _, j := range s.Jobs() {
		if j.Kind == HalfOpen {
			t.Errorf("disabled sweep scheduled: %+v", j)
		}
	}
	if _, err := s.Sweep(); err == nil {
		t.Error("disabled sweep ran")
	}
	if _, err := s.Sample(HalfOpen); err == nil {
		t.Error("disabled sweep job ran")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{}))
	if n, err := testutil.GatherAndCount(reg, "tcpstate_halfopen_sweep_budget_share"); err != nil || n != 0 {
		t.Errorf("disabled sweep exported %d series (%v)", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tcpstate_dumps_total sock_diag dumps run.
# TYPE tcpstate_dumps_total counter
tcpstate_dumps_total{kind="full"} 1
tcpstate_dumps_total{kind="listen"} 0
tcpstate_dumps_total{kind="rare"} 0
`), "tcpstate_dumps_total"); err != nil {
		t.Errorf("disabled sweep's dump series: %v", err)
	}
}

// TestSweepHoldsBudget checks the Scheduler's plan at a million sockets:
// the sweep (taken here as three times a full dump's cost, more than the
// 1.35x measured in BENCHMARKS.md) is spaced to at most a quarter of the
// budget, and with the cheap path, rare and full dumps the total stays
// within the budget; a cheap sweep keeps its asked interval.
func TestSweepHoldsBudget(t *testing.T) {
	const budget = 0.05
	if iv := SweepInterval(0, time.Second); iv != DefaultHalfOpenInterval {
		t.Errorf("default interval %v", iv)
	}
	if iv := SweepInterval(-1, time.Second); iv != 0 {
		t.Errorf("disabled interval %v", iv)
	}
	if iv := SweepInterval(time.Second, 5*time.Second); iv != 5*time.Second {
		t.Errorf("interval below the sampling interval: %v", iv)
	}
	jobs := SamplerJobs(DefaultHalfOpenInterval)
	asked := func(i int) time.Duration {
		if iv := jobs[i].Interval; iv > 0 {
			return iv
		}
		return time.Second
	}
	plan := func(sweep float64) map[Kind]KindPlan {
		costs := make([]float64, len(jobs))
		for i, j := range jobs {
			costs[i] = map[Kind]float64{Listen: 0.0007, Rare: 0.17, HalfOpen: sweep, Full: 1.4}[j.Kind]
		}
		plans, _ := planKinds(jobs, budget, asked, [][]float64{costs})
		out := map[Kind]KindPlan{}
		for _, p := range plans {
			out[p.Kind] = p
		}
		return out
	}
	ps := plan(4.2)
	ho := ps[HalfOpen]
	if ho.Off || ho.Asked != DefaultHalfOpenInterval || ho.Planned <= DefaultHalfOpenInterval {
		t.Errorf("costly sweep plan %+v", ho)
	}
	if ho.Rate > sweepShare*budget*1.001 {
		t.Errorf("sweep takes %.4f of a core, more than a quarter of %v", ho.Rate, budget)
	}
	if r := spent(ps); r > budget*1.001 {
		t.Errorf("all kinds take %.4f of a core, budget %v: %+v", r, budget, ps)
	}
	t.Logf("1M sockets: listen every %v, rare every %v, full every %v, sweep every %v: %.4f of a core",
		ps[Listen].Planned, ps[Rare].Planned, ps[Full].Planned, ho.Planned, spent(ps))
	if p := plan(0.01)[HalfOpen]; p.Planned != DefaultHalfOpenInterval {
		t.Errorf("cheap sweep planned every %v", p.Planned)
	}
}

// TestSchedulerRunsSweep runs the Scheduler with the sweep's kind over a
// burner target: the sweep runs at its own asked interval, not the
// sampling one, and a sweep not ready is asked again after one interval.
func TestSchedulerRunsSweep(t *testing.T) {
	sch := NewScheduler(SchedulerOptions{Interval: 50 * time.Millisecond, Budget: 0.5, Kinds: SamplerJobs(400 * time.Millisecond),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	r := &notReadyFirst{}
	sch.Add("t", r)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	sch.Run(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	// The first ask is refused; the second comes an interval later; then
	// one every 400 ms: about 4 in 1.5 s, never one per 50 ms.
	if r.notReady != 1 || r.sweeps < 2 || r.sweeps > 5 {
		t.Errorf("%d refused, %d sweeps in 1.5 s at a 400 ms interval; full dumps %d", r.notReady, r.sweeps, r.full)
	}
	if r.full < 5 {
		t.Errorf("only %d full dumps beside the sweep", r.full)
	}
	if p := sch.Planned(HalfOpen); p < 400*time.Millisecond {
		t.Errorf("sweep planned every %v", p)
	}
}

// notReadyFirst refuses its first sweep as not ready and counts jobs.
type notReadyFirst struct {
	mu                     sync.Mutex
	notReady, sweeps, full int
}

func (n *notReadyFirst) RunJob(k Kind) (time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch k {
	case HalfOpen:
		if n.notReady == 0 {
			n.notReady++
			return 0, ErrNotReady
		}
		n.sweeps++
	case Full:
		n.full++
	}
	return 0, nil
}

func (n *notReadyFirst) Urgent() bool { return false }
