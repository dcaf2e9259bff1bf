package detect

import (
	"slices"
	"strconv"
	"strings"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// AlertSynRecvSurge is the alert name of SynRecvSurge's findings.
const AlertSynRecvSurge = "TCPSynRecvSurge"

// namespaceWideReasonSynRecv is the reason of SynRecvSurge's
// namespace-wide finding.
const namespaceWideReasonSynRecv = "syn_flood"

// synLimit is the number of half-open connections a listener holds before
// the kernel sends syncookies or drops SYNs: the accept backlog (summed over
// SO_REUSEPORT sockets) and, with syncookies off, three quarters of
// tcp_max_syn_backlog per socket (the kernel drops unproven SYNs past that).
func synLimit(l *Listener, s *procnet.Sysctls) uint64 {
	lim := l.QueueLimit
	if sc, ok := s.Int(procnet.SysctlTCPSyncookies); ok && sc == 0 {
		if msb, ok := s.Int(procnet.SysctlTCPMaxSynBacklog); ok && msb > 0 {
			perSock := uint64(msb - msb>>2)
			lim = min(lim, perSock*uint64(max(l.Sockets, 1)))
		}
	}
	return max(lim, 1)
}

// synBaseline returns the median SYN_RECV count of the listener over the
// history before cfg.BaselineRecent, and false while that stretch is
// shorter than cfg.BaselineMin.
func synBaseline(cfg *Config, h *History, k ListenerKey) (float64, bool) {
	cur := h.Latest()
	end := h.indexAtOrBefore(cur.Time.Add(-cfg.BaselineRecent))
	if end < 0 || h.At(end).Time.Sub(h.At(0).Time) < cfg.BaselineMin {
		return 0, false
	}
	vals := make([]uint64, 0, end+1)
	for i := 0; i <= end; i++ {
		ls := h.At(i).Listeners
		j, found := slices.BinarySearchFunc(ls, k, func(l Listener, k ListenerKey) int { return l.ListenerKey.Compare(k) })
		if found {
			vals = append(vals, ls[j].SynRecv)
		} else {
			vals = append(vals, 0)
		}
	}
	slices.Sort(vals)
	n := len(vals)
	if n%2 == 1 {
		return float64(vals[n/2]), true
	}
	return (float64(vals[n/2-1]) + float64(vals[n/2])) / 2, true
}

// sourceSpread says what the distinct source addresses of a listener's
// half-open connections suggest.
func sourceSpread(cfg *Config, l *Listener) string {
	n := uint64(l.SynSources)
	switch {
	case l.SynSources >= cfg.SpoofSources && (l.SynSourcesCapped || 2*n >= l.SynRecv):
		return "many random sources: spoofed SYN flood likely"
	case l.SynSources <= 10:
		return "few sources: a flash crowd behind few addresses or one client"
	}
	return "mixed sources"
}

func fmtPrefixes(ps []PrefixCount) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, p.Prefix.String()+" ("+fmtUint(p.Count)+")")
	}
	return strings.Join(parts, ", ")
}

