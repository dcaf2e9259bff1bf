package detect

import (
	"cmp"
	"slices"
	"strconv"
)

// AlertConnectFailures is the alert name of ConnectFailures' findings.
const AlertConnectFailures = "TCPConnectFailures"

// ConnectFailures finds destinations whose connects are refused or time
// out: at least ConnectFailureMinRate such failures per second over the
// last ConnectFailureRecent, by (destination, reason), from the eBPF event
// source (nothing when events are off). It reports the
// MaxConnectFailureFindings destinations with the highest rates.
func ConnectFailures(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil || cur.Events == nil {
		return nil
	}
	recent := cfg.ConnectFailureRecent
	if recent <= 0 {
		recent = DefaultConfig().ConnectFailureRecent
	}
	i := h.indexAtOrBefore(cur.Time.Add(-recent))
	if i < 0 {
		i = 0
	}
	from := h.At(i)
	window := cur.Time.Sub(from.Time)
	if window <= 0 {
		return nil
	}
	type key struct{ dst, reason string }
	sums := map[key]uint64{}
	for j := i + 1; j < h.Len(); j++ {
		s := h.At(j)
		if s.Events == nil {
			continue
		}
		for _, f := range s.Events.ConnectFailuresTo {
			if f.Reason == "refused" || f.Reason == "timeout" {
				sums[key{f.Destination, f.Reason}] += f.Count
			}
		}
	}
	type hit struct {
		key
		n    uint64
		rate float64
	}
	var hits []hit
	for k, n := range sums {
		rate := float64(n) / window.Seconds()
		if rate > 0 && rate >= cfg.ConnectFailureMinRate {
			hits = append(hits, hit{k, n, rate})
		}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if c := cmp.Compare(b.rate, a.rate); c != 0 {
			return c
		}
		if c := cmp.Compare(a.dst, b.dst); c != 0 {
			return c
		}
		return cmp.Compare(a.reason, b.reason)
	})
	if len(hits) > MaxConnectFailureFindings {
		hits = hits[:MaxConnectFailureFindings]
	}
	out := make([]Finding, 0, len(hits))
	for _, x := range hits {
		what := map[string]string{"refused": "refused (RST in reply to the SYN: nothing listens, or a firewall rejects)",
			"timeout": "timed out (no answer to the SYNs: the host or a firewall drops them)"}[x.reason]
		out = append(out, Finding{
			Alert:    AlertConnectFailures,
			Severity: Warning,
			Labels:   map[string]string{"destination": x.dst, "reason": x.reason},
			Summary:  "Connects to " + x.dst + " " + x.reason + ": " + fmtFloat(x.rate) + "/s",
			Description: strconv.FormatUint(x.n, 10) + " connects to " + x.dst + " were " + what + " over the last " +
				fmtDuration(window) + ".",
			Evidence: map[string]string{
				"destination": x.dst,
				"reason":      x.reason,
				"failures":    strconv.FormatUint(x.n, 10),
				"rate":        fmtFloat(x.rate),
				"window":      fmtDuration(window),
			},
			Value: x.rate,
			For:   cfg.ConnectFailureFor,
		})
	}
	return out
}

// MaxConnectFailureFindings bounds the TCPConnectFailures findings of one
// namespace.
const MaxConnectFailureFindings = 10
