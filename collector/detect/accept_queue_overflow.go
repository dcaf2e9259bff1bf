package detect

import (
	"strconv"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// AlertAcceptQueueOverflow is the alert name of AcceptQueueOverflow's findings.
const AlertAcceptQueueOverflow = "TCPAcceptQueueOverflow"

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
		fill := l.AcceptQueueFill()
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
