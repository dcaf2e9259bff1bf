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
