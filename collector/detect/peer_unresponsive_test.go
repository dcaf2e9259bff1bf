package detect

import (
	"fmt"
	"testing"
	"time"
)

// TestPeerUnresponsiveRetransmitEvidence checks the eBPF retransmission
// evidence of TCPPeerUnresponsive: absent when events are off or the
// history has one summary; the latest interval's and the window's counts
// towards the peer; "at least" when a full top list left the peer out;
// and that the finding fires, or not, exactly as without events.
func TestPeerUnresponsiveRetransmitEvidence(t *testing.T) {
	cfg := DefaultConfig()
	full := func(n int) []KeyCount { // a full list without the dead peer
		out := make([]KeyCount, MaxEventEntries)
		for i := range out {
			out[i] = KeyCount{fmt.Sprintf("10.1.0.%d", i), uint64(100 + n)}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		n       int
		events  func(i int) *Events // nil: events off
		group   PeerGroup
		fire    bool
		want    map[string]string // nil: no event evidence
		without bool              // the event keys must be absent
	}{
		{"events off", 3, nil, peer(StallRetransmit, 1, 5, 0), true, nil, true},
		{"one summary: rises reach before the history", 1,
			func(int) *Events { return &Events{RetransmitsTo: []KeyCount{{"10.9.0.1", 7}}} },
			peer(StallRetransmit, 1, 5, 0), true, nil, true},
		{"counts over the window", 4,
			func(i int) *Events {
				return &Events{RetransmitsTo: []KeyCount{{"10.9.0.1", uint64(i + 1)}, {"10.9.0.2", 50}}}
			},
			peer(StallRetransmit, 1, 5, 0), true,
			map[string]string{"retransmitted_segments_last_interval": "4", "retransmitted_segments_window": "9", "retransmitted_segments_window_span": "45s"}, false},
		{"backoff: nothing retransmitted in the latest interval", 3,
			func(i int) *Events {
				if i == 2 {
					return &Events{}
				}
				return &Events{RetransmitsTo: []KeyCount{{"10.9.0.1", 3}}}
			},
			peer(StallRetransmit, 1, 6, 0), true,
			map[string]string{"retransmitted_segments_last_interval": "0", "retransmitted_segments_window": "3"}, false},
		{"a full list without the peer: lower bound", 3,
			func(i int) *Events {
				if i == 1 {
					return &Events{RetransmitsTo: full(i)}
				}
				return &Events{RetransmitsTo: []KeyCount{{"10.9.0.1", 2}}}
			},
			peer(StallRetransmit, 1, 5, 0), true,
			map[string]string{"retransmitted_segments_last_interval": "2", "retransmitted_segments_window": "at least 2"}, false},
		{"retransmissions without a stalled socket do not fire", 3,
			func(int) *Events { return &Events{RetransmitsTo: []KeyCount{{"10.9.0.1", 500}}} },
			peer(StallRetransmit, 0, 5, 0), false, nil, false},
		{"zero window: no retransmission evidence", 3,
			func(int) *Events { return &Events{RetransmitsTo: []KeyCount{{"10.9.0.1", 500}}} },
			peer(StallZeroWindow, 2, 3, time.Hour), false, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := build(tc.n, 15*time.Second, func(i int, s *Summary) {
				s.HealthTime = s.Time
				s.Peers = []PeerGroup{tc.group}
				if tc.events != nil {
					s.Events = tc.events(i)
				}
			})
			fs := PeerUnresponsive(&cfg, h)
			if got := len(fs) == 1; got != tc.fire {
				t.Fatalf("fired %v, want %v: %v", got, tc.fire, fs)
			}
			if !tc.fire {
				return
			}
			f := &fs[0]
			checkEvidence(t, f, tc.want)
			if tc.without {
				for _, k := range []string{"retransmitted_segments_last_interval", "retransmitted_segments_window", "retransmitted_segments_window_span"} {
					if v, ok := f.Evidence[k]; ok {
						t.Errorf("evidence %s = %q, want none", k, v)
					}
				}
			}
			// The rest of the finding is what it is without events.
			checkEvidence(t, f, map[string]string{"remote_address": "10.9.0.1", "sockets": "1", "max_retransmissions": fmt.Sprint(tc.group.MaxRetrans)})
		})
	}
}
