//go:build linux

package netns

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// TestManagerSweepsEveryNamespace checks that with --netns=all the one
// Scheduler runs every namespace's half-open sweep as its own kind, at the
// interval asked and within a quarter of the budget, after the namespace's
// first full dump; and that a negative interval leaves the kind out.
func TestManagerSweepsEveryNamespace(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	ft.process("10", "a")
	ft.process("20", "b")
	socks := map[Key][]diag.Socket{
		ft.key("host"): fakeSockets(1, 2),
		ft.key("a"):    fakeSockets(2, 3),
		ft.key("b"):    fakeSockets(0, 1),
	}
	const iv = 200 * time.Millisecond
	m, err := NewManager(ManagerOptions{
		ProcRoot:         ft.proc(),
		RunDirs:          []string{},
		Refresh:          time.Hour,
		Interval:         20 * time.Millisecond,
		CPUBudget:        0.5,
		HalfOpenInterval: iv,
		Logger:           slog.New(slog.DiscardHandler),
		NewSampler: func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.SamplerOptions{Interval: 20 * time.Millisecond, CPUBudget: 0.5, HalfOpenInterval: iv,
				Dial: fakeDial(socks[h.Namespace().Key])}), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ho collector.KindPlan
	for _, p := range m.Scheduler().Plan() {
		if p.Kind == collector.HalfOpen {
			ho = p
		}
	}
	if ho.Kind != collector.HalfOpen || ho.Asked != iv {
		t.Fatalf("no half-open kind asking %v in the plan: %+v", iv, m.Scheduler().Plan())
	}
	bg := fixture.Background(t, "Manager.Run", m.Run)
	start := time.Now()
	waitFor(t, 15*time.Second, "two sweeps in every namespace", func() (bool, string) {
		ts := m.Targets()
		if len(ts) != 3 {
			return false, fmt.Sprintf("%d targets", len(ts))
		}
		for _, tg := range ts {
			v := tg.Sampler.View(time.Now())
			if !v.HalfOpen.Enabled || v.HalfOpen.Stats.Dumps < 2 || v.HalfOpen.Latest == nil {
				return false, fmt.Sprintf("namespace %s: %+v", tg.Labels[0], v.HalfOpen.Stats)
			}
			if v.HalfOpen.Stats.Errors != 0 || v.Stats[collector.HalfOpen].Planned < iv {
				t.Errorf("namespace %s: sweep stats %+v", tg.Labels[0], v.Stats[collector.HalfOpen])
			}
			// A sweep waits for the namespace's first full dump.
			if v.Full == nil {
				t.Errorf("namespace %s: sweep without a full dump", tg.Labels[0])
			}
		}
		return true, ""
	})
	bg.Stop(fixture.DefaultStopGrace)
	// The sweep runs at its own interval, not the sampling one: at most
	// one per 200 ms per namespace, and one more at the start.
	limit := uint64(time.Since(start)/iv) + 2
	for _, tg := range m.Targets() {
		if n := tg.Sampler.View(time.Now()).HalfOpen.Stats.Dumps; n > limit {
			t.Errorf("namespace %s: %d sweeps in %v at a %v interval", tg.Labels[0], n, time.Since(start), iv)
		}
	}
	for _, p := range m.Scheduler().Plan() {
		if p.Kind == collector.HalfOpen && p.Rate > 0.25*0.5*1.001 {
			t.Errorf("sweep planned at %.4f of a core, more than a quarter of the budget", p.Rate)
		}
	}

	off, err := NewManager(ManagerOptions{ProcRoot: ft.proc(), RunDirs: []string{}, HalfOpenInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range off.Scheduler().Plan() {
		if p.Kind == collector.HalfOpen {
			t.Errorf("disabled sweep planned: %+v", p)
		}
	}
}
