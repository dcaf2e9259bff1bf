package netns

import (
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// targetsByNetns indexes targets by their netns label.
func targetsByNetns(ts []collector.Target) map[string]collector.Target {
	out := map[string]collector.Target{}
	for _, t := range ts {
		out[t.Labels[0]] = t
	}
	return out
}

func TestPlan(t *testing.T) {
	m, err := NewManager(Config{CPUBudget: 0.05, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	near := func(got time.Duration, want float64) bool {
		return got.Seconds() > want*0.999 && got.Seconds() < want*1.001
	}
	// No measurement yet: one sweep per interval, all full.
	p := m.planLocked([]*entry{{}, {}})
	if p.period != time.Second || !p.allFull {
		t.Errorf("unmeasured: %+v", p)
	}
	// 50 namespaces whose dumps are dominated by the shared hash walk
	// (full 18.4 ms, rare 16 ms): every visit is full, the sweep costs
	// 0.92 s of CPU and so comes every 18.4 s at 5%.
	var list []*entry
	for range 50 {
		list = append(list, &entry{fullCPU: 0.0184, rareCPU: 0.016})
	}
	p = m.planLocked(list)
	if !p.allFull || !near(p.period, 18.4) {
		t.Errorf("hash-bound: %+v, want all full every 18.4s", p)
	}
	// One namespace whose full dump costs 100 times its rare one: rare
	// dumps every interval (1% of a core), full ones spaced to the rest
	// of the budget: 0.99 s / 0.04 = 24.75 s.
	p = m.planLocked([]*entry{{fullCPU: 1.0, rareCPU: 0.01}})
	if p.allFull || p.period != time.Second || !near(p.fullEvery, 24.75) {
		t.Errorf("full-heavy: %+v, want rare every 1s, full every 24.75s", p)
	}
	// Rare dumps alone over half the budget: the sweep stretches so they
	// take half, full dumps the other half.
	p = m.planLocked([]*entry{{fullCPU: 2.0, rareCPU: 0.1}})
	if p.allFull || !near(p.period, 4) || !near(p.fullEvery, 76) {
		t.Errorf("rare-heavy: %+v, want sweep 4s, full 76s", p)
	}
	if _, err := NewManager(Config{CPUBudget: 2}); err == nil {
		t.Error("budget 2: no error")
	}
}