// SynRecvSurge finds listeners under a SYN surge: SYN_RECV at its limit,
// far above its own baseline, or syncookies (or SYN drops) rising while the
// listener's SYN queue is at least half full. When the kernel sends
// syncookies or drops SYNs and no listener can be named (the queue drained
// between samples, or tcp_syncookies=2 answers every SYN with a cookie), one
// namespace-wide finding with reason=syn_flood is returned instead.
// Listener findings are critical when tcp_syncookies is 0 (SYNs past the
// limit are dropped), warning otherwise.
func SynRecvSurge(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil {
		return nil
	}
	prev := previous(h)
	var cookies float64
	if r, ok := counterRate(prev, cur, procnet.FieldSyncookiesSent); ok {
		cookies = r
	}
	if r, ok := counterRate(prev, cur, procnet.FieldTCPReqQFullDoCookies); ok && r > cookies {
		cookies = r
	}
	drops, _ := counterRate(prev, cur, procnet.FieldTCPReqQFullDrop)
	flood := hot(cookies, cfg.CookieRate) || hot(drops, cfg.DropRate)
	sev := Warning
	syncookies, scOK := cur.Sysctls.Int(procnet.SysctlTCPSyncookies)
	if scOK && syncookies == 0 {
		sev = Critical
	}

	var out []Finding
	var busiest *Listener
	var busiestFill float64
	for i := range cur.Listeners {
		l := &cur.Listeners[i]
		if l.SynRecv == 0 {
			continue
		}
		limit := synLimit(l, &cur.Sysctls)
		fill := float64(l.SynRecv) / float64(limit)
		if fill > busiestFill {
			busiest, busiestFill = l, fill
		}
		var reasons []string
		if l.SynRecv >= cfg.SynQueueMin && fill >= cfg.SynQueueRatio {
			reasons = append(reasons, "syn_queue_full")
		}
		baseline, baseOK := 0.0, false
		if l.SynRecv >= cfg.SynBaselineMin {
			baseline, baseOK = synBaseline(cfg, h, l.ListenerKey)
			if baseOK && float64(l.SynRecv) >= cfg.SynBaselineFactor*baseline {
				reasons = append(reasons, "above_baseline")
			}
		}
		if flood && fill >= 0.5 {
			if hot(cookies, cfg.CookieRate) {
				reasons = append(reasons, "syncookies")
			}
			if hot(drops, cfg.DropRate) {
				reasons = append(reasons, "syn_drops")
			}
		}
		if len(reasons) == 0 {
			continue
		}
		name := listenerAddr(l.ListenerKey)
		distinct := strconv.Itoa(l.SynSources)
		if l.SynSourcesCapped {
			distinct += "+"
		}
		ev := map[string]string{
			"listener":            name,
			"syn_recv":            fmtUint(l.SynRecv),
			"limit":               fmtUint(limit),
			"fill":                fmtFloat(fill),
			"cookies_per_second":  fmtFloat(cookies),
			"drops_per_second":    fmtFloat(drops),
			"distinct_sources":    distinct,
			"top_source_prefixes": fmtPrefixes(l.TopSources),
			"sources":             sourceSpread(cfg, l),
			"reasons":             strings.Join(reasons, ","),
			// Request sockets whose SYN-ACK went unanswered at least once.
			"retransmitted_handshakes": fmtUint(l.SynRecvRetransmitted),
		}
		if baseOK {
			ev["baseline"] = fmtFloat(baseline)
		}
		if scOK {
			ev["tcp_syncookies"] = strconv.FormatInt(syncookies, 10)
		}
		out = append(out, Finding{
			Alert:    AlertSynRecvSurge,
			Severity: sev,
			Labels:   listenerLabels(l.ListenerKey),
			Summary:  "SYN surge on " + name + ": " + fmtUint(l.SynRecv) + " half-open connections (limit " + fmtUint(limit) + ")",
			Description: "Listener " + name + " (" + l.Family.String() + ") holds " + fmtUint(l.SynRecv) +
				" SYN_RECV connections against a SYN queue limit of " + fmtUint(limit) +
				"; the kernel sends " + fmtFloat(cookies) + " syncookies/s and drops " + fmtFloat(drops) +
				" SYNs/s. " + distinct + " distinct sources (" + ev["sources"] + "); top prefixes: " + ev["top_source_prefixes"] + ". " +
				fmtUint(l.SynRecvRetransmitted) + " of the handshakes had their SYN-ACK retransmitted (the client never answered: spoofed sources, or a firewall eating the final ACK).",
			Evidence: ev,
			Value:    float64(l.SynRecv),
			For:      cfg.SynRecvFor,
		})
	}
	if len(out) > 0 || !flood {
		return out
	}
	ev := map[string]string{
		"cookies_per_second": fmtFloat(cookies),
		"drops_per_second":   fmtFloat(drops),
	}
	if scOK {
		ev["tcp_syncookies"] = strconv.FormatInt(syncookies, 10)
	}
	if busiest != nil {
		ev["busiest_listener"] = listenerAddr(busiest.ListenerKey)
		ev["busiest_syn_recv"] = fmtUint(busiest.SynRecv)
	}
	return []Finding{{
		Alert:    AlertSynRecvSurge,
		Severity: sev,
		Labels:   map[string]string{"reason": namespaceWideReasonSynRecv},
		Summary:  "SYN flood: the kernel sends " + fmtFloat(cookies) + " syncookies/s and drops " + fmtFloat(drops) + " SYNs/s",
		Description: "A SYN queue of this namespace is full: the kernel answers " + fmtFloat(cookies) +
			" SYNs/s with syncookies and drops " + fmtFloat(drops) +
			" SYNs/s, but no listener's SYN_RECV count shows it in the latest sample.",
		Evidence: ev,
		Value:    max(cookies, drops),
		For:      cfg.SynRecvFor,
	}}
}
