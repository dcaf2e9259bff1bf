package collector

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"strings"
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
	s := NewSampler(Options{
		Dial:              diagtest.Kernel(socks),
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
	if s.SweepDue(time.Now()) {
		t.Error("sweep due before a full sample")
	}
	if _, err := s.Sample(Full); err != nil {
		t.Fatal(err)
	}
	if !s.SweepDue(time.Now()) {
		t.Fatal("first sweep not due after the first full sample")
	}
	ho, err := s.Sweep()
	if err != nil {
		t.Fatal(err)
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
	if s.SweepDue(time.Now()) {
		t.Error("sweep due right after a sweep")
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
tcpstate_halfopen_suspects{command="batch",port="ephemeral"} 1
tcpstate_halfopen_suspects{command="metrics",port="9090"} 1
tcpstate_halfopen_suspects{command="other",port="other"} 1
tcpstate_halfopen_suspects{command="server",port="8080"} 3
# HELP tcpstate_halfopen_oldest_idle_seconds Longest time a half-open suspect of the group received nothing (tcpi_last_data_recv and tcpi_last_ack_recv), in the latest half-open sweep.
# TYPE tcpstate_halfopen_oldest_idle_seconds gauge
tcpstate_halfopen_oldest_idle_seconds{command="batch",port="ephemeral"} 18000
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
tcpstate_dumps_total{kind="rare"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_halfopen_suspects", "tcpstate_halfopen_oldest_idle_seconds",
		"tcpstate_halfopen_sweep_no_info_sockets", "tcpstate_dumps_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tcpstate_halfopen_sweep_budget_share", "tcpstate_sample_interval_planned_seconds"); err != nil || n != 4 {
		t.Errorf("budget share and planned intervals: %d series, %v", n, err)
	}
}

// TestSweepDisabled checks that a negative interval turns the sweep off:
// never due, Sweep refuses, and no series.
func TestSweepDisabled(t *testing.T) {
	s := NewSampler(Options{Dial: diagtest.Kernel(nil), HalfOpenInterval: -1})
	if _, err := s.Sample(Full); err != nil {
		t.Fatal(err)
	}
	if s.SweepDue(time.Now()) {
		t.Error("disabled sweep due")
	}
	if _, err := s.Sweep(); err == nil {
		t.Error("disabled sweep ran")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{}))
	if n, err := testutil.GatherAndCount(reg, "tcpstate_halfopen_sweep_budget_share"); err != nil || n != 0 {
		t.Errorf("disabled sweep exported %d series (%v)", n, err)
	}
}

// TestSweepHoldsBudget checks the plan at a million sockets: the sweep
// (taken here as three times a full dump's cost, more than the 1.35x
// measured in BENCHMARKS.md) is spaced to a quarter of the
// budget, and with rare and full dumps the total stays within the budget.
func TestSweepHoldsBudget(t *testing.T) {
	const budget = 0.05
	sc := schedule{interval: time.Second, budget: budget}
	sc.observe(Full, 1400*time.Millisecond)
	sc.observe(Rare, 170*time.Millisecond)
	sw := newSweeper(&Options{Interval: time.Second})
	if sw.interval != DefaultHalfOpenInterval {
		t.Errorf("default interval %v", sw.interval)
	}
	sw.cost = 4.2
	p := sw.plannedLocked(budget)
	if want := time.Duration(4.2 / (sweepShare * budget) * float64(time.Second)); p != want {
		t.Errorf("planned %v, want %v", p, want)
	}
	sc.reserve(sw.cost / p.Seconds())
	ri, fi := sc.rareInterval().Seconds(), sc.fullInterval().Seconds()
	spent := 0.17/ri + (1.4-0.17)/fi + sw.cost/p.Seconds()
	if spent > budget*1.001 {
		t.Errorf("rare every %.1fs, full every %.1fs, sweep every %v: %.4f of a core, budget %v", ri, fi, p, spent, budget)
	}
	t.Logf("1M sockets: rare every %.1fs, full every %.1fs, sweep every %v: %.4f of a core", ri, fi, p, spent)
	// Cheap sweeps keep the configured interval.
	sw.cost = 0.01
	if p := sw.plannedLocked(budget); p != DefaultHalfOpenInterval {
		t.Errorf("cheap sweep planned every %v", p)
	}
}
