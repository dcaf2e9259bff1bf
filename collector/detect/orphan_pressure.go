package detect

import (
	"strconv"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// AlertOrphanPressure is the alert name of OrphanPressure's findings.
const AlertOrphanPressure = "TCPOrphanPressure"

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
