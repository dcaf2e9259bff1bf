// Package detect holds the detectors: pure functions over a namespace's
// sample history that say what is going wrong and show the evidence.
//
// It also owns the types that history is made of (model.go,
// connhealth_model.go): listeners, destinations, CLOSE_WAIT groups, peer
// groups and the per-sample Summary. Package collector builds these from
// the dumps and uses them under their detect names; it declares no aliases.
package detect

import "time"

// Severity of a finding, as the alert's severity label.
type Severity string

// Severities in use.
const (
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Rank orders severities, most severe first: 0 for critical, 1 for
// warning, 2 for anything else.
func (s Severity) Rank() int {
	switch s {
	case Critical:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Finding is one problem a detector sees now. Detectors are stateless: a
// finding present in consecutive evaluations is the same alert while its
// Alert name and Labels stay the same (the alerts engine tracks pending and
// firing from that).
type Finding struct {
	// Alert is the alert name, e.g. "TCPCloseWaitLeak".
	Alert string
	// Severity is warning or critical.
	Severity Severity
	// Labels identify what the finding is about (listener family, address
	// and port; local port and command; destination), without the alert
	// name, severity, or namespace labels (added by the caller).
	Labels map[string]string
	// Summary is one line; Description says what is happening with numbers.
	Summary     string
	Description string
	// Evidence holds the numbers behind the finding, by name (e.g.
	// "syn_recv": "1025", "limit": "1024", "cookies_per_second": "5321",
	// "distinct_sources": "4012", "top_source_prefixes": "10.1.0.0/16 (812), ...").
	Evidence map[string]string
	// Value is the alert's value: the quantity that crossed the threshold.
	Value float64
	// For is how long the condition must hold before the alert fires
	// (pending until then). Zero fires at once.
	For time.Duration
}
