package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Paths of the real artefacts, relative to this package.
const (
	rulesPath     = "../rules/tcpstate.rules.yml"
	dashboardsDir = "../dashboards"
)

// builtinMetrics are series Prometheus writes itself; dashboards and rules
// may query them.
var builtinMetrics = map[string]bool{"ALERTS": true, "ALERTS_FOR_STATE": true}

// board is one Grafana dashboard as the test reads it.
type board struct {
	File   string
	UID    string
	Panels []panel
	Vars   []variable
}

// panel is a non-row panel with its queries.
type panel struct {
	ID      int
	Title   string
	Targets []target
}

type target struct {
	RefID string
	Expr  string
}

// variable is a templating variable; Query is the label_values(...) text of
// query variables.
type variable struct {
	Name     string
	Type     string
	Query    string
	AllValue string
}

// The JSON shapes read from the committed dashboards.
type jsonBoard struct {
	UID        string      `json:"uid"`
	Panels     []jsonPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name     string          `json:"name"`
			Type     string          `json:"type"`
			Query    json.RawMessage `json:"query"`
			AllValue string          `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type jsonPanel struct {
	ID      int         `json:"id"`
	Type    string      `json:"type"`
	Title   string      `json:"title"`
	Panels  []jsonPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// loadBoards reads every dashboards/*.json file.
func loadBoards() ([]board, error) {
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing dashboards: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no dashboards in %s", dashboardsDir)
	}
	var out []board
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading dashboard: %w", err)
		}
		var jb jsonBoard
		if err := json.Unmarshal(b, &jb); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		bd := board{File: filepath.Base(f), UID: jb.UID}
		var walk func([]jsonPanel)
		walk = func(ps []jsonPanel) {
			for _, p := range ps {
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				pn := panel{ID: p.ID, Title: p.Title}
				for _, tg := range p.Targets {
					pn.Targets = append(pn.Targets, target{RefID: tg.RefID, Expr: tg.Expr})
				}
				bd.Panels = append(bd.Panels, pn)
			}
		}
		walk(jb.Panels)
		for _, v := range jb.Templating.List {
			vr := variable{Name: v.Name, Type: v.Type, AllValue: v.AllValue}
			if v.Type == "query" {
				var q struct {
					Query string `json:"query"`
				}
				if err := json.Unmarshal(v.Query, &q); err != nil {
					return nil, fmt.Errorf("%s: variable %s: %w", f, v.Name, err)
				}
				vr.Query = q.Query
			}
			bd.Vars = append(bd.Vars, vr)
		}
		out = append(out, bd)
	}
	return out, nil
}

var (
	varRE         = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
)

// expandVars replaces $name and ${name} with vars[name], the way Grafana
// interpolates a query; a variable without a value is an error.
func expandVars(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		sm := varRE.FindStringSubmatch(m)
		name := sm[1] + sm[2]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for variable(s) %s in %q", strings.Join(missing, ", "), expr)
	}
	return out, nil
}

// regexValue is how Grafana puts one selected value into a =~ matcher:
// regexp metacharacters escaped, then backslashes doubled for the PromQL
// string literal.
func regexValue(v string) string {
	return strings.ReplaceAll(regexp.QuoteMeta(v), `\`, `\\`)
}

// parseLabelValues splits a label_values(selector, label) variable query.
func parseLabelValues(q string) (selector, label string, err error) {
	m := labelValuesRE.FindStringSubmatch(q)
	if m == nil {
		return "", "", fmt.Errorf("variable query %q is not label_values(selector, label)", q)
	}
	return m[1], m[2], nil
}

// metricNames returns the metric names of every selector in a PromQL
// expression, sorted and without duplicates.
func metricNames(expr string) ([]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", expr, err)
	}
	var names []string
	var nameless error
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				nameless = fmt.Errorf("selector %s in %q has no metric name", vs, expr)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	if nameless != nil {
		return nil, nameless
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// ruleInfo is one rule of a rules file.
type ruleInfo struct {
	Group  string
	Record string
	Alert  string
	Expr   string
	For    string
	Labels map[string]string
}

// loadRules reads the rules of a Prometheus rules file.
func loadRules(path string) ([]ruleInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	var rf struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Record string            `yaml:"record"`
				Alert  string            `yaml:"alert"`
				Expr   string            `yaml:"expr"`
				For    string            `yaml:"for"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	var out []ruleInfo
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out = append(out, ruleInfo{Group: g.Name, Record: r.Record, Alert: r.Alert, Expr: r.Expr, For: r.For, Labels: r.Labels})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no rules", path)
	}
	return out, nil
}

