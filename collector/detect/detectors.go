package detect

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
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
