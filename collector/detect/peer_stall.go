package detect

import (
	"strconv"
	"strings"
	"time"
)

// Alert names of the connection-health findings.
const (
	AlertPeerUnresponsive     = "TCPPeerUnresponsive"
	AlertPeerZeroWindow       = "TCPPeerZeroWindow"
	AlertClientConnectionHog  = "TCPClientConnectionHog"
	AlertSelfConnect          = "TCPSelfConnect"
	connHealthEvidenceNoOwner = "unknown"
)

// minRTO is the kernel's minimum retransmission timeout (TCP_RTO_MIN).
const minRTO = 200 * time.Millisecond

// healthFresh reports whether the latest summary's connection-health data
// (from the latest full sample) is recent enough to act on.
func healthFresh(cfg *Config, cur *Summary) bool {
	return !cur.HealthTime.IsZero() && cur.Time.Sub(cur.HealthTime) <= cfg.StaleAfter
}

func fmtPorts(ps []uint16) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, strconv.Itoa(int(p)))
	}
	return strings.Join(parts, ",")
}

// fmtOwner names a socket's owning process for evidence.
func fmtOwner(pid int, command string) string {
	if pid == 0 {
		return connHealthEvidenceNoOwner
	}
	return command + " (pid " + strconv.Itoa(pid) + ")"
}

// peerFindings returns a finding for every group of the given stall
// towards a named peer with at least PeerMinSockets sockets, stalled for at
// least minFor.
func peerFindings(cfg *Config, h *History, stall Stall, minFor time.Duration) []Finding {
	cur := h.Latest()
	if cur == nil || !healthFresh(cfg, cur) {
		return nil
	}
	var out []Finding
	for i := range cur.Peers {
		g := &cur.Peers[i]
		if g.Stall != stall || !g.Remote.IsValid() || g.Sockets < cfg.PeerMinSockets {
			continue
		}
		stalledFor := max(cur.HealthTime.Sub(g.Since), 0)
		if stalledFor < minFor {
			continue
		}
		remote := g.Remote.String()
		owner := fmtOwner(g.PID, g.Command)
		ev := map[string]string{
			"remote_address": remote,
			"sockets":        fmtUint(g.Sockets),
			"stalled_for":    fmtDuration(stalledFor),
			"local_ports":    fmtPorts(g.LocalPorts),
			"remote_ports":   fmtPorts(g.RemotePorts),
			"process":        owner,
			"sample_age":     fmtDuration(cur.Time.Sub(cur.HealthTime)),
		}
		f := Finding{
			Severity: Warning,
			Labels:   map[string]string{"family": g.Family.String(), "remote_address": remote},
			Value:    float64(g.Sockets),
			Evidence: ev,
		}
		switch stall {
		case StallRetransmit:
			ev["max_retransmissions"] = strconv.Itoa(int(g.MaxRetrans))
			ev["retransmissions_threshold"] = fmtUint(cfg.PeerRetransMin)
			// n consecutive RTO retransmissions, each timeout at least the
			// 200 ms minimum RTO and doubling, take at least (2^n-1)×200ms.
			ev["silent_at_least"] = fmtDuration(minRTO * time.Duration(uint64(1)<<min(g.MaxRetrans, 30)-1))
			retransmitEvidence(h, g.Remote, ev)
			f.Alert = AlertPeerUnresponsive
			f.For = cfg.PeerFor
			f.Summary = "Peer " + remote + " acknowledges nothing: " + fmtUint(g.Sockets) + " sockets retransmitting, up to " + ev["max_retransmissions"] + " times"
			f.Description = fmtUint(g.Sockets) + " sockets towards " + remote + " (remote ports " + ev["remote_ports"] + ", local ports " + ev["local_ports"] +
				", process " + owner + ") have unacknowledged data and their retransmission timer running, up to " + ev["max_retransmissions"] +
				" consecutive RTO retransmissions (silent for at least " + ev["silent_at_least"] + "), seen stalled for " + ev["stalled_for"] + ": the peer crashed or lost its link, or a firewall silently drops the path."
		case StallZeroWindow:
			ev["max_probes"] = strconv.Itoa(int(g.MaxRetrans))
			ev["min_duration"] = fmtDuration(cfg.ZeroWindowMin)
			f.Alert = AlertPeerZeroWindow
			f.Summary = "Peer " + remote + " stopped reading: " + fmtUint(g.Sockets) + " sockets probing a zero window for " + ev["stalled_for"]
			f.Description = fmtUint(g.Sockets) + " sockets towards " + remote + " (remote ports " + ev["remote_ports"] + ", local ports " + ev["local_ports"] +
				", process " + owner + ") have data to send and a zero receive window from the peer for " + ev["stalled_for"] +
				": the peer is alive (it acknowledges the probes) but its application does not read."
		}
		out = append(out, f)
	}
	return out
}

// connHealth runs the connection-health detectors, in the order
// TCPPeerUnresponsive, TCPPeerZeroWindow, TCPClientConnectionHog,
// TCPSelfConnect.
func connHealth(cfg *Config, h *History) []Finding {
	var out []Finding
	out = append(out, PeerUnresponsive(cfg, h)...)
	out = append(out, PeerZeroWindow(cfg, h)...)
	out = append(out, ClientConnectionHog(cfg, h)...)
	out = append(out, SelfConnect(cfg, h)...)
	return out
}