// exprEdit is one textual change the test copy of the rules makes to an
// alert expression.
type exprEdit struct {
	Alert, Reason string // which rule: alertname and its reason label
	From, To      string // exact substring of its expr and its replacement
}

// testRuleEdits shorten what would otherwise take ten minutes in the
// scenario: the rule's age threshold for TCPCloseWaitLeak (600 s, ten times
// the exporter's default --closewait.min-age) becomes 5 s, a little over the
// 3 s --closewait.min-age the test gives the exporter.
var testRuleEdits = []exprEdit{{
	Alert: "TCPCloseWaitLeak", Reason: "old_sockets",
	From: "tcpstate_close_wait_oldest_seconds > 600",
	To:   "tcpstate_close_wait_oldest_seconds > 5",
}}

// testRulesCopy returns the rules file src with every alert's for: set to
// forDur and edits applied. Everything else (recording rules, labels,
// annotations, group names) is kept as is. An edit whose rule or text is not
// found is an error, so the copy cannot silently drift from the real file.
func testRulesCopy(src []byte, forDur string, edits []exprEdit) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("parsing rules: %w", err)
	}
	applied := make([]bool, len(edits))
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	groups := mapValue(root, "groups")
	if groups == nil || groups.Kind != yaml.SequenceNode {
		return nil, errors.New("rules: no groups list")
	}
	nAlerts := 0
	for _, g := range groups.Content {
		rules := mapValue(g, "rules")
		if rules == nil || rules.Kind != yaml.SequenceNode {
			return nil, errors.New("rules: a group without a rules list")
		}
		for _, r := range rules.Content {
			alert := mapValue(r, "alert")
			if alert == nil {
				continue
			}
			nAlerts++
			if f := mapValue(r, "for"); f != nil {
				f.Value, f.Tag, f.Style = forDur, "!!str", 0
			} else {
				r.Content = append(r.Content,
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "for"},
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: forDur})
			}
			reason := ""
			if ls := mapValue(r, "labels"); ls != nil {
				if rv := mapValue(ls, "reason"); rv != nil {
					reason = rv.Value
				}
			}
			for i, e := range edits {
				if e.Alert != alert.Value || e.Reason != reason {
					continue
				}
				expr := mapValue(r, "expr")
				if expr == nil || !strings.Contains(expr.Value, e.From) {
					return nil, fmt.Errorf("rules: %s{reason=%q} expr no longer contains %q; update testRuleEdits", e.Alert, e.Reason, e.From)
				}
				expr.Value = strings.Replace(expr.Value, e.From, e.To, 1)
				applied[i] = true
			}
		}
	}
	if nAlerts == 0 {
		return nil, errors.New("rules: no alerting rules")
	}
	for i, ok := range applied {
		if !ok {
			return nil, fmt.Errorf("rules: no alert %s with reason %q; update testRuleEdits", edits[i].Alert, edits[i].Reason)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("writing rules copy: %w", err)
	}
	return buf.Bytes(), enc.Close()
}

// mapValue returns the value node of key in a YAML mapping node, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// usedMetric is a metric name and the places that query it.
type usedMetric struct {
	Name  string
	Where []string
}

