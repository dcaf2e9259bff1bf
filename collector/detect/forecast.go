package detect

import (
	"math"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// A forecast says when a quantity that grows towards a limit reaches it, at
// the rate it grew over the recent past (Config.ForecastWindow). TIME_WAIT
// lasts 60 s, so ports and TIME_WAIT buckets taken by churn grow linearly
// for up to a minute before the oldest are freed: the recent rate predicts
// the next minute well, and a default horizon of 60 s fires exactly for the
// churn rates that exhaust the limit before the first TIME_WAIT expires.
type forecast struct {
	// Rate is the growth per second over the window; ETA the time left at
	// that rate. OK is false when no rate could be measured (fewer than two
	// samples, too short a span) or the quantity did not grow.
	Rate float64
	ETA  time.Duration
	OK   bool
}

// minForecastSpan is the shortest span a rate is measured over.
const minForecastSpan = 500 * time.Millisecond

// project returns the forecast of a quantity at cur that was old span ago,
// towards limit.
func project(old, cur, limit float64, span time.Duration) forecast {
	if span < minForecastSpan || cur <= old {
		return forecast{}
	}
	rate := (cur - old) / span.Seconds()
	left := max(limit-cur, 0)
	secs := left / rate
	if math.IsInf(secs, 0) || math.IsNaN(secs) || secs > float64(math.MaxInt64/time.Second) {
		return forecast{}
	}
	return forecast{Rate: rate, ETA: time.Duration(secs * float64(time.Second)), OK: true}
}

// soon reports whether the forecast reaches the limit within the horizon;
// a zero horizon turns forecasts off.
func (f forecast) soon(horizon time.Duration) bool {
	return horizon > 0 && f.OK && f.ETA <= horizon
}

// windowStart returns the oldest summary of h taken within the forecast
// window before the newest, by the time at gives, for which keep is true.
// When none is that recent (full dumps spaced further apart than the
// window by the CPU budget, on a busy node) it returns the newest one
// before the window, so that a forecast still comes, over a longer span.
// ok is false when there is none or it is too recent to measure a rate
// over.
func windowStart(cfg *Config, h *History, at func(*Summary) time.Time, keep func(*Summary) bool) (*Summary, bool) {
	now := at(h.Latest())
	if now.IsZero() {
		return nil, false
	}
	var start *Summary
	for i := h.Len() - 2; i >= 0; i-- {
		s := h.At(i)
		t := at(s)
		if t.IsZero() || !keep(s) {
			continue
		}
		if now.Sub(t) > cfg.ForecastWindow {
			if start == nil {
				start = s
			}
			break
		}
		start = s
	}
	if start == nil || now.Sub(at(start)) < minForecastSpan {
		return nil, false
	}
	return start, true
}

// destinationsAt is when a summary's destinations were counted.
func destinationsAt(s *Summary) time.Time { return s.DestinationsTime }

// sampledAt is when a summary was taken.
func sampledAt(s *Summary) time.Time { return s.Time }

// usedPorts is the number of local ports d holds that connect() cannot
// reuse under tcp_tw_reuse.
func usedPorts(reuse int64, d *Destination) uint64 {
	if twReusable(reuse, d) {
		return d.Used - d.TimeWait
	}
	return d.Used
}

// destinationsStart returns the summary whose destinations start the
// forecast window, nil when there is none.
func destinationsStart(cfg *Config, h *History) *Summary {
	cur := h.Latest()
	old, ok := windowStart(cfg, h, destinationsAt, func(s *Summary) bool { return s.DestinationsTime.Before(cur.DestinationsTime) })
	if !ok {
		return nil
	}
	return old
}

// destinationForecast forecasts when the ports towards d, used of them
// now, run out of usable ones, from the ports d held in old (the window's
// start, nil for none). A destination absent from old held none, unless
// the list was cut short (DestinationsTruncated), when it held at most as
// many as the least used one listed: the forecast then errs towards a lower
// rate. With need set, a destination that cannot reach the limit within
// the horizon even had it held no port in old is not looked up.
func destinationForecast(cfg *Config, old, cur *Summary, d *Destination, used uint64, reuse int64, usable int, need bool) forecast {
	if old == nil {
		return forecast{}
	}
	span := cur.DestinationsTime.Sub(old.DestinationsTime)
	if need && (cfg.ForecastHorizon <= 0 || float64(used)/span.Seconds()*cfg.ForecastHorizon.Seconds() < float64(usable)-float64(used)) {
		return forecast{}
	}
	var before uint64
	found := false
	for i := range old.Destinations {
		if o := &old.Destinations[i]; o.DestinationKey == d.DestinationKey {
			before, found = usedPorts(reuse, o), true
			break
		}
	}
	if !found && old.DestinationsTruncated && len(old.Destinations) > 0 {
		before = usedPorts(reuse, &old.Destinations[len(old.Destinations)-1])
	}
	return project(float64(before), float64(used), float64(usable), span)
}

// sockstatForecast forecasts when sockstat field f reaches limit.
func sockstatForecast(cfg *Config, h *History, f procnet.SockstatField, limit int64) forecast {
	cur := h.Latest()
	now, ok := cur.Sockstat.Get(f)
	if !ok {
		return forecast{}
	}
	old, ok := windowStart(cfg, h, sampledAt, func(s *Summary) bool {
		_, has := s.Sockstat.Get(f)
		return has
	})
	if !ok {
		return forecast{}
	}
	then, _ := old.Sockstat.Get(f)
	return project(float64(then), float64(now), float64(limit), cur.Time.Sub(old.Time))
}

// forecastEvidence adds a forecast's rate and time left to ev.
func forecastEvidence(ev map[string]string, rateKey string, f forecast) {
	if !f.OK {
		return
	}
	ev[rateKey] = fmtFloat(f.Rate)
	ev["seconds_to_exhaustion"] = fmtFloat(f.ETA.Seconds())
}

// forecastSentence describes a forecast for a finding's description, ""
// when there is none.
func forecastSentence(f forecast, what string, window time.Duration) string {
	if !f.OK {
		return ""
	}
	return " " + what + " grew by " + fmtFloat(f.Rate) + " a second over the last " + fmtDuration(window) +
		": at that rate the limit is reached in " + fmtDuration(f.ETA) + "."
}
