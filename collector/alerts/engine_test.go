package alerts

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// recorder is a Sender that keeps every batch it is given.
type recorder struct {
	mu      sync.Mutex
	batches [][]PostableAlert
}

func (r *recorder) Send(alerts ...PostableAlert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, alerts)
}

// take returns and forgets the alerts sent since the last call.
func (r *recorder) take() []PostableAlert {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []PostableAlert
	for _, b := range r.batches {
		out = append(out, b...)
	}
	r.batches = nil
	return out
}

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func synFlood(port string, value float64, forDur time.Duration) detect.Finding {
	return detect.Finding{
		Alert:       "TCPSynFlood",
		Severity:    detect.Critical,
		Labels:      map[string]string{"family": "ipv4", "address": "0.0.0.0", "port": port},
		Summary:     "SYN flood on port " + port,
		Description: fmt.Sprintf("%g half-open connections", value),
		Evidence:    map[string]string{"syn_recv": fmt.Sprint(value), "limit": "1024"},
		Value:       value,
		For:         forDur,
	}
}

func only(t *testing.T, e *Engine) Alert {
	t.Helper()
	as := e.Alerts()
	if len(as) != 1 {
		t.Fatalf("want 1 alert, got %d: %+v", len(as), as)
	}
	return as[0]
}

func TestPendingThenFiringThenResolved(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(EngineOptions{Sender: rec, EvalInterval: time.Second})
	host := Target{}

	e.Update(t0, host, []detect.Finding{synFlood("443", 1025, 30*time.Second)})
	a := only(t, e)
	if a.State != StatePending || !a.ActiveAt.Equal(t0) || a.Value != 1025 {
		t.Fatalf("first evaluation: got state %v activeAt %v value %v", a.State, a.ActiveAt, a.Value)
	}
	wantLabels := map[string]string{"alertname": "TCPSynFlood", "severity": "critical", "family": "ipv4", "address": "0.0.0.0", "port": "443"}
	if !maps.Equal(a.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", a.Labels, wantLabels)
	}
	wantAnn := map[string]string{
		"summary":     "SYN flood on port 443",
		"description": "1025 half-open connections",
		"runbook_url": "https://github.com/tcpstate/tcpstate-exporter/blob/v" + tcpstate.Version() + "/docs/runbooks/TCPSynFlood.md",
		"syn_recv":    "1025",
		"limit":       "1024",
	}
	if !maps.Equal(a.Annotations, wantAnn) {
		t.Errorf("annotations = %v, want %v", a.Annotations, wantAnn)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("a pending alert was sent: %+v", got)
	}

	// Still pending at 29 s, with the latest value and evidence.
	e.Update(t0.Add(29*time.Second), host, []detect.Finding{synFlood("443", 1030, 30*time.Second)})
	a = only(t, e)
	if a.State != StatePending || a.Value != 1030 || a.Annotations["syn_recv"] != "1030" || !a.ActiveAt.Equal(t0) {
		t.Fatalf("at 29s: state %v value %v syn_recv %q activeAt %v", a.State, a.Value, a.Annotations["syn_recv"], a.ActiveAt)
	}

	// Fires at 30 s and is sent at once with endsAt 4 resend delays ahead.
	fire := t0.Add(30 * time.Second)
	e.Update(fire, host, []detect.Finding{synFlood("443", 1031, 30*time.Second)})
	a = only(t, e)
	if a.State != StateFiring || !a.FiredAt.Equal(fire) || !a.ActiveAt.Equal(t0) {
		t.Fatalf("at 30s: state %v firedAt %v activeAt %v", a.State, a.FiredAt, a.ActiveAt)
	}
	sent := rec.take()
	if len(sent) != 1 {
		t.Fatalf("at 30s: sent %d alerts, want 1", len(sent))
	}
	if !sent[0].StartsAt.Equal(fire) || !sent[0].EndsAt.Equal(fire.Add(4*time.Minute)) {
		t.Errorf("firing alert sent with startsAt %v endsAt %v, want %v and %v", sent[0].StartsAt, sent[0].EndsAt, fire, fire.Add(4*time.Minute))
	}
	if !maps.Equal(sent[0].Labels, wantLabels) || sent[0].Annotations["summary"] != "SYN flood on port 443" {
		t.Errorf("sent labels %v annotations %v", sent[0].Labels, sent[0].Annotations)
	}

	// Not resent before the resend delay, resent when it has passed.
	e.Update(fire.Add(59*time.Second), host, []detect.Finding{synFlood("443", 1031, 30*time.Second)})
	if got := rec.take(); len(got) != 0 {
		t.Errorf("resent after 59s: %+v", got)
	}
	resend := fire.Add(60 * time.Second)
	e.Update(resend, host, []detect.Finding{synFlood("443", 1031, 30*time.Second)})
	if got := rec.take(); len(got) != 1 || !got[0].EndsAt.Equal(resend.Add(4*time.Minute)) || !got[0].StartsAt.Equal(fire) {
		t.Errorf("resend after 60s: got %+v", got)
	}

	// Gone: resolved, no longer listed, sent at once with endsAt = resolvedAt.
	resolved := resend.Add(5 * time.Second)
	e.Update(resolved, host, nil)
	if as := e.Alerts(); len(as) != 0 {
		t.Fatalf("resolved alert still listed: %+v", as)
	}
	got := rec.take()
	if len(got) != 1 || !got[0].EndsAt.Equal(resolved) || !got[0].StartsAt.Equal(fire) {
		t.Fatalf("resolution sent as %+v, want endsAt %v", got, resolved)
	}
	// Resent every resend delay while retained, then forgotten.
	e.Update(resolved.Add(30*time.Second), host, nil)
	if got := rec.take(); len(got) != 0 {
		t.Errorf("resolution resent after 30s: %+v", got)
	}
	e.Update(resolved.Add(time.Minute), host, nil)
	if got := rec.take(); len(got) != 1 || !got[0].EndsAt.Equal(resolved) {
		t.Errorf("resolution not resent after 1m: %+v", got)
	}
	e.Update(resolved.Add(15*time.Minute+time.Second), host, nil)
	if got := rec.take(); len(got) != 0 {
		t.Errorf("sent after the retention: %+v", got)
	}
	e.mu.Lock()
	n := len(e.targets[""].alerts)
	e.mu.Unlock()
	if n != 0 {
		t.Errorf("%d alerts kept after the retention", n)
	}
}