// usedMetrics collects the metric names every dashboard query, every
// dashboard variable selector and every rule expression uses.
func usedMetrics(boards []board, rules []ruleInfo, vars map[string]string) (map[string]*usedMetric, error) {
	out := map[string]*usedMetric{}
	add := func(where, expr string) error {
		names, err := metricNames(expr)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for _, n := range names {
			u := out[n]
			if u == nil {
				u = &usedMetric{Name: n}
				out[n] = u
			}
			u.Where = append(u.Where, where)
		}
		return nil
	}
	for _, b := range boards {
		for _, v := range b.Vars {
			if v.Type != "query" {
				continue
			}
			sel, _, err := parseLabelValues(v.Query)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.File, err)
			}
			e, err := expandVars(sel, vars)
			if err != nil {
				return nil, fmt.Errorf("%s variable %s: %w", b.File, v.Name, err)
			}
			if err := add(fmt.Sprintf("%s variable %s", b.File, v.Name), e); err != nil {
				return nil, err
			}
		}
		for _, p := range b.Panels {
			for _, tg := range p.Targets {
				e, err := expandVars(tg.Expr, vars)
				if err != nil {
					return nil, fmt.Errorf("%s panel %q: %w", b.File, p.Title, err)
				}
				if err := add(fmt.Sprintf("%s panel %q %s", b.File, p.Title, tg.RefID), e); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, r := range rules {
		name := r.Record
		if name == "" {
			name = r.Alert
		}
		if err := add(fmt.Sprintf("rule %s (group %s)", name, r.Group), r.Expr); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// metricReport sorts the metric names the dashboards and rules use by where
// they come from, and lists what is wrong.
type metricReport struct {
	Served, Records, Builtin, Allowed []string
	Problems                          []string
}

// classifyMetrics checks used metric names against the exporter's real
// metric families (served), the recording rules of rules, and the names
// Prometheus writes itself. A name found nowhere is a problem unless allowed
// lists it; an allowed entry that is no longer used, or is served after
// all, is a problem too, so the list cannot go stale.
func classifyMetrics(used map[string]*usedMetric, rules []ruleInfo, served map[string]map[string]bool, allowed map[string]string) metricReport {
	records := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			records[r.Record] = true
		}
	}
	var rep metricReport
	for _, name := range slices.Sorted(maps.Keys(used)) {
		where := strings.Join(used[name].Where, "; ")
		switch {
		case strings.Contains(name, ":"):
			rep.Records = append(rep.Records, name)
			if !records[name] {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s is not a recording rule of %s; used by %s", name, rulesPath, where))
			}
		case builtinMetrics[name]:
			rep.Builtin = append(rep.Builtin, name)
		case served[name] != nil:
			rep.Served = append(rep.Served, name)
		case allowed[name] != "":
			rep.Allowed = append(rep.Allowed, name)
		default:
			rep.Problems = append(rep.Problems, fmt.Sprintf("metric %s is not in the exporter's /metrics; used by %s", name, where))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(allowed)) {
		switch {
		case used[name] == nil:
			rep.Problems = append(rep.Problems, fmt.Sprintf("allowedAbsentMetrics lists %s, which no dashboard or rule uses any more: remove it", name))
		case served[name] != nil:
			rep.Problems = append(rep.Problems, fmt.Sprintf("allowedAbsentMetrics lists %s, which the exporter serves in this scenario: remove it", name))
		}
	}
	return rep
}

// TestClassifyMetricsCatchesMistakes feeds the name check a dashboard and
// rules that use a metric the exporter does not serve, a recording rule
// that does not exist and stale allow-list entries: a check that accepts
// everything cannot pass.
func TestClassifyMetricsCatchesMistakes(t *testing.T) {
	boards := []board{{File: "b.json", Panels: []panel{{Title: "P", Targets: []target{
		{RefID: "A", Expr: `rate(tcpstate_dumps_total{job=~"$job"}[$__rate_interval])`},
		{RefID: "B", Expr: `tcpstate_socket{job=~"$job"} or netns:missing:sum or ALERTS`},
		{RefID: "C", Expr: `tcpstate_alertmanager_queue_length`},
		{RefID: "D", Expr: `tcpstate_build_info`},
	}}}}}
	rules := []ruleInfo{{Group: "g", Record: "netns:ok:sum", Expr: `sum(tcpstate_sockets)`}, {Group: "g", Alert: "X", Expr: `netns:ok:sum > 1`}}
	used, err := usedMetrics(boards, rules, map[string]string{"job": "j", "__rate_interval": "15s"})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]map[string]bool{"tcpstate_dumps_total": {"kind": true}, "tcpstate_sockets": {"state": true}, "tcpstate_build_info": {}}
	allowed := map[string]string{"tcpstate_alertmanager_queue_length": "no Alertmanager", "tcpstate_gone": "stale", "tcpstate_build_info": "served"}
	rep := classifyMetrics(used, rules, served, allowed)
	got := strings.Join(rep.Problems, "\n")
	for _, want := range []string{
		"metric tcpstate_socket is not in the exporter's /metrics; used by b.json panel \"P\" B",
		"netns:missing:sum is not a recording rule",
		"lists tcpstate_gone, which no dashboard or rule uses",
		"lists tcpstate_build_info, which the exporter serves",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if len(rep.Problems) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(rep.Problems), got)
	}
	if !slices.Equal(rep.Served, []string{"tcpstate_build_info", "tcpstate_dumps_total", "tcpstate_sockets"}) || !slices.Equal(rep.Builtin, []string{"ALERTS"}) ||
		!slices.Equal(rep.Allowed, []string{"tcpstate_alertmanager_queue_length"}) || !slices.Equal(rep.Records, []string{"netns:missing:sum", "netns:ok:sum"}) {
		t.Errorf("report %+v", rep)
	}
}

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"job": "tcpstate", "instance": regexValue("127.0.0.1:9874"), "__rate_interval": "15s", "__range": "1m", "datasource": "p"}
	got, err := expandVars(`rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval] offset $__range)`, vars)
	if err != nil {
		t.Fatal(err)
	}
	want := `rate(x{job=~"tcpstate", instance=~"127\\.0\\.0\\.1:9874"}[15s] offset 1m)`
	if got != want {
		t.Errorf("expandVars = %q, want %q", got, want)
	}
	// The escaped value is a valid PromQL string holding the regexp that
	// matches exactly the instance.
	if _, err := metricNames(got); err != nil {
		t.Errorf("expanded query does not parse: %v", err)
	}
	if _, err := expandVars(`x{pod=~"$pod"}`, vars); err == nil || !strings.Contains(err.Error(), "pod") {
		t.Errorf("unknown variable: err = %v, want one naming pod", err)
	}
}

