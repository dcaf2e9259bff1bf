package alerts

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tcpstate/tcpstate-exporter"
	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// State is the state of an alert.
type State int

// Alert states, as Prometheus names them.
const (
	// StateInactive is a resolved alert kept until it has been resent for
	// the retention period.
	StateInactive State = iota
	// StatePending is an alert whose condition has held for less than its For.
	StatePending
	// StateFiring is an alert whose condition has held for its For.
	StateFiring
)

// String returns "inactive", "pending" or "firing".
func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateFiring:
		return "firing"
	}
	return "inactive"
}

// DefaultRunbookBase is where the runbooks of this release live: an alert's
// runbook_url is this followed by "<alertname>.md". It names the release's
// tag from the VERSION file (tcpstate.RunbookBase), so the link shows the
// runbook as it was when the running binary was released. It is a variable
// only because it is computed; nothing assigns it.
var DefaultRunbookBase = tcpstate.RunbookBase()

// Defaults of EngineOptions.
const (
	DefaultMaxAlerts   = 500
	DefaultResendDelay = time.Minute
	DefaultRetention   = 15 * time.Minute
)

// Target says where a set of findings comes from.
type Target struct {
	// Key identifies the target across evaluations (the agent passes
	// collector.Target.Key, its label values); "" for the single target of
	// host mode.
	Key string
	// Labels are added to the labels of every alert of the target (for
	// example netns, namespace and pod). Empty values are dropped.
	Labels map[string]string
}

// TargetFindings is one target's findings in one evaluation.
type TargetFindings struct {
	Target   Target
	Findings []detect.Finding
}

// Alert is the state of one alert, as returned by Engine.Alerts.
type Alert struct {
	// Labels identify the alert: alertname, severity, the finding's labels
	// and the target's labels.
	Labels map[string]string
	// Annotations: summary, description, runbook_url and the evidence.
	Annotations map[string]string
	State       State
	// Value is the latest finding's value.
	Value float64
	// ActiveAt is the evaluation that first saw the finding; FiredAt the one
	// that made it fire; ResolvedAt the one that no longer saw it.
	ActiveAt, FiredAt, ResolvedAt time.Time
	// LastSentAt is when it was last handed to the Sender, ValidUntil the
	// endsAt it was given then while firing.
	LastSentAt, ValidUntil time.Time
	// TargetKey is the Key of the target the alert belongs to.
	TargetKey string
	// For is the latest finding's For.
	For time.Duration
}

// Sender receives the alerts that need to go to Alertmanager. Send must not
// block for long: it is called after every evaluation.
type Sender interface {
	Send(alerts ...PostableAlert)
}

// EngineOptions configure an Engine.
type EngineOptions struct {
	// MaxAlerts caps the pending and firing alerts (and, separately, the
	// resolved ones kept for resending). Findings that would open an alert
	// beyond it are dropped and counted. Default DefaultMaxAlerts.
	MaxAlerts int
	// ResendDelay is how often a firing or resolved alert is resent to the
	// Sender. Default DefaultResendDelay (Prometheus's --rules.alert.resend-delay).
	ResendDelay time.Duration
	// EvalInterval is the interval between evaluations; a firing alert is
	// sent with endsAt = now + 4 × max(ResendDelay, EvalInterval).
	EvalInterval time.Duration
	// Retention is how long a resolved alert is kept and resent.
	// Default DefaultRetention.
	Retention time.Duration
	// RunbookBase is the prefix of runbook_url. Default DefaultRunbookBase.
	RunbookBase string
	// GeneratorURL is sent as every alert's generatorURL (for example this
	// exporter's /alerts page). Optional.
	GeneratorURL string
	// Sender receives alerts to push to Alertmanager; nil sends nothing.
	Sender Sender
	// Logger receives notes about malformed findings; default slog.Default().
	Logger *slog.Logger
	// CollectErrors, when set, receives after every collection of the
	// Collector the series it left out (none when it built them all), for
	// example collector.ScrapeErrors.Record with part "alerts".
	CollectErrors func(errs []error)
}

