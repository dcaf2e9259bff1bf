package detect

import (
	"net/netip"
	"strconv"
)

// PeerUnresponsive finds remote addresses towards which at least
// PeerMinSockets sockets have their retransmission timer running with at
// least PeerRetransMin consecutive RTO retransmissions (the collector
// counts only those): the peer acknowledges nothing. Warning severity.
func PeerUnresponsive(cfg *Config, h *History) []Finding {
	return peerFindings(cfg, h, StallRetransmit, 0)
}

// retransmitEvidence adds to a TCPPeerUnresponsive finding's evidence what
// the eBPF event source counted of segments retransmitted towards the peer
// (tcp:tcp_retransmit_skb): in the latest interval between two samples and
// over the history the detectors keep. A dump sees a stall only while it
// lasts; the counts also hold the retransmissions of sockets that stalled
// and went away between dumps, and say whether the stalled sockets are
// still retransmitting (a count that stops rising while the sockets stay
// is the exponential backoff stretching out). The counts come from the
// MaxEventEntries peers with the most retransmissions of each interval; an
// interval whose list is full and leaves the peer out makes the count a
// lower bound, written "at least N". Nothing is added when events are off.
//
// Retransmission counts alone do not make the finding fire: the tracepoint
// counts fast retransmissions and loss probes towards peers that answer as
// well as timeouts towards ones that do not, and only the consecutive RTO
// count of a dump (icsk_retransmits) says that nothing is acknowledged.
func retransmitEvidence(h *History, remote netip.Addr, ev map[string]string) {
	cur := h.Latest()
	// The rises of the first summary reach back before the history (to
	// the programs' loading, for the first summary ever): from the second.
	if cur == nil || cur.Events == nil || h.Len() < 2 {
		return
	}
	key := remote.Unmap().String()
	count := func(e *Events) (n uint64, exact bool) {
		for _, kc := range e.RetransmitsTo {
			if kc.Key == key {
				return kc.Count, true
			}
		}
		return 0, len(e.RetransmitsTo) < MaxEventEntries
	}
	format := func(n uint64, exact bool) string {
		if exact {
			return strconv.FormatUint(n, 10)
		}
		return "at least " + strconv.FormatUint(n, 10)
	}
	ev["retransmitted_segments_last_interval"] = format(count(cur.Events))
	var sum uint64
	exact := true
	for i := 1; i < h.Len(); i++ {
		if e := h.At(i).Events; e != nil {
			n, ok := count(e)
			sum += n
			exact = exact && ok
		}
	}
	ev["retransmitted_segments_window"] = format(sum, exact)
	ev["retransmitted_segments_window_span"] = fmtDuration(cur.Time.Sub(h.At(0).Time))
}
