package detect

import "testing"

func TestListenerRiskEdges(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		queue, limit, synRecv uint64
		wantFill              float64
		wantRisk              bool
	}{
		{"idle", 0, 128, 0, 0, false},
		{"idle, backlog 0", 0, 0, 0, 0, false},
		{"one short of half", 63, 128, 0, 63.0 / 128, false},
		{"half full", 64, 128, 0, 0.5, true},
		{"odd limit, just under half", 2, 5, 0, 0.4, false},
		{"odd limit, just over half", 3, 5, 0, 0.6, true},
		{"full", 128, 128, 0, 1, true},
		{"past the limit", 129, 128, 0, 129.0 / 128, true},
		{"backlog 0 holding one", 1, 0, 0, 1, true},
		{"backlog 0, two reuseport sockets holding one each", 2, 0, 0, 2, true},
		{"empty queue, one SYN_RECV", 0, 128, 1, 0, true},
	} {
		l := Listener{QueueLen: tc.queue, QueueLimit: tc.limit, SynRecv: tc.synRecv}
		if got := l.AcceptQueueFill(); got != tc.wantFill {
			t.Errorf("%s: AcceptQueueFill() = %v, want %v", tc.name, got, tc.wantFill)
		}
		if got := l.AtRisk(); got != tc.wantRisk {
			t.Errorf("%s: AtRisk() = %v, want %v", tc.name, got, tc.wantRisk)
		}
	}
}