// Engine keeps alert state from the findings of successive evaluations. Its
// methods are safe for concurrent use.
type Engine struct {
	opts EngineOptions

	mu      sync.Mutex
	targets map[string]*targetState
	// gen counts the changes to the alerts: every change (Evaluate, Update,
	// RemoveTarget) ends with sweepLocked, which increments it.
	gen uint64
}

// targetState holds one target's alerts.
type targetState struct {
	alerts map[string]*Alert // by canonical label set
	// dropped counts findings of the latest evaluation that were not
	// tracked because MaxAlerts was reached.
	dropped int
	// removed marks a target that is gone; it is deleted once its resolved
	// alerts have expired.
	removed bool
}

// NewEngine returns an Engine with no alerts.
func NewEngine(opts EngineOptions) *Engine {
	if opts.MaxAlerts <= 0 {
		opts.MaxAlerts = DefaultMaxAlerts
	}
	if opts.ResendDelay <= 0 {
		opts.ResendDelay = DefaultResendDelay
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.RunbookBase == "" {
		opts.RunbookBase = DefaultRunbookBase
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Engine{opts: opts, targets: map[string]*targetState{}}
}

// Evaluate records one evaluation of every target: each listed target is
// updated as by Update, and the alerts of targets no longer listed are
// resolved as by RemoveTarget.
func (e *Engine) Evaluate(now time.Time, all []TargetFindings) {
	listed := make(map[string]bool, len(all))
	for _, tf := range all {
		listed[tf.Target.Key] = true
	}
	var out []PostableAlert
	e.mu.Lock()
	for key, ts := range e.targets {
		if !listed[key] && !ts.removed {
			e.removeLocked(now, ts)
		}
	}
	for _, tf := range all {
		e.updateLocked(now, tf.Target, tf.Findings)
	}
	out = e.sweepLocked(now)
	e.mu.Unlock()
	e.send(out)
}

// Update records one evaluation of one target: findings present become or
// stay alerts, alerts of the target whose finding is absent are resolved,
// and alerts that need sending go to the Sender.
func (e *Engine) Update(now time.Time, t Target, findings []detect.Finding) {
	e.mu.Lock()
	e.updateLocked(now, t, findings)
	out := e.sweepLocked(now)
	e.mu.Unlock()
	e.send(out)
}

// RemoveTarget resolves every alert of a target that no longer exists (a
// deleted namespace). Its resolved alerts are resent until they expire.
func (e *Engine) RemoveTarget(now time.Time, key string) {
	e.mu.Lock()
	if ts := e.targets[key]; ts != nil {
		e.removeLocked(now, ts)
	}
	out := e.sweepLocked(now)
	e.mu.Unlock()
	e.send(out)
}

func (e *Engine) send(out []PostableAlert) {
	if len(out) > 0 && e.opts.Sender != nil {
		e.opts.Sender.Send(out...)
	}
}

func (e *Engine) removeLocked(now time.Time, ts *targetState) {
	ts.removed = true
	ts.dropped = 0
	for key, a := range ts.alerts {
		switch a.State {
		case StatePending:
			delete(ts.alerts, key)
		case StateFiring:
			a.State = StateInactive
			a.ResolvedAt = now
		}
	}
}

// activeLocked counts pending and firing alerts.
func (e *Engine) activeLocked() int {
	n := 0
	for _, ts := range e.targets {
		for _, a := range ts.alerts {
			if a.State != StateInactive {
				n++
			}
		}
	}
	return n
}

func (e *Engine) updateLocked(now time.Time, t Target, findings []detect.Finding) {
	ts := e.targets[t.Key]
	if ts == nil {
		ts = &targetState{alerts: map[string]*Alert{}}
		e.targets[t.Key] = ts
	}
	ts.removed = false
	ts.dropped = 0
	targetLabels := cleanLabels(t.Labels)

	// New alerts compete for the cap: critical findings first.
	order := make([]int, len(findings))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		return cmp.Compare(findings[i].Severity.Rank(), findings[j].Severity.Rank())
	})
	// Existing alerts are updated first and absent ones resolved, so that
	// the cap counts only what stays active.
	type candidate struct {
		f      *detect.Finding
		labels map[string]string
		key    string
	}
	var fresh []candidate
	seen := make(map[string]bool, len(findings))
	for _, i := range order {
		f := &findings[i]
		if f.Alert == "" {
			e.opts.Logger.Debug("finding without an alert name ignored", "summary", f.Summary)
			continue
		}
		labels := alertLabels(f, targetLabels)
		key := labelsKey(labels)
		if seen[key] {
			// Two findings with one identity in one evaluation: the
			// first one stands (Prometheus reports such duplicates as an error).
			continue
		}
		seen[key] = true
		if a := ts.alerts[key]; a != nil && a.State != StateInactive {
			a.Value = f.Value
			a.Annotations = e.annotations(f)
			a.For = f.For
			continue
		}
		fresh = append(fresh, candidate{f, labels, key})
	}
	for key, a := range ts.alerts {
		if seen[key] && a.State != StateInactive {
			continue
		}
		switch a.State {
		case StatePending:
			delete(ts.alerts, key)
		case StateFiring:
			a.State = StateInactive
			a.ResolvedAt = now
		}
	}
	active := e.activeLocked()
	for _, c := range fresh {
		if active >= e.opts.MaxAlerts {
			ts.dropped++
			continue
		}
		active++
		// A resolved alert with the same identity is replaced by a new
		// one, as Prometheus does.
		ts.alerts[c.key] = &Alert{
			Labels:      c.labels,
			Annotations: e.annotations(c.f),
			State:       StatePending,
			Value:       c.f.Value,
			ActiveAt:    now,
			TargetKey:   t.Key,
			For:         c.f.For,
		}
	}

	for _, a := range ts.alerts {
		if a.State == StateInactive {
			continue
		}
		if a.State == StatePending && now.Sub(a.ActiveAt) >= a.For {
			a.State = StateFiring
			a.FiredAt = now
		}
		// A longer For than the alert has been active for sends it back
		// to pending (Prometheus does the same when a rule's for grows).
		if a.State == StateFiring && now.Sub(a.ActiveAt) < a.For {
			a.State = StatePending
			a.FiredAt = time.Time{}
			a.LastSentAt = time.Time{}
		}
	}
}