func TestZeroForFiresAtOnceAndPendingIsDroppedWhenGone(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(EngineOptions{Sender: rec})
	f := synFlood("80", 5, 0)
	e.Update(t0, Target{}, []detect.Finding{f})
	if a := only(t, e); a.State != StateFiring || !a.FiredAt.Equal(t0) {
		t.Fatalf("For=0: state %v firedAt %v", a.State, a.FiredAt)
	}
	if got := rec.take(); len(got) != 1 {
		t.Fatalf("For=0: sent %d alerts, want 1", len(got))
	}

	slow := synFlood("81", 5, time.Minute)
	e.Update(t0.Add(time.Second), Target{}, []detect.Finding{f, slow})
	if as := e.Alerts(); len(as) != 2 {
		t.Fatalf("want 2 alerts, got %d", len(as))
	}
	e.Update(t0.Add(2*time.Second), Target{}, []detect.Finding{f})
	if a := only(t, e); a.Labels["port"] != "80" {
		t.Fatalf("the pending alert was not dropped: %+v", a)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("dropping a pending alert sent %+v", got)
	}
	e.mu.Lock()
	n := len(e.targets[""].alerts)
	e.mu.Unlock()
	if n != 1 {
		t.Errorf("engine keeps %d alerts, want 1 (pending ones are not retained)", n)
	}

	// Back after resolution: a new alert with a new activeAt.
	e.Update(t0.Add(3*time.Second), Target{}, nil)
	e.Update(t0.Add(4*time.Second), Target{}, []detect.Finding{f})
	if a := only(t, e); !a.ActiveAt.Equal(t0.Add(4*time.Second)) || a.State != StateFiring {
		t.Errorf("returning alert: activeAt %v state %v", a.ActiveAt, a.State)
	}
}

