package detect

import (
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// Alert names of the findings.
const (
	AlertSynRecvSurge          = "TCPSynRecvSurge"
	AlertAcceptQueueOverflow   = "TCPAcceptQueueOverflow"
	AlertCloseWaitLeak         = "TCPCloseWaitLeak"
	AlertTimeWaitExhaustion    = "TCPTimeWaitExhaustion"
	AlertResetStorm            = "TCPResetStorm"
	AlertOrphanPressure        = "TCPOrphanPressure"
	namespaceWideReasonSynRecv = "syn_flood"
)

// Detectors runs every detector with one Config.
type Detectors struct {
	cfg Config
}

// New returns Detectors with cfg, which must pass Validate.
func New(cfg Config) (*Detectors, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Detectors{cfg: cfg}, nil
}

// Evaluate runs every detector over h and returns their findings, in the
// order TCPSynRecvSurge, TCPAcceptQueueOverflow, TCPCloseWaitLeak,
// TCPTimeWaitExhaustion, TCPResetStorm, TCPOrphanPressure, the
// connection-health detectors (see connHealth), TCPConnectFailures, then
// TCPHalfOpenSuspect. It returns nil for an empty history.
func (d *Detectors) Evaluate(h *History) []Finding {
	if h == nil || h.Len() == 0 {
		return nil
	}
	var out []Finding
	out = append(out, SynRecvSurge(&d.cfg, h)...)
	out = append(out, AcceptQueueOverflow(&d.cfg, h)...)
	out = append(out, CloseWaitLeak(&d.cfg, h)...)
	out = append(out, TimeWaitExhaustion(&d.cfg, h)...)
	out = append(out, ResetStorm(&d.cfg, h)...)
	out = append(out, OrphanPressure(&d.cfg, h)...)
	out = append(out, connHealth(&d.cfg, h)...)
	out = append(out, ConnectFailures(&d.cfg, h)...)
	out = append(out, HalfOpenSuspect(&d.cfg, h)...)
	return out
}

// counterRate returns the per-second rise of counter f from a to b. It
// fails when either lacks the counter, b is not after a, or the counter
// went down (the namespace's counters were reset).
func counterRate(a, b *Summary, f procnet.Field) (float64, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	va, oka := a.Counters.Get(f)
	vb, okb := b.Counters.Get(f)
	dt := b.Time.Sub(a.Time).Seconds()
	if !oka || !okb || dt <= 0 || vb < va {
		return 0, false
	}
	return float64(vb-va) / dt, true
}

// previous returns the summary before the latest, or nil.
func previous(h *History) *Summary { return h.At(h.Len() - 2) }

// hot reports whether a rate crosses a threshold; a zero threshold means
// any rise.
func hot(rate, threshold float64) bool { return rate > 0 && rate >= threshold }

func fmtFloat(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

func fmtUint(v uint64) string { return strconv.FormatUint(v, 10) }

// owner words a group's owning process: its command ("an unknown process"
// when none was found) and its PIDs as a comma list.
func owner(command string, pids []int) (who, pidList string) {
	who = command
	if who == "" {
		who = "an unknown process"
	}
	ps := make([]string, 0, len(pids))
	for _, p := range pids {
		ps = append(ps, strconv.Itoa(p))
	}
	return who, strings.Join(ps, ",")
}

func fmtDuration(d time.Duration) string { return d.Round(time.Second).String() }

func listenerAddr(k ListenerKey) string { return netip.AddrPortFrom(k.Addr, k.Port).String() }

func listenerLabels(k ListenerKey) map[string]string {
	return map[string]string{
		"family":  k.Family.String(),
		"address": k.Addr.String(),
		"port":    strconv.Itoa(int(k.Port)),
	}
}

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

// AcceptQueueOverflow finds listeners whose accept queue is near its limit,
// and listeners at least half full while ListenOverflows rises. When
// ListenOverflows rises and no listener can be named, it returns one
// namespace-wide finding with reason=listen_overflows. ListenDrops is
// evidence only: it also counts SYNs dropped by a full SYN queue.
func AcceptQueueOverflow(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil {
		return nil
	}
	prev := previous(h)
	overflows, _ := counterRate(prev, cur, procnet.FieldListenOverflows)
	drops, _ := counterRate(prev, cur, procnet.FieldListenDrops)
	losing := hot(overflows, cfg.OverflowRate)
	var out []Finding
	for i := range cur.Listeners {
		l := &cur.Listeners[i]
		if l.QueueLen == 0 {
			continue
		}
		limit := max(l.QueueLimit, 1)
		fill := float64(l.QueueLen) / float64(limit)
		if fill < cfg.AcceptQueueRatio && !(losing && fill >= 0.5) {
			continue
		}
		name := listenerAddr(l.ListenerKey)
		out = append(out, Finding{
			Alert:    AlertAcceptQueueOverflow,
			Severity: Warning,
			Labels:   listenerLabels(l.ListenerKey),
			Summary:  "Accept queue of " + name + " is full: " + fmtUint(l.QueueLen) + " of " + fmtUint(limit),
			Description: "Listener " + name + " (" + l.Family.String() + ") has " + fmtUint(l.QueueLen) +
				" connections waiting for accept() against a limit of " + fmtUint(limit) +
				": the application is not accepting fast enough. The kernel counts " + fmtFloat(overflows) +
				" listen overflows/s and " + fmtFloat(drops) + " listen drops/s.",
			Evidence: map[string]string{
				"listener":                name,
				"queue_length":            fmtUint(l.QueueLen),
				"queue_limit":             fmtUint(limit),
				"fill":                    fmtFloat(fill),
				"sockets":                 strconv.Itoa(l.Sockets),
				"overflows_per_second":    fmtFloat(overflows),
				"listen_drops_per_second": fmtFloat(drops),
			},
			Value: fill,
			For:   cfg.AcceptQueueFor,
		})
	}
	if len(out) > 0 || !losing {
		return out
	}
	return []Finding{{
		Alert:    AlertAcceptQueueOverflow,
		Severity: Warning,
		Labels:   map[string]string{"reason": "listen_overflows"},
		Summary:  "Connections are dropped at full accept queues: " + fmtFloat(overflows) + " overflows/s",
		Description: "The kernel counts " + fmtFloat(overflows) + " listen overflows/s (ListenOverflows) and " +
			fmtFloat(drops) + " listen drops/s: completed handshakes find an accept queue full, but no listener's queue was near its limit in the latest sample.",
		Evidence: map[string]string{
			"overflows_per_second":    fmtFloat(overflows),
			"listen_drops_per_second": fmtFloat(drops),
		},
		Value: overflows,
		For:   cfg.AcceptQueueFor,
	}}
}

// closeWaitCount returns the count of the group with g's port and command
// in s, 0 when absent.
func closeWaitCount(s *Summary, port, command string) uint64 {
	for i := range s.CloseWait {
		if g := &s.CloseWait[i]; g.Port == port && g.Command == command {
			return g.Count
		}
	}
	return 0
}

// closeWaitGrowth returns how much a group grew over the growth window and
// whether it kept growing: the mean count of each quarter of the window is
// above the previous quarter's. The history must cover at least 90% of the
// window.
func closeWaitGrowth(cfg *Config, h *History, port, command string) (uint64, bool) {
	cur := h.Latest()
	w := cfg.CloseWaitGrowthWindow
	start := cur.Time.Add(-w)
	if h.At(0).Time.After(start.Add(w / 10)) {
		return 0, false
	}
	var sums [4]float64
	var ns [4]int
	var first *Summary
	for i := 0; i < h.Len(); i++ {
		s := h.At(i)
		if s.Time.Before(start) {
			continue
		}
		if first == nil {
			first = s
		}
		q := min(int(4*s.Time.Sub(start)/w), 3)
		sums[q] += float64(closeWaitCount(s, port, command))
		ns[q]++
	}
	for q := range ns {
		if ns[q] == 0 {
			return 0, false
		}
		if q > 0 && sums[q]/float64(ns[q]) <= sums[q-1]/float64(ns[q-1]) {
			return 0, false
		}
	}
	last := closeWaitCount(cur, port, command)
	begin := closeWaitCount(first, port, command)
	if last <= begin {
		return 0, false
	}
	return last - begin, true
}

// CloseWaitLeak finds local ports and commands that leave sockets in
// CLOSE_WAIT: at least CloseWaitThreshold sockets older than
// CloseWaitMinAge, or a count that kept growing by CloseWaitGrowth over
// CloseWaitGrowthWindow.
func CloseWaitLeak(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil {
		return nil
	}
	var out []Finding
	for i := range cur.CloseWait {
		g := &cur.CloseWait[i]
		var reasons []string
		value := float64(g.Old)
		if g.Old >= cfg.CloseWaitThreshold {
			reasons = append(reasons, "old_sockets")
		}
		// Growth is at most the current count, so a group smaller than
		// the threshold skips the walk over the whole history.
		var growth uint64
		var growing bool
		if g.Count >= cfg.CloseWaitGrowth {
			growth, growing = closeWaitGrowth(cfg, h, g.Port, g.Command)
		}
		if growing && growth >= cfg.CloseWaitGrowth {
			reasons = append(reasons, "growing")
			if len(reasons) == 1 {
				value = float64(g.Count)
			}
		}
		if len(reasons) == 0 {
			continue
		}
		who, pids := owner(g.Command, g.PIDs)
		ev := map[string]string{
			"port":        g.Port,
			"command":     g.Command,
			"pids":        pids,
			"sockets":     fmtUint(g.Count),
			"old_sockets": fmtUint(g.Old),
			"oldest_age":  fmtDuration(g.Oldest),
			"min_age":     fmtDuration(cfg.CloseWaitMinAge),
			"reasons":     strings.Join(reasons, ","),
		}
		if growing {
			ev["growth"] = fmtUint(growth)
			ev["growth_window"] = fmtDuration(cfg.CloseWaitGrowthWindow)
		}
		out = append(out, Finding{
			Alert:    AlertCloseWaitLeak,
			Severity: Warning,
			Labels:   map[string]string{"port": g.Port, "command": g.Command},
			Summary:  "CLOSE_WAIT leak: " + who + " on port " + g.Port + " holds " + fmtUint(g.Count) + " closed connections, the oldest " + fmtDuration(g.Oldest) + " old",
			Description: who + " (pid " + ev["pids"] + ", local port " + g.Port + ") holds " + fmtUint(g.Count) +
				" sockets in CLOSE_WAIT, " + fmtUint(g.Old) + " of them older than " + ev["min_age"] +
				" (oldest " + ev["oldest_age"] + "): the peer closed and the application never called close().",
			Evidence: ev,
			Value:    value,
			For:      cfg.CloseWaitFor,
		})
	}
	return out
}

// twReusable reports whether connect() may reuse a TIME_WAIT socket's port
// towards d under tcp_tw_reuse (1: always, 2: loopback traffic only).
func twReusable(reuse int64, d *Destination) bool {
	return reuse == 1 || (reuse == 2 && (d.Local.IsLoopback() || d.Remote.IsLoopback()))
}

// forecastCandidates is how many of the most used destinations are
// forecast even when they hold less than PortsRatio of the ports.
const forecastCandidates = 16

// TimeWaitExhaustion finds destinations whose outbound sockets hold
// PortsRatio (warning) or PortsCriticalRatio (critical, an extra finding) of
// the usable local ports, TIME_WAIT included unless tcp_tw_reuse lets
// connect() reuse them, or whose ports, at the rate they grew over
// ForecastWindow, run out within ForecastHorizon (warning); and TIME_WAIT
// sockets at TWBucketsRatio of tcp_max_tw_buckets, forecast to reach it
// within ForecastHorizon, or TCPTimeWaitOverflow rising (reason=tw_buckets).
func TimeWaitExhaustion(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil {
		return nil
	}
	var out []Finding
	usable, ok := cur.Sysctls.UsablePorts()
	fresh := !cur.DestinationsTime.IsZero() && cur.Time.Sub(cur.DestinationsTime) <= cfg.StaleAfter
	if ok && usable > 0 && fresh {
		reuse, _ := cur.Sysctls.Int(procnet.SysctlTCPTWReuse)
		pr := cur.Sysctls.PortRange
		start := destinationsStart(cfg, h)
		for i := range cur.Destinations {
			d := &cur.Destinations[i]
			if i >= forecastCandidates && float64(d.Used)/float64(usable) < cfg.PortsRatio {
				break // sorted by Used: the rest are lower
			}
			used := usedPorts(reuse, d)
			ratio := float64(used) / float64(usable)
			share := ratio >= cfg.PortsRatio
			fc := destinationForecast(cfg, start, cur, d, used, reuse, usable, !share)
			if !share && !fc.soon(cfg.ForecastHorizon) {
				continue
			}
			dest := d.Local.String() + " -> " + netip.AddrPortFrom(d.Remote, d.RemotePort).String()
			ev := map[string]string{
				"destination":     dest,
				"used":            fmtUint(used),
				"usable":          strconv.Itoa(usable),
				"sockets":         fmtUint(d.Used),
				"time_wait":       fmtUint(d.TimeWait),
				"time_wait_share": fmtFloat(float64(d.TimeWait) / float64(max(d.Used, 1))),
				"tcp_tw_reuse":    strconv.FormatInt(reuse, 10),
				"port_range":      strconv.Itoa(int(pr.Low)) + "-" + strconv.Itoa(int(pr.High)),
				"sample_age":      fmtDuration(cur.Time.Sub(cur.DestinationsTime)),
				"trigger":         "share",
			}
			forecastEvidence(ev, "ports_per_second", fc)
			summary := "Local ports towards " + dest + " are running out: " + fmtUint(used) + " of " + strconv.Itoa(usable) + " in use"
			if !share {
				ev["trigger"] = "forecast"
				summary = "Local ports towards " + dest + " run out in " + fmtDuration(fc.ETA) + ": " + fmtUint(used) + " of " +
					strconv.Itoa(usable) + " in use, " + fmtFloat(fc.Rate) + " more each second"
			}
			labels := func() map[string]string {
				return map[string]string{
					"reason":         "local_ports",
					"family":         d.Family.String(),
					"local_address":  d.Local.String(),
					"remote_address": d.Remote.String(),
					"remote_port":    strconv.Itoa(int(d.RemotePort)),
				}
			}
			desc := "Outbound sockets from " + d.Local.String() + " to " + netip.AddrPortFrom(d.Remote, d.RemotePort).String() +
				" hold " + fmtUint(used) + " of the " + strconv.Itoa(usable) + " usable local ports (" + fmtFloat(100*ratio) +
				"%), " + fmtUint(d.TimeWait) + " of " + fmtUint(d.Used) + " sockets in TIME_WAIT; connect() to it fails with EADDRNOTAVAIL once none is left."
			desc += forecastSentence(fc, "They", cfg.ForecastWindow)
			f := Finding{
				Alert:       AlertTimeWaitExhaustion,
				Severity:    Warning,
				Labels:      labels(),
				Summary:     summary,
				Description: desc,
				Evidence:    ev,
				Value:       ratio,
				For:         cfg.TimeWaitFor,
			}
			out = append(out, f)
			if ratio >= cfg.PortsCriticalRatio {
				f.Severity = Critical
				f.Labels = labels()
				f.Evidence = maps.Clone(ev)
				out = append(out, f)
			}
		}
	}

	tw, twOK := cur.Sockstat.Get(procnet.SockstatTCPTimeWait)
	if !twOK && !cur.DestinationsTime.IsZero() {
		tw, twOK = int64(cur.TimeWait), true
	}
	buckets, bOK := cur.Sysctls.Int(procnet.SysctlTCPMaxTWBuckets)
	overflow, _ := counterRate(previous(h), cur, procnet.FieldTCPTimeWaitOverflow)
	var ratio float64
	var fc forecast
	if twOK && bOK && buckets > 0 {
		ratio = float64(tw) / float64(buckets)
		fc = sockstatForecast(cfg, h, procnet.SockstatTCPTimeWait, buckets)
	}
	if ratio >= cfg.TWBucketsRatio || overflow > 0 || fc.soon(cfg.ForecastHorizon) {
		ev := map[string]string{"time_wait_overflows_per_second": fmtFloat(overflow)}
		forecastEvidence(ev, "time_wait_per_second", fc)
		if twOK {
			ev["time_wait"] = strconv.FormatInt(tw, 10)
		}
		if bOK {
			ev["tcp_max_tw_buckets"] = strconv.FormatInt(buckets, 10)
		}
		out = append(out, Finding{
			Alert:    AlertTimeWaitExhaustion,
			Severity: Warning,
			Labels:   map[string]string{"reason": "tw_buckets"},
			Summary:  "TIME_WAIT sockets at " + ev["time_wait"] + " of tcp_max_tw_buckets " + ev["tcp_max_tw_buckets"],
			Description: "The namespace holds " + ev["time_wait"] + " TIME_WAIT sockets against tcp_max_tw_buckets " + ev["tcp_max_tw_buckets"] +
				"; " + fmtFloat(overflow) + " closing connections/s skip TIME_WAIT (TCPTimeWaitOverflow)." + forecastSentence(fc, "TIME_WAIT sockets", cfg.ForecastWindow),
			Evidence: ev,
			Value:    ratio,
			For:      cfg.TimeWaitFor,
		})
	}
	return out
}

// resetCounters are the counters TCPResetStorm watches, by label value.
var resetCounters = []struct {
	name  string
	field procnet.Field
	what  string
}{
	{"out_rsts", procnet.FieldOutRsts, "resets sent (OutRsts)"},
	{"estab_resets", procnet.FieldEstabResets, "established connections reset (EstabResets)"},
	{"abort_on_timeout", procnet.FieldTCPAbortOnTimeout, "connections aborted on timeout (TCPAbortOnTimeout)"},
}

// ResetStorm finds reset and abort counters whose rate over ResetRecent is
// at least ResetMinRate and ResetFactor times their rate over the rest of
// the history (which must span BaselineMin).
func ResetStorm(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil {
		return nil
	}
	i := h.indexAtOrBefore(cur.Time.Add(-cfg.ResetRecent))
	if i < 0 {
		return nil
	}
	recent, oldest := h.At(i), h.At(0)
	if recent.Time.Sub(oldest.Time) < cfg.BaselineMin {
		return nil
	}
	var out []Finding
	for _, c := range resetCounters {
		rate, ok := counterRate(recent, cur, c.field)
		if !ok || rate < cfg.ResetMinRate || rate == 0 {
			continue
		}
		base, ok := counterRate(oldest, recent, c.field)
		if !ok || rate < cfg.ResetFactor*base {
			continue
		}
		ev := map[string]string{
			"counter":         c.name,
			"rate":            fmtFloat(rate),
			"baseline_rate":   fmtFloat(base),
			"recent_window":   fmtDuration(cur.Time.Sub(recent.Time)),
			"baseline_window": fmtDuration(recent.Time.Sub(oldest.Time)),
		}
		resetEvidence(h, i, ev)
		out = append(out, Finding{
			Alert:    AlertResetStorm,
			Severity: Warning,
			Labels:   map[string]string{"counter": c.name},
			Summary:  "Reset storm: " + fmtFloat(rate) + " " + c.what + "/s, baseline " + fmtFloat(base) + "/s",
			Description: "The namespace counts " + fmtFloat(rate) + " " + c.what + " per second over the last " +
				fmtDuration(cur.Time.Sub(recent.Time)) + ", against " + fmtFloat(base) + "/s over the " +
				fmtDuration(recent.Time.Sub(oldest.Time)) + " before.",
			Evidence: ev,
			Value:    rate,
			For:      cfg.ResetFor,
		})
	}
	return out
}

// OrphanPressure finds orphaned sockets at OrphanRatio (warning) and
// OrphanCriticalRatio (critical, an extra finding) of tcp_max_orphans, or
// forecast to reach it within ForecastHorizon at the rate they grew over
// ForecastWindow (warning). Both numbers are host-wide and tcp_max_orphans
// is readable only in the initial namespace, so only the host's sampler can
// fire it.
func OrphanPressure(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil {
		return nil
	}
	orphans, ok1 := cur.Sockstat.Get(procnet.SockstatTCPOrphan)
	limit, ok2 := cur.Sysctls.Int(procnet.SysctlTCPMaxOrphans)
	if !ok1 || !ok2 || limit <= 0 {
		return nil
	}
	ratio := float64(orphans) / float64(limit)
	fc := sockstatForecast(cfg, h, procnet.SockstatTCPOrphan, limit)
	var out []Finding
	for _, tier := range []struct {
		sev Severity
		at  float64
	}{{Warning, cfg.OrphanRatio}, {Critical, cfg.OrphanCriticalRatio}} {
		trigger := "share"
		if ratio < tier.at {
			if tier.sev != Warning || !fc.soon(cfg.ForecastHorizon) {
				continue
			}
			trigger = "forecast"
		}
		ev := map[string]string{
			"orphans":         strconv.FormatInt(orphans, 10),
			"tcp_max_orphans": strconv.FormatInt(limit, 10),
			"ratio":           fmtFloat(ratio),
			"trigger":         trigger,
		}
		forecastEvidence(ev, "orphans_per_second", fc)
		out = append(out, Finding{
			Alert:    AlertOrphanPressure,
			Severity: tier.sev,
			Labels:   map[string]string{},
			Summary:  "Orphaned sockets at " + fmtFloat(100*ratio) + "% of tcp_max_orphans",
			Description: "The host holds " + strconv.FormatInt(orphans, 10) + " orphaned TCP sockets against tcp_max_orphans " +
				strconv.FormatInt(limit, 10) + "; past the limit (reached sooner under memory pressure) the kernel resets closing connections." +
				forecastSentence(fc, "Orphaned sockets", cfg.ForecastWindow),
			Evidence: ev,
			Value:    ratio,
			For:      cfg.OrphanFor,
		})
	}
	return out
}
