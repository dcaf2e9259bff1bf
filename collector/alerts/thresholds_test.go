package alerts

import (
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// TestForEdges checks, as a table, when a finding that holds becomes a
// firing alert: pending strictly before its For, firing at For exactly, and
// firing at once with For 0.
func TestForEdges(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		forDur  time.Duration
		elapsed time.Duration // since the finding first held
		want    State
	}{
		{0, 0, StateFiring},
		{30 * time.Second, 0, StatePending},
		{30 * time.Second, 30*time.Second - time.Millisecond, StatePending},
		{30 * time.Second, 30 * time.Second, StateFiring},
		{30 * time.Second, 31 * time.Second, StateFiring},
		{5 * time.Minute, 5*time.Minute - time.Second, StatePending},
		{5 * time.Minute, 5 * time.Minute, StateFiring},
	}
	for _, tt := range tests {
		e := NewEngine(EngineOptions{})
		e.Update(t0, Target{}, []detect.Finding{synFlood("443", 1025, tt.forDur)})
		if tt.elapsed > 0 {
			e.Update(t0.Add(tt.elapsed), Target{}, []detect.Finding{synFlood("443", 1025, tt.forDur)})
		}
		if a := only(t, e); a.State != tt.want {
			t.Errorf("for %v, held %v: state %v, want %v", tt.forDur, tt.elapsed, a.State, tt.want)
		}
	}
}

// TestResendEdges checks, as a table, when a firing alert is sent to
// Alertmanager again: not before the resend delay since the last send, at
// it exactly and after.
func TestResendEdges(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		since time.Duration // since the alert was first sent
		want  int           // alerts sent at that moment
	}{
		{time.Second, 0},
		{time.Minute - time.Millisecond, 0},
		{time.Minute, 1},
		{2 * time.Minute, 1},
	}
	for _, tt := range tests {
		rec := &recorder{}
		e := NewEngine(EngineOptions{Sender: rec, ResendDelay: time.Minute})
		e.Update(t0, Target{}, []detect.Finding{synFlood("443", 1025, 0)})
		if got := len(rec.take()); got != 1 {
			t.Fatalf("firing at once: sent %d, want 1", got)
		}
		e.Update(t0.Add(tt.since), Target{}, []detect.Finding{synFlood("443", 1025, 0)})
		if got := len(rec.take()); got != tt.want {
			t.Errorf("%v after the first send: sent %d, want %d", tt.since, got, tt.want)
		}
	}
}