func TestIdentityAndLabels(t *testing.T) {
	e := NewEngine(EngineOptions{})
	nsA := Target{Key: "4026531993", Labels: map[string]string{"netns": "4026531993", "namespace": "shop", "pod": "web-0"}}
	nsB := Target{Key: "4026532100", Labels: map[string]string{"netns": "4026532100", "namespace": "", "pod": ""}}
	f := detect.Finding{
		Alert:    "TCPCloseWaitLeak",
		Severity: detect.Warning,
		Labels: map[string]string{
			"port": "8080", "command": "java", "netns": "spoofed", "bad-name": "x", "9lives": "y",
			"empty": "", "__reserved": "z", "alertstate": "firing", "alertname": "Other", "severity": "critical",
		},
		Evidence: map[string]string{"summary": "from evidence", "oldest/seconds": "620"},
		Summary:  "CLOSE_WAIT leak",
		Value:    12,
	}
	e.Update(t0, nsA, []detect.Finding{f})
	e.Update(t0, nsB, []detect.Finding{f})
	as := e.Alerts()
	if len(as) != 2 {
		t.Fatalf("want one alert per target, got %d", len(as))
	}
	want := map[string]map[string]string{
		"4026531993": {"alertname": "TCPCloseWaitLeak", "severity": "warning", "port": "8080", "command": "java",
			"netns": "4026531993", "namespace": "shop", "pod": "web-0", "bad_name": "x", "_9lives": "y"},
		"4026532100": {"alertname": "TCPCloseWaitLeak", "severity": "warning", "port": "8080", "command": "java",
			"netns": "4026532100", "bad_name": "x", "_9lives": "y"},
	}
	for _, a := range as {
		if !maps.Equal(a.Labels, want[a.TargetKey]) {
			t.Errorf("target %s: labels %v, want %v", a.TargetKey, a.Labels, want[a.TargetKey])
		}
		if a.Annotations["summary"] != "CLOSE_WAIT leak" || a.Annotations["evidence_summary"] != "from evidence" || a.Annotations["oldest_seconds"] != "620" {
			t.Errorf("annotations %v", a.Annotations)
		}
		if _, ok := a.Annotations["description"]; ok {
			t.Errorf("empty description became an annotation: %v", a.Annotations)
		}
	}

	// Another severity is another alert: the warning one is gone.
	crit := f
	crit.Severity = detect.Critical
	e.Update(t0.Add(time.Second), nsA, []detect.Finding{crit})
	var sevs []string
	for _, a := range e.Alerts() {
		if a.TargetKey == nsA.Key {
			sevs = append(sevs, a.Labels["severity"])
		}
	}
	if len(sevs) != 1 || sevs[0] != "critical" {
		t.Errorf("severities for target A: %v, want [critical]", sevs)
	}
}

func TestMaxAlertsKeepsExistingAndCriticalFirst(t *testing.T) {
	e := NewEngine(EngineOptions{MaxAlerts: 3})
	var fs []detect.Finding
	for i := range 3 {
		f := synFlood(fmt.Sprint(1000+i), 1, 0)
		f.Severity = detect.Warning
		fs = append(fs, f)
	}
	e.Update(t0, Target{}, fs)
	if n, d := len(e.Alerts()), e.Dropped(); n != 3 || d != 0 {
		t.Fatalf("3 findings, cap 3: %d alerts, %d dropped", n, d)
	}
	// Two more, one critical: the existing three stay, both new ones dropped.
	extra := []detect.Finding{synFlood("2000", 1, 0), synFlood("2001", 1, 0)}
	extra[1].Severity = detect.Warning
	e.Update(t0.Add(time.Second), Target{}, append(fs, extra...))
	if n, d := len(e.Alerts()), e.Dropped(); n != 3 || d != 2 {
		t.Fatalf("5 findings, cap 3: %d alerts, %d dropped; want 3 and 2", n, d)
	}
	// One existing one goes away: the critical newcomer takes its place.
	e.Update(t0.Add(2*time.Second), Target{}, append(fs[1:], extra[1], extra[0]))
	ports := map[string]bool{}
	for _, a := range e.Alerts() {
		ports[a.Labels["port"]] = true
	}
	if !ports["2000"] || ports["2001"] || ports["1000"] || len(ports) != 3 || e.Dropped() != 1 {
		t.Errorf("after one resolved: ports %v dropped %d; want 1001, 1002, 2000 and 1 dropped", ports, e.Dropped())
	}
	// The cap also holds across targets.
	e.Update(t0.Add(3*time.Second), Target{Key: "other"}, []detect.Finding{synFlood("3000", 1, 0)})
	if n, d := len(e.Alerts()), e.Dropped(); n != 3 || d != 2 {
		t.Errorf("second target: %d alerts, %d dropped; want 3 and 2", n, d)
	}
}

