package detect

import (
	"maps"
	"net/netip"
	"strconv"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// AlertTimeWaitExhaustion is the alert name of TimeWaitExhaustion's findings.
const AlertTimeWaitExhaustion = "TCPTimeWaitExhaustion"

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