func TestMetricNames(t *testing.T) {
	got, err := metricNames(`sum by (instance) (rate(a_total{job="x"}[5m])) / on (instance) group_left max(b) or c:rec:sum and ALERTS{alertname="X"} or a_total`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ALERTS", "a_total", "b", "c:rec:sum"}; !slices.Equal(got, want) {
		t.Errorf("metricNames = %v, want %v", got, want)
	}
	if _, err := metricNames(`{job="x"}`); err == nil {
		t.Error("a selector without a metric name was accepted")
	}
	if _, err := metricNames(`sum(`); err == nil {
		t.Error("a broken query was accepted")
	}
}

// TestRulesCopy checks the test copy of the rules: every alert's for: is
// shortened, the one edit is applied, nothing else changes, and promtool
// accepts the copy.
func TestRulesCopy(t *testing.T) {
	src, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := testRulesCopy(src, "1s", testRuleEdits)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	orig, err := loadRules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := loadRules(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(orig) != len(cp) {
		t.Fatalf("copy has %d rules, the original %d", len(cp), len(orig))
	}
	edited := 0
	for i := range orig {
		o, c := orig[i], cp[i]
		if o.Record != c.Record || o.Alert != c.Alert || o.Group != c.Group || fmt.Sprint(o.Labels) != fmt.Sprint(c.Labels) {
			t.Errorf("rule %d changed identity: %+v -> %+v", i, o, c)
		}
		if o.Alert != "" && c.For != "1s" {
			t.Errorf("alert %s: for %q, want 1s", c.Alert, c.For)
		}
		if o.Record != "" && c.For != "" {
			t.Errorf("recording rule %s gained for %q", c.Record, c.For)
		}
		if o.Expr != c.Expr {
			edited++
			if c.Alert != "TCPCloseWaitLeak" || !strings.Contains(c.Expr, "tcpstate_close_wait_oldest_seconds > 5\n") {
				t.Errorf("unexpected expr change in %s%s:\n%s\n->\n%s", o.Alert, o.Record, o.Expr, c.Expr)
			}
		}
	}
	if edited != 1 {
		t.Errorf("%d expressions changed, want exactly 1", edited)
	}
	if _, err := testRulesCopy(src, "1s", []exprEdit{{Alert: "TCPCloseWaitLeak", Reason: "old_sockets", From: "no such text"}}); err == nil {
		t.Error("an edit that matches nothing was accepted")
	}
	if _, err := testRulesCopy(src, "1s", []exprEdit{{Alert: "NoSuchAlert", From: "x"}}); err == nil {
		t.Error("an edit of a missing alert was accepted")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (scripts/test-all.sh installs Debian's prometheus): cannot lint the copy")
	}
	if o, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the test copy: %v\n%s", err, o)
	}
}
