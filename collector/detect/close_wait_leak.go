package detect

import (
	"strings"
)

// AlertCloseWaitLeak is the alert name of CloseWaitLeak's findings.
const AlertCloseWaitLeak = "TCPCloseWaitLeak"

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
