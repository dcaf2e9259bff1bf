package detect

import (
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// Threshold edges of the detectors, as tables: a value at a threshold fires,
// a value just below does not. The detectors' own tests cover the
// mechanisms; these pin the comparisons (>= against >).

func TestOrphanPressureEdges(t *testing.T) {
	cfg := DefaultConfig() // warning at 0.5, critical at 0.8 of tcp_max_orphans
	tests := []struct {
		orphans int64 // against tcp_max_orphans 1000 (baseSysctls)
		want    []Severity
	}{
		{0, nil},
		{499, nil},
		{500, []Severity{Warning}},
		{799, []Severity{Warning}},
		{800, []Severity{Warning, Critical}},
		{1000, []Severity{Warning, Critical}},
	}
	for _, tt := range tests {
		h := build(1, time.Second, func(_ int, s *Summary) {
			s.Sockstat.TCPOrphan = tt.orphans
			s.Sockstat.Present = s.Sockstat.Present.Add(procnet.SockstatTCPOrphan)
		})
		got := severities(OrphanPressure(&cfg, h))
		if !equalSeverities(got, tt.want) {
			t.Errorf("%d orphans of 1000: findings %v, want %v", tt.orphans, got, tt.want)
		}
	}
}

func TestAcceptQueueEdges(t *testing.T) {
	cfg := DefaultConfig() // AcceptQueueRatio 0.9
	tests := []struct {
		name          string
		queue, limit  uint64
		overflowsPerS uint64 // ListenOverflows between the two samples, 1 s apart
		want          bool   // a finding for the listener
		wantHost      bool   // the listener-less finding (reason="listen_overflows")
	}{
		{"empty queue", 0, 100, 0, false, false},
		{"just below the ratio", 89, 100, 0, false, false},
		{"at the ratio", 90, 100, 0, true, false},
		{"full", 100, 100, 0, true, false},
		{"half full, no overflows", 50, 100, 0, false, false},
		{"half full while overflowing", 50, 100, uint64(cfg.OverflowRate) + 1, true, false},
		{"just under half while overflowing", 49, 100, uint64(cfg.OverflowRate) + 1, false, true},
	}
	for _, tt := range tests {
		h := build(2, time.Second, func(i int, s *Summary) {
			s.Counters = counters(map[procnet.Field]uint64{procnet.FieldListenOverflows: uint64(i) * tt.overflowsPerS})
			s.Listeners = []Listener{{ListenerKey: web, QueueLen: tt.queue, QueueLimit: tt.limit, Sockets: 1}}
		})
		var got, gotHost bool
		for _, f := range AcceptQueueOverflow(&cfg, h) {
			if f.Labels["reason"] == "listen_overflows" {
				gotHost = true
			} else {
				got = true
			}
		}
		if got != tt.want || gotHost != tt.wantHost {
			t.Errorf("%s (%d of %d, %d overflows/s): listener finding %v, host finding %v; want %v, %v",
				tt.name, tt.queue, tt.limit, tt.overflowsPerS, got, gotHost, tt.want, tt.wantHost)
		}
	}
}

func severities(fs []Finding) []Severity {
	var out []Severity
	for _, f := range fs {
		out = append(out, f.Severity)
	}
	return out
}

func equalSeverities(a, b []Severity) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
