package detect

import (
	"strconv"
	"strings"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// AlertHalfOpenSuspect is the alert name of HalfOpenSuspect's findings.
const AlertHalfOpenSuspect = "TCPHalfOpenSuspect"

// HalfOpenGroup is the half-open suspects of one local port and owning
// command: ESTABLISHED sockets with no timer armed (no keepalive, nothing
// in flight) that received nothing, neither data nor an ACK, for longer
// than Config.HalfOpenMinIdle. A peer that vanished without a FIN or RST
// leaves such a socket open for ever.
type HalfOpenGroup struct {
	// Port is the local port when it is a listening port (the server side
	// of the connections), "ephemeral" for outbound connections, and
	// "other" for the group that folds what exceeded the group limit.
	Port string
	// Listeners are the listening addresses on Port, at most five.
	Listeners []string
	// Command is the owning process's command name, "" when it could not
	// be found; PIDs the owning processes found, at most five.
	Command string
	PIDs    []int
	// Count is the number of suspect connections.
	Count uint64
	// OldestIdle is the longest time one of them received nothing.
	OldestIdle time.Duration
	// Remotes are remote addresses of the suspects, the longest idle
	// first, at most five.
	Remotes []string
}

// keepaliveAdvice returns the keepalive sysctls as evidence and the time
// SO_KEEPALIVE with these defaults takes to drop a dead peer.
func keepaliveAdvice(s *procnet.Sysctls, ev map[string]string) string {
	t, okT := s.Int(procnet.SysctlTCPKeepaliveTime)
	i, okI := s.Int(procnet.SysctlTCPKeepaliveIntvl)
	p, okP := s.Int(procnet.SysctlTCPKeepaliveProbes)
	for _, kv := range []struct {
		name string
		v    int64
		ok   bool
	}{{"tcp_keepalive_time", t, okT}, {"tcp_keepalive_intvl", i, okI}, {"tcp_keepalive_probes", p, okP}} {
		if kv.ok {
			ev[kv.name] = strconv.FormatInt(kv.v, 10)
		}
	}
	if !okT || !okI || !okP {
		return ""
	}
	// The kernel caps each sysctl far below this; a value past a week
	// (a fake procfs tree, say) is not worth an advice, nor an overflow.
	const week = 7 * 24 * 3600
	if t < 0 || i < 0 || p < 0 || t > week || i > week || p > week {
		return ""
	}
	dead := time.Duration(t+i*p) * time.Second
	ev["keepalive_detects_after"] = fmtDuration(dead)
	return dead.String()
}

// HalfOpenSuspect finds local ports and commands holding at least
// HalfOpenMinCount half-open suspects in the latest sweep (see
// HalfOpenGroup). The summary carries the groups of the latest sweep only
// while it is recent; without a sweep the detector is quiet.
func HalfOpenSuspect(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil {
		return nil
	}
	var out []Finding
	for i := range cur.HalfOpen {
		g := &cur.HalfOpen[i]
		if g.Count < cfg.HalfOpenMinCount {
			continue
		}
		who, pids := owner(g.Command, g.PIDs)
		ev := map[string]string{
			"port":        g.Port,
			"listeners":   strings.Join(g.Listeners, ","),
			"command":     g.Command,
			"pids":        pids,
			"connections": fmtUint(g.Count),
			"oldest_idle": fmtDuration(g.OldestIdle),
			"min_idle":    fmtDuration(cfg.HalfOpenMinIdle),
			"remotes":     strings.Join(g.Remotes, ","),
			"sweep_age":   fmtDuration(cur.Time.Sub(cur.HalfOpenTime)),
		}
		where := "on port " + g.Port
		if len(g.Listeners) > 0 {
			where = "on listener " + strings.Join(g.Listeners, ",")
		} else if g.Port == "ephemeral" {
			where = "on outbound connections"
		}
		fix := "Turn on SO_KEEPALIVE on these sockets and lower TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT (or the tcp_keepalive_* sysctls), or add application-level heartbeats or idle timeouts, so that a peer gone without FIN or RST is noticed and the connection closed."
		if dead := keepaliveAdvice(&cur.Sysctls, ev); dead != "" {
			fix += " With this namespace's defaults keepalive drops a dead peer after " + ev["keepalive_detects_after"] +
				" (tcp_keepalive_time " + ev["tcp_keepalive_time"] + "s + tcp_keepalive_probes " + ev["tcp_keepalive_probes"] +
				" x tcp_keepalive_intvl " + ev["tcp_keepalive_intvl"] + "s)."
		}
		ev["fix"] = fix
		out = append(out, Finding{
			Alert:    AlertHalfOpenSuspect,
			Severity: Warning,
			Labels:   map[string]string{"port": g.Port, "command": g.Command},
			Summary: "Half-open suspects: " + who + " " + where + " holds " + fmtUint(g.Count) +
				" idle connections with no keepalive, the longest idle " + fmtDuration(g.OldestIdle),
			Description: who + " (pid " + ev["pids"] + ") " + where + " holds " + fmtUint(g.Count) +
				" ESTABLISHED connections with no timer armed (no keepalive, nothing in flight) that received nothing for over " +
				ev["min_idle"] + " (longest " + ev["oldest_idle"] + "): their peers may have vanished without FIN or RST, and the kernel will never close them. " + fix,
			Evidence: ev,
			Value:    float64(g.Count),
			For:      cfg.HalfOpenFor,
		})
	}
	return out
}