func TestEvaluateResolvesMissingTargets(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(EngineOptions{Sender: rec})
	a := Target{Key: "a", Labels: map[string]string{"netns": "a"}}
	b := Target{Key: "b", Labels: map[string]string{"netns": "b"}}
	e.Evaluate(t0, []TargetFindings{
		{a, []detect.Finding{synFlood("1", 1, 0), synFlood("2", 1, time.Hour)}},
		{b, []detect.Finding{synFlood("1", 1, 0)}},
	})
	if n := len(e.Alerts()); n != 3 {
		t.Fatalf("want 3 alerts, got %d", n)
	}
	if got := rec.take(); len(got) != 2 {
		t.Fatalf("sent %d firing alerts, want 2", len(got))
	}
	// Namespace a disappears.
	gone := t0.Add(time.Second)
	e.Evaluate(gone, []TargetFindings{{b, []detect.Finding{synFlood("1", 1, 0)}}})
	as := e.Alerts()
	if len(as) != 1 || as[0].TargetKey != "b" {
		t.Fatalf("after a vanished: %+v", as)
	}
	got := rec.take()
	if len(got) != 1 || got[0].Labels["netns"] != "a" || !got[0].EndsAt.Equal(gone) {
		t.Fatalf("resolution of a's alert: %+v", got)
	}
	// Its target is forgotten after the retention.
	e.Evaluate(gone.Add(16*time.Minute), []TargetFindings{{b, nil}})
	e.mu.Lock()
	_, kept := e.targets["a"]
	e.mu.Unlock()
	if kept {
		t.Error("removed target kept after its alerts expired")
	}

	// RemoveTarget does the same for one target.
	e.Update(gone.Add(17*time.Minute), b, []detect.Finding{synFlood("1", 1, 0)})
	rec.take()
	e.RemoveTarget(gone.Add(18*time.Minute), "b")
	if n := len(e.Alerts()); n != 0 {
		t.Errorf("after RemoveTarget: %d alerts", n)
	}
	if got := rec.take(); len(got) != 1 || !got[0].EndsAt.Equal(gone.Add(18*time.Minute)) {
		t.Errorf("RemoveTarget resolution: %+v", got)
	}
}

func TestLongerForSendsFiringBackToPending(t *testing.T) {
	e := NewEngine(EngineOptions{})
	e.Update(t0, Target{}, []detect.Finding{synFlood("1", 1, 0)})
	e.Update(t0.Add(time.Second), Target{}, []detect.Finding{synFlood("1", 1, time.Minute)})
	if a := only(t, e); a.State != StatePending || !a.FiredAt.IsZero() {
		t.Errorf("state %v firedAt %v, want pending", a.State, a.FiredAt)
	}
}

func TestFindingsWithoutNameAreIgnored(t *testing.T) {
	e := NewEngine(EngineOptions{})
	e.Update(t0, Target{}, []detect.Finding{{Summary: "no name"}})
	if n := len(e.Alerts()); n != 0 {
		t.Errorf("nameless finding made %d alerts", n)
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "ok_Name9": "ok_Name9", "a-b.c": "a_b_c", "1x": "_1x", "über": "__ber", "_": "_",
	} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLabelsKeyIsUnambiguous(t *testing.T) {
	a := labelsKey(map[string]string{"a": `x",b="y`})
	b := labelsKey(map[string]string{"a": "x", "b": "y"})
	if a == b {
		t.Errorf("distinct label sets share the key %s", a)
	}
}
