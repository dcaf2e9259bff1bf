//go:build linux

package netns

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// fakeDial answers every dump with the sockets of the requested states.
var fakeDial = diagtest.Dialer

// fakeSockets returns l listeners and e established sockets over IPv4.
func fakeSockets(l, e int) []diag.Socket {
	var out []diag.Socket
	lo := [4]byte{127, 0, 0, 1}
	for i := range l {
		s := diag.Socket{Family: diag.AFInet, State: diag.Listen, SrcPort: uint16(1000 + i)}
		s.Src = netip.AddrFrom4(lo)
		out = append(out, s)
	}
	for i := range e {
		s := diag.Socket{Family: diag.AFInet, State: diag.Established, SrcPort: uint16(40000 + i), DstPort: 1000}
		s.Src, s.Dst = netip.AddrFrom4(lo), netip.AddrFrom4(lo)
		out = append(out, s)
	}
	return out
}

// TestManagerFakeTree runs the Manager over a fake process tree and a
// fake kernel: no privilege needed. It checks labels, pod attribution,
// per-namespace counts, and that a namespace whose processes go is
// dropped, counted, closed and never logged.
func TestManagerFakeTree(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	ft.process("1", "host")
	ft.process("10", "a")
	ft.process("20", "b")
	run := filepath.Join(ft.root, "run")
	ft.mount(run, "c", "c")
	socks := map[Key][]diag.Socket{
		ft.key("host"): fakeSockets(1, 0),
		ft.key("a"):    fakeSockets(2, 3),
		ft.key("b"):    fakeSockets(0, 1),
		ft.key("c"):    nil,
	}
	var podMu sync.Mutex
	pods := map[string][2]string{"uid-a": {"shop", "web-0"}}
	rec := &fixture.LogRecorder{}
	before := openFDs(t)

	m, err := NewManager(ManagerOptions{
		ProcRoot:  ft.proc(),
		RunDirs:   []string{run},
		Refresh:   time.Hour, // only the presence check can notice a departure
		Interval:  10 * time.Millisecond,
		CPUBudget: 1,
		Logger:    slog.New(rec),
		NewSampler: func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.SamplerOptions{Interval: 10 * time.Millisecond, Dial: fakeDial(socks[h.Namespace().Key])}), nil
		},
		PodUID: func(pid int) string {
			return map[int]string{10: "uid-a", 20: "uid-b"}[pid]
		},
		PodName: func(uid string) (string, string, bool) {
			podMu.Lock()
			defer podMu.Unlock()
			p, ok := pods[uid]
			return p[0], p[1], ok
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	bg := fixture.Background(t, "Manager.Run", m.Run)
	defer bg.Stop(fixture.DefaultStopGrace)

	label := func(ns string) string { return strconv.FormatUint(ft.key(ns).Inode, 10) }
	want := map[string]struct {
		labels      []string
		listen, est uint64
	}{
		"host":     {[]string{"host", "", ""}, 1, 0},
		label("a"): {[]string{label("a"), "shop", "web-0"}, 2, 3},
		label("b"): {[]string{label("b"), "", ""}, 0, 1},
		label("c"): {[]string{label("c"), "", ""}, 0, 0},
	}
	waitFor(t, 10*time.Second, "every namespace sampled", func() (bool, string) {
		ts := targetsByNetns(m.Targets())
		if len(ts) != len(want) {
			return false, fmt.Sprintf("%d targets", len(ts))
		}
		for k, w := range want {
			tg, ok := ts[k]
			if !ok {
				return false, "no target " + k
			}
			v := tg.Sampler.View(time.Now())
			if !v.Ready {
				return false, k + " not ready"
			}
			if !slices.Equal(tg.Labels, w.labels) {
				t.Fatalf("target %s labels %v, want %v", k, tg.Labels, w.labels)
			}
			if l, e := v.Counts.Get(diag.AFInet, diag.Listen), v.Counts.Get(diag.AFInet, diag.Established); l != w.listen || e != w.est {
				t.Fatalf("target %s: %d LISTEN %d ESTABLISHED, want %d %d", k, l, e, w.listen, w.est)
			}
		}
		return true, ""
	})

	// A pod the API learns of later is named without a new discovery.
	podMu.Lock()
	pods["uid-b"] = [2]string{"db", "pg-1"}
	podMu.Unlock()
	if tg := targetsByNetns(m.Targets())[label("b")]; !slices.Equal(tg.Labels, []string{label("b"), "db", "pg-1"}) {
		t.Errorf("late pod: labels %v", tg.Labels)
	}

	// The only process of namespace a exits.
	if err := os.RemoveAll(filepath.Join(ft.proc(), "10")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "namespace a dropped", func() (bool, string) {
		_, still := targetsByNetns(m.Targets())[label("a")]
		return !still && m.Stats().Dropped == 1, fmt.Sprintf("%+v", m.Stats())
	})
	st := m.Stats()
	if st.Namespaces != 3 || st.Added != 4 || st.OpenErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	for fd, l := range openFDs(t) {
		if l == ft.nsFile("a") {
			t.Errorf("descriptor %s still open on the dropped namespace", fd)
		}
	}
	if !bg.Stop(fixture.DefaultStopGrace) {
		t.FailNow()
	}
	if n := len(m.Targets()); n != 0 {
		t.Errorf("%d targets after Run returned", n)
	}
	checkNoLeak(t, before)
	if r := rec.Records(); len(r) > 0 {
		t.Errorf("warnings or errors logged: %q", r)
	}
}

func TestManagerCollector(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	ft.process("10", "a")
	m, err := NewManager(ManagerOptions{
		ProcRoot: ft.proc(), RunDirs: []string{},
		NewSampler: func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.SamplerOptions{Dial: fakeDial(nil)}), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(ft.proc(), "10"))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	want := `
# HELP tcpstate_netns_added_total Network namespaces that started being sampled.
# TYPE tcpstate_netns_added_total counter
tcpstate_netns_added_total 2
# HELP tcpstate_netns_discoveries_total Scans of /proc and the namespace run directories.
# TYPE tcpstate_netns_discoveries_total counter
tcpstate_netns_discoveries_total 2
# HELP tcpstate_netns_dropped_total Network namespaces that went away and stopped being sampled.
# TYPE tcpstate_netns_dropped_total counter
tcpstate_netns_dropped_total 1
# HELP tcpstate_netns_namespaces Network namespaces being sampled (--netns=all).
# TYPE tcpstate_netns_namespaces gauge
tcpstate_netns_namespaces 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"tcpstate_netns_added_total", "tcpstate_netns_discoveries_total", "tcpstate_netns_dropped_total", "tcpstate_netns_namespaces"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 10 {
		t.Errorf("%d series (%v), want 10 before any sweep", n, err)
	}
}

// TestManagerDiscoveryFailure checks that a failing discovery is logged
// once, not every cycle, and that the Manager keeps running.
func TestManagerDiscoveryFailure(t *testing.T) {
	rec := &fixture.LogRecorder{}
	m, err := NewManager(ManagerOptions{ProcRoot: filepath.Join(t.TempDir(), "none"), Refresh: 5 * time.Millisecond,
		Interval: 5 * time.Millisecond, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	m.Run(ctx)
	st := m.Stats()
	if st.RefreshErrors < 5 {
		t.Errorf("only %d failed discoveries in 300ms", st.RefreshErrors)
	}
	if r := rec.Records(); len(r) != 1 || !strings.Contains(r[0], "discovery failed") {
		t.Errorf("logged %q, want one discovery failure", r)
	}
}

// A discovery opens new namespaces only while the descriptors promised
// to the sampled ones (NamespaceFDs each, the agent's own included) stay
// within FDBudget: the others wait for a later discovery, counted and
// logged once; the agent's own namespace is always opened.
func TestManagerLeavesNamespacesForWantOfDescriptors(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	ft.process("10", "a")
	ft.process("20", "b")
	ft.process("30", "c")
	var budget atomic.Int64
	rec := &fixture.LogRecorder{}
	m, err := NewManager(ManagerOptions{
		ProcRoot: ft.proc(),
		RunDirs:  []string{},
		Refresh:  time.Hour,
		Logger:   slog.New(rec),
		NewSampler: func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.SamplerOptions{Dial: fakeDial(nil)}), nil
		},
		FDBudget: func() int { return int(budget.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, step := range []struct {
		budget           int64
		sampled, limited int
		warnings         int
	}{
		{0, 1, 3, 1},                  // only the agent's own namespace
		{2*NamespaceFDs + 1, 2, 2, 1}, // one more fits; logged once only
		{4*NamespaceFDs - 1, 3, 1, 1}, // promised, not held, descriptors count
		{4 * NamespaceFDs, 4, 0, 1},   // the rest
		{0, 4, 0, 1},                  // those sampled stay sampled
	} {
		budget.Store(step.budget)
		if err := m.Refresh(); err != nil {
			t.Fatal(err)
		}
		st := m.Stats()
		if st.Namespaces != step.sampled || st.FDLimited != step.limited || st.Failing != 0 {
			t.Errorf("budget %d: %d sampled, %d left for want of descriptors, %d failing; want %d, %d, 0",
				step.budget, st.Namespaces, st.FDLimited, st.Failing, step.sampled, step.limited)
		}
		if n := len(rec.Records()); n != step.warnings {
			t.Errorf("budget %d: %d warnings, want %d: %q", step.budget, n, step.warnings, rec.Records())
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	if n, err := testutil.GatherAndCount(reg, "tcpstate_netns_unsampled"); err != nil || n != 2 {
		t.Errorf("tcpstate_netns_unsampled: %d series, %v; want one per reason", n, err)
	}
}
