package detect

import (
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// failures returns a summary filler: from sample `from` on, each sample
// (one per second) adds perSample failures towards dst with reason.
func failures(dst, reason string, from int, perSample uint64) func(int, *Summary) {
	return func(i int, s *Summary) {
		ev := &Events{}
		if i >= from && perSample > 0 {
			ev.ConnectFailuresTo = []ConnectFailure{{Destination: dst, Reason: reason, Count: perSample}}
		}
		s.Events = ev
	}
}

func TestConnectFailures(t *testing.T) {
	cfg := DefaultConfig() // 0.2/s over 1m
	// 12 refused connects in the last minute: exactly 0.2/s fires.
	h := build(121, time.Second, func(i int, s *Summary) {
		failures("10.0.0.9:5432", "refused", 0, 0)(i, s)
		if i > 60 && i%5 == 0 {
			s.Events.ConnectFailuresTo = []ConnectFailure{{Destination: "10.0.0.9:5432", Reason: "refused", Count: 1}}
		}
	})
	fs := ConnectFailures(&cfg, h)
	if len(fs) != 1 {
		t.Fatalf("0.2/s refused: %d findings, want 1: %v", len(fs), fs)
	}
	f := fs[0]
	if f.Alert != AlertConnectFailures || f.Labels["destination"] != "10.0.0.9:5432" || f.Labels["reason"] != "refused" || f.For != time.Minute {
		t.Errorf("finding %+v", f)
	}
	checkEvidence(t, &f, map[string]string{"failures": "12", "rate": "0.2", "window": "1m0s"})

	// One fewer: below the threshold.
	h = build(121, time.Second, func(i int, s *Summary) {
		failures("10.0.0.9:5432", "refused", 0, 0)(i, s)
		if i > 65 && i%5 == 0 {
			s.Events.ConnectFailuresTo = []ConnectFailure{{Destination: "10.0.0.9:5432", Reason: "refused", Count: 1}}
		}
	})
	if fs := ConnectFailures(&cfg, h); len(fs) != 0 {
		t.Errorf("11 in a minute: %v", fs)
	}
	// Timeouts fire; reset, unreachable and other do not.
	if fs := ConnectFailures(&cfg, build(30, time.Second, failures("[fd00::1]:443", "timeout", 0, 1))); len(fs) != 1 || fs[0].Labels["reason"] != "timeout" {
		t.Errorf("timeouts: %v", fs)
	}
	for _, r := range []string{"reset", "unreachable", "other"} {
		if fs := ConnectFailures(&cfg, build(30, time.Second, failures("10.0.0.1:80", r, 0, 100))); len(fs) != 0 {
			t.Errorf("%s: %v", r, fs)
		}
	}
	// Events off: nothing.
	if fs := ConnectFailures(&cfg, build(30, time.Second, func(int, *Summary) {})); fs != nil {
		t.Errorf("events off: %v", fs)
	}
	// Bounded: many destinations give at most MaxConnectFailureFindings.
	many := build(10, time.Second, func(i int, s *Summary) {
		s.Events = &Events{}
		for d := range 30 {
			s.Events.ConnectFailuresTo = append(s.Events.ConnectFailuresTo, ConnectFailure{Destination: "10.0.1." + string(rune('a'+d)) + ":1", Reason: "refused", Count: uint64(d + 1)})
		}
	})
	if fs := ConnectFailures(&cfg, many); len(fs) != MaxConnectFailureFindings {
		t.Errorf("30 destinations: %d findings, want %d", len(fs), MaxConnectFailureFindings)
	}
}

// TestResetStormEvidenceFromEvents checks that a reset storm's finding
// names the top peers, reasons and local ports the event source saw in the
// recent window.
func TestResetStormEvidenceFromEvents(t *testing.T) {
	cfg := DefaultConfig()
	h := build(305, time.Second, func(i int, s *Summary) {
		var v uint64
		var sent uint64
		for j := 1; j <= i; j++ {
			if j > 300 {
				v += 200
				sent += 150
			} else {
				v += 2
			}
		}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldOutRsts: v})
		s.Events = &Events{ResetsSent: map[string]uint64{"no_socket": sent, "tcp_state": 3}, ResetsReceived: uint64(i)}
		if i > 300 {
			s.Events.ResetsReceivedFrom = []KeyCount{{"192.0.2.7", 9}, {"192.0.2.8", 1}}
			s.Events.ResetsSentTo = []KeyCount{{"198.51.100.1", 150}}
			s.Events.ResetsSentFrom = []KeyCount{{"8080", 150}}
		}
	})
	fs := ResetStorm(&cfg, h)
	if len(fs) != 1 {
		t.Fatalf("storm: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{
		"top_peers_resets_received":   "192.0.2.7 (36), 192.0.2.8 (4)",
		"top_peers_resets_sent":       "198.51.100.1 (600)",
		"top_local_ports_resets_sent": "8080 (600)",
		"reasons_resets_sent":         "no_socket (600)",
		"resets_received":             "10",
	})
}
