package detect

import (
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// AlertResetStorm is the alert name of ResetStorm's findings.
const AlertResetStorm = "TCPResetStorm"

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