// sweepLocked drops expired resolved alerts and empty removed targets,
// bounds the resolved alerts kept, and returns what needs sending.
func (e *Engine) sweepLocked(now time.Time) []PostableAlert {
	e.gen++
	var resolved []*Alert
	for tk, ts := range e.targets {
		for key, a := range ts.alerts {
			if a.State == StateInactive {
				if now.Sub(a.ResolvedAt) > e.opts.Retention {
					delete(ts.alerts, key)
					continue
				}
				resolved = append(resolved, a)
			}
		}
		if ts.removed && len(ts.alerts) == 0 {
			delete(e.targets, tk)
		}
	}
	if excess := len(resolved) - e.opts.MaxAlerts; excess > 0 {
		// Keep the most recently resolved ones.
		slices.SortFunc(resolved, func(x, y *Alert) int { return x.ResolvedAt.Compare(y.ResolvedAt) })
		for _, a := range resolved[:excess] {
			if ts := e.targets[a.TargetKey]; ts != nil {
				delete(ts.alerts, labelsKey(a.Labels))
			}
		}
	}
	if e.opts.Sender == nil {
		return nil
	}
	var out []PostableAlert
	validFor := 4 * max(e.opts.ResendDelay, e.opts.EvalInterval)
	for _, ts := range e.targets {
		for _, a := range ts.alerts {
			if !needsSending(a, now, e.opts.ResendDelay) {
				continue
			}
			a.LastSentAt = now
			a.ValidUntil = now.Add(validFor)
			p := PostableAlert{
				Labels:       maps.Clone(a.Labels),
				Annotations:  maps.Clone(a.Annotations),
				StartsAt:     a.FiredAt,
				EndsAt:       a.ValidUntil,
				GeneratorURL: e.opts.GeneratorURL,
			}
			if !a.ResolvedAt.IsZero() {
				p.EndsAt = a.ResolvedAt
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(x, y PostableAlert) int { return strings.Compare(labelsKey(x.Labels), labelsKey(y.Labels)) })
	return out
}

// needsSending follows Prometheus: pending alerts are never sent; a newly
// resolved alert is sent at once; otherwise every resend delay.
func needsSending(a *Alert, now time.Time, resend time.Duration) bool {
	if a.State == StatePending {
		return false
	}
	if a.ResolvedAt.After(a.LastSentAt) {
		return true
	}
	return !a.LastSentAt.Add(resend).After(now)
}

// Alerts returns the pending and firing alerts sorted by alert name and
// labels. The result is a copy.
func (e *Engine) Alerts() []Alert {
	out, _ := e.alerts()
	return out
}

// alerts returns what Alerts does and the generation it was taken at.
func (e *Engine) alerts() ([]Alert, uint64) {
	type keyed struct {
		name, key string
		a         Alert
	}
	e.mu.Lock()
	var all []keyed
	for _, ts := range e.targets {
		for key, a := range ts.alerts {
			if a.State == StateInactive {
				continue
			}
			c := *a
			c.Labels = maps.Clone(a.Labels)
			c.Annotations = maps.Clone(a.Annotations)
			all = append(all, keyed{a.Labels["alertname"], key, c})
		}
	}
	gen := e.gen
	e.mu.Unlock()
	// The map keys are the canonical label sets, so sorting by them needs
	// no key built per comparison.
	slices.SortFunc(all, func(x, y keyed) int {
		return cmp.Or(strings.Compare(x.name, y.name), strings.Compare(x.key, y.key))
	})
	out := make([]Alert, len(all))
	for i := range all {
		out[i] = all[i].a
	}
	return out, gen
}

// Dropped returns how many findings of the latest evaluations (summed over
// targets) were not tracked because MaxAlerts was reached.
func (e *Engine) Dropped() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ts := range e.targets {
		n += ts.dropped
	}
	return n
}

// annotations builds an alert's annotations from a finding.
func (e *Engine) annotations(f *detect.Finding) map[string]string {
	an := make(map[string]string, len(f.Evidence)+3)
	for k, v := range f.Evidence {
		k = sanitizeName(k)
		if k == "" {
			continue
		}
		switch k {
		case "summary", "description", "runbook_url":
			k = "evidence_" + k
		}
		an[k] = v
	}
	set := func(k, v string) {
		if v != "" {
			an[k] = v
		}
	}
	set("summary", f.Summary)
	set("description", f.Description)
	set("runbook_url", e.opts.RunbookBase+f.Alert+".md")
	return an
}

// alertLabels builds the identity of a finding's alert.
func alertLabels(f *detect.Finding, target map[string]string) map[string]string {
	l := cleanLabels(f.Labels)
	delete(l, "alertstate")
	maps.Copy(l, target)
	l["alertname"] = f.Alert
	if f.Severity != "" {
		l["severity"] = string(f.Severity)
	} else {
		delete(l, "severity")
	}
	return l
}

// cleanLabels copies a label map, sanitizing names and dropping empty
// values and reserved names.
func cleanLabels(in map[string]string) map[string]string {
	out := make(map[string]string, len(in)+2)
	for k, v := range in {
		k = sanitizeName(k)
		if k == "" || v == "" || strings.HasPrefix(k, "__") {
			continue
		}
		// Values name processes, pods and namespaces: anything their
		// owners chose.
		out[k] = collector.SafeLabel(v)
	}
	return out
}

// sanitizeName turns s into a valid Prometheus label name
// ([a-zA-Z_][a-zA-Z0-9_]*) by replacing every other byte with an
// underscore and prefixing one to a leading digit. "" stays "".
func sanitizeName(s string) string {
	if s == "" {
		return ""
	}
	b := []byte(s)
	ok := true
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && c >= '0' && c <= '9')) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var sb strings.Builder
	if b[0] >= '0' && b[0] <= '9' {
		sb.WriteByte('_')
	}
	for _, c := range b {
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}

// labelsKey is the canonical form of a label set: sorted name="value"
// pairs, with values quoted so that no two sets share a key.
func labelsKey(l map[string]string) string {
	names := slices.Sorted(maps.Keys(l))
	var sb strings.Builder
	sb.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(n)
		sb.WriteByte('=')
		sb.WriteString(quote(l[n]))
	}
	sb.WriteByte('}')
	return sb.String()
}

func quote(s string) string {
	if !strings.ContainsAny(s, "\"\\\n") {
		return `"` + s + `"`
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
