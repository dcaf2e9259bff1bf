package detect

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Events is what the eBPF event source (package events) counted in a
// namespace; a Summary carries it when events are on, nil otherwise.
type Events struct {
	// ResetsSent (by the kernel's reason), ResetsReceived and
	// ConnectFailures (by reason: refused, timeout, reset, unreachable,
	// other) are totals since the programs were loaded.
	ResetsSent      map[string]uint64
	ResetsReceived  uint64
	ConnectFailures map[string]uint64
	// The rest is what rose since the previous summary of the namespace,
	// the largest entries first, at most MaxEventEntries each:
	// ResetsReceivedFrom by remote address, ResetsSentTo by remote address,
	// ResetsSentFrom by local port, ConnectFailuresTo by destination
	// (remote address:port) and reason, and RetransmitsTo (retransmitted
	// segments) by remote address.
	ResetsReceivedFrom []KeyCount
	ResetsSentTo       []KeyCount
	ResetsSentFrom     []KeyCount
	ConnectFailuresTo  []ConnectFailure
	RetransmitsTo      []KeyCount
}

// MaxEventEntries bounds each per-interval list of an Events.
const MaxEventEntries = 20

// KeyCount is a count for a key (an address, a port or a reason).
type KeyCount struct {
	Key   string
	Count uint64
}

// ConnectFailure counts failed connects towards one destination with one
// reason.
type ConnectFailure struct {
	Destination string
	Reason      string
	Count       uint64
}

// sumKeyCounts adds up the lists that pick returns from the summaries
// after index from (exclusive) up to the latest, and returns the n largest
// sums, largest first, ties by key.
func sumKeyCounts(h *History, from int, pick func(*Events) []KeyCount, n int) []KeyCount {
	sums := map[string]uint64{}
	for i := from + 1; i < h.Len(); i++ {
		s := h.At(i)
		if s.Events == nil {
			continue
		}
		for _, kc := range pick(s.Events) {
			sums[kc.Key] += kc.Count
		}
	}
	return TopKeyCounts(sums, n)
}

// TopKeyCounts returns the n largest non-zero counts of sums, largest
// first, ties by key.
func TopKeyCounts(sums map[string]uint64, n int) []KeyCount {
	out := make([]KeyCount, 0, len(sums))
	for k, v := range sums {
		if v > 0 {
			out = append(out, KeyCount{k, v})
		}
	}
	slices.SortFunc(out, func(a, b KeyCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// rises returns, per key, what a cumulative map rose by from a to b.
func rises(a, b map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, vb := range b {
		if va := a[k]; vb > va {
			out[k] = vb - va
		}
	}
	return out
}

// fmtKeyCounts formats "key (count), key (count)".
func fmtKeyCounts(kcs []KeyCount) string {
	parts := make([]string, len(kcs))
	for i, kc := range kcs {
		parts[i] = kc.Key + " (" + strconv.FormatUint(kc.Count, 10) + ")"
	}
	return strings.Join(parts, ", ")
}

// resetEvidence adds what the event source saw between the summaries at
// index from and the latest to a TCPResetStorm finding's evidence: the
// peers that sent the most resets, and the reasons and local ports of the
// resets sent. It adds nothing when events are off.
func resetEvidence(h *History, from int, ev map[string]string) {
	cur, old := h.Latest(), h.At(from)
	if cur == nil || old == nil || cur.Events == nil || old.Events == nil {
		return
	}
	if top := sumKeyCounts(h, from, func(e *Events) []KeyCount { return e.ResetsReceivedFrom }, 5); len(top) > 0 {
		ev["top_peers_resets_received"] = fmtKeyCounts(top)
	}
	if top := sumKeyCounts(h, from, func(e *Events) []KeyCount { return e.ResetsSentTo }, 5); len(top) > 0 {
		ev["top_peers_resets_sent"] = fmtKeyCounts(top)
	}
	if top := sumKeyCounts(h, from, func(e *Events) []KeyCount { return e.ResetsSentFrom }, 5); len(top) > 0 {
		ev["top_local_ports_resets_sent"] = fmtKeyCounts(top)
	}
	if top := TopKeyCounts(rises(old.Events.ResetsSent, cur.Events.ResetsSent), 5); len(top) > 0 {
		ev["reasons_resets_sent"] = fmtKeyCounts(top)
	}
	if cur.Events.ResetsReceived >= old.Events.ResetsReceived {
		ev["resets_received"] = strconv.FormatUint(cur.Events.ResetsReceived-old.Events.ResetsReceived, 10)
	}
}
