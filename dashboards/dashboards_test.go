package dashboards

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// rateWindow stands in for $__rate_interval, so that the test can tell that
// every rate() and increase() uses the variable and not a fixed window.
const rateWindow = 7777 * time.Second

// substitutions replace dashboard variables with concrete values before a
// query is parsed. Longer names come first so $__rate_interval is not read as
// $__range plus a suffix.
var substitutions = []struct{ from, to string }{
	{"${datasource}", "prometheus"},
	{"$__rate_interval", "7777s"},
	{"$__interval", "30s"},
	{"$__range", "1h"},
	{"$namespace", "default"},
	{"$instance", "node1:9874"},
	{"$job", "tcpstate"},
	{"$pod", "web-0"},
}

// builtinMetrics are series Prometheus itself writes; dashboards may query them.
var builtinMetrics = map[string]bool{"ALERTS": true}

func substitute(s string) string {
	for _, sub := range substitutions {
		s = strings.ReplaceAll(s, sub.from, sub.to)
	}
	return s
}

// jsonDashboard is what the checks read back from the committed files.
type jsonDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	Tags          []string       `json:"tags"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []jsonPanel    `json:"panels"`
	Templating    jsonTemplating `json:"templating"`
}

type jsonTemplating struct {
	List []jsonVariable `json:"list"`
}

type jsonVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *jsonDS         `json:"datasource"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

type jsonDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type jsonPanel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Datasource  *jsonDS      `json:"datasource"`
	Targets     []jsonTarget `json:"targets"`
	Panels      []jsonPanel  `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

type jsonTarget struct {
	Expr       string  `json:"expr"`
	RefID      string  `json:"refId"`
	Datasource *jsonDS `json:"datasource"`
}

type loaded struct {
	file string
	raw  map[string]any
	d    jsonDashboard
}

func loadDashboards(t *testing.T) []loaded {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no dashboards/*.json files found")
	}
	var out []loaded
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var l loaded
		l.file = f
		if err := json.Unmarshal(b, &l.raw); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := json.Unmarshal(b, &l.d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, l)
	}
	return out
}

// allPanels flattens rows.
func allPanels(ps []jsonPanel) []jsonPanel {
	var out []jsonPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var uidRE = regexp.MustCompile(`^tcpstate-[a-z0-9]+(-[a-z0-9]+)*$`)

func TestConventions(t *testing.T) {
	seen := map[string]string{}
	for _, l := range loadDashboards(t) {
		d := l.d
		stem := strings.TrimSuffix(l.file, ".json")
		if !uidRE.MatchString(d.UID) || len(d.UID) > 40 {
			t.Errorf("%s: uid %q does not match %s (max 40 chars)", l.file, d.UID, uidRE)
		}
		if d.UID != "tcpstate-"+stem {
			t.Errorf("%s: uid %q, want the stable %q", l.file, d.UID, "tcpstate-"+stem)
		}
		if other, dup := seen[d.UID]; dup {
			t.Errorf("%s: uid %q already used by %s", l.file, d.UID, other)
		}
		seen[d.UID] = l.file
		if d.Title == "" {
			t.Errorf("%s: empty title", l.file)
		}
		if !slices.Contains(d.Tags, "tcpstate") {
			t.Errorf("%s: tags %v lack \"tcpstate\"", l.file, d.Tags)
		}
		if d.SchemaVersion < 39 {
			t.Errorf("%s: schemaVersion %d, want >= 39", l.file, d.SchemaVersion)
		}
		checkVariables(t, l)
		checkDatasourceRefs(t, l.file, "", l.raw)

		ids := map[int]bool{}
		panels := allPanels(d.Panels)
		if len(panels) == 0 {
			t.Errorf("%s: no panels", l.file)
		}
		for _, p := range panels {
			where := fmt.Sprintf("%s: panel %d %q", l.file, p.ID, p.Title)
			if ids[p.ID] {
				t.Errorf("%s: duplicate panel id", where)
			}
			ids[p.ID] = true
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("%s: datasource %+v, want prometheus ${datasource}", where, p.Datasource)
			}
			if p.Type == "row" {
				continue
			}
			if p.Title == "" {
				t.Errorf("%s: panel without title", where)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			switch p.FieldConfig.Defaults.Unit {
			case "short", "s", "percentunit", "cps", "none":
			default:
				t.Errorf("%s: unit %q is not one of short, s, percentunit, cps, none", where, p.FieldConfig.Defaults.Unit)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("%s target %s: datasource %+v, want ${datasource}", where, tg.RefID, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s target %s: empty expr", where, tg.RefID)
				}
			}
		}
	}
	for _, want := range []string{"tcpstate-overview", "tcpstate-listeners", "tcpstate-leaks-and-exhaustion", "tcpstate-pods", "tcpstate-alerts"} {
		if _, ok := seen[want]; !ok {
			t.Errorf("dashboard %s missing", want)
		}
	}
}

// checkDatasourceRefs walks the whole JSON tree: any "datasource" object must
// name the ${datasource} variable, so no dashboard hard-codes a datasource uid.
func checkDatasourceRefs(t *testing.T, file, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if k == "datasource" {
				if m, ok := c.(map[string]any); ok {
					if uid, _ := m["uid"].(string); uid != "${datasource}" {
						t.Errorf("%s: %s.datasource.uid = %q, want ${datasource}", file, path, uid)
					}
				} else if s, ok := c.(string); ok && s != "${datasource}" {
					t.Errorf("%s: %s.datasource = %q, want ${datasource}", file, path, s)
				}
			}
			checkDatasourceRefs(t, file, path+"."+k, c)
		}
	case []any:
		for i, c := range v {
			checkDatasourceRefs(t, file, fmt.Sprintf("%s[%d]", path, i), c)
		}
	}
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

func checkVariables(t *testing.T, l loaded) {
	t.Helper()
	vars := map[string]jsonVariable{}
	for _, v := range l.d.Templating.List {
		vars[v.Name] = v
	}
	ds, ok := vars["datasource"]
	if !ok || ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("%s: want a datasource variable of type datasource with query prometheus, got %+v", l.file, ds)
	}
	want := []string{"job", "instance"}
	if l.d.UID == "tcpstate-pods" {
		want = append(want, "namespace", "pod")
	}
	for _, name := range want {
		v, ok := vars[name]
		if !ok {
			t.Errorf("%s: variable %s missing", l.file, name)
			continue
		}
		if v.Type != "query" || v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("%s: variable %s must be a query variable on ${datasource}", l.file, name)
		}
		var vq struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &vq); err != nil {
			t.Errorf("%s: variable %s query: %v", l.file, name, err)
			continue
		}
		m := labelValuesRE.FindStringSubmatch(vq.Query)
		if m == nil || m[2] != name || v.Definition != vq.Query {
			t.Errorf("%s: variable %s query %q is not label_values(..., %s) or differs from its definition", l.file, name, vq.Query, name)
			continue
		}
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(m[1])); err != nil {
			t.Errorf("%s: variable %s selector %q: %v", l.file, name, m[1], err)
		}
		if (name == "namespace" || name == "pod") && (!v.IncludeAll || v.AllValue != ".*") {
			t.Errorf("%s: variable %s must include All with allValue .* so empty labels match", l.file, name)
		}
	}
}

// readMetricNames reads testdata/metrics.txt: the metric names the exporter
// serves (the README's metric table). The end-to-end test in e2e/ checks
// every name a dashboard or rule uses against the exporter's real /metrics
// output, so that a dashboard cannot query a metric the exporter does not
// serve.
func readMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[line] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("testdata/metrics.txt lists no metrics")
	}
	return names
}

// readRecordingRules returns the record names of rules/tcpstate.rules.yml.
func readRecordingRules(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "rules", "tcpstate.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("parsing rules: %v", err)
	}
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				names[r.Record] = true
			}
		}
	}
	return names
}

// TestQueries parses every target with the PromQL parser after substituting
// the dashboard variables, and checks the metric names, the variables each
// selector filters on, and the rate windows.
func TestQueries(t *testing.T) {
	metrics := readMetricNames(t)
	records := readRecordingRules(t)
	used := map[string]bool{}
	p := parser.NewParser(parser.Options{})
	nQueries := 0
	for _, l := range loadDashboards(t) {
		required := []string{"job", "instance"}
		if l.d.UID == "tcpstate-pods" {
			required = append(required, "namespace", "pod")
		}
		for _, pn := range allPanels(l.d.Panels) {
			for _, tg := range pn.Targets {
				where := fmt.Sprintf("%s: panel %q target %s", l.file, pn.Title, tg.RefID)
				expr := substitute(tg.Expr)
				if strings.Contains(expr, "$") {
					t.Errorf("%s: unknown variable left in %q", where, expr)
					continue
				}
				node, err := p.ParseExpr(expr)
				if err != nil {
					t.Errorf("%s: %q: %v", where, expr, err)
					continue
				}
				nQueries++
				for _, e := range checkExpr(node, required, metrics, records, used) {
					t.Errorf("%s: %s (expr %s)", where, e, tg.Expr)
				}
			}
		}
	}
	if nQueries == 0 {
		t.Fatal("no queries parsed")
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d queries parsed; metrics used: %s", nQueries, strings.Join(names, " "))
}

// checkExpr returns what is wrong with one parsed query.
func checkExpr(node parser.Node, required []string, metrics, records, used map[string]bool) []string {
	var errs []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := n.Name
			if name == "" {
				errs = append(errs, "selector without a metric name")
				return nil
			}
			used[name] = true
			switch {
			case strings.Contains(name, ":"):
				if !records[name] {
					errs = append(errs, fmt.Sprintf("recording rule %s is not in rules/tcpstate.rules.yml", name))
				}
			case builtinMetrics[name]:
			case !metrics[name]:
				errs = append(errs, fmt.Sprintf("metric %s is not in the contract (testdata/metrics.txt)", name))
			}
			have := map[string]bool{}
			for _, m := range n.LabelMatchers {
				have[m.Name] = true
			}
			for _, r := range required {
				if !have[r] {
					errs = append(errs, fmt.Sprintf("selector %s does not filter on %s", name, r))
				}
			}
		case *parser.Call:
			switch n.Func.Name {
			case "rate", "irate", "increase":
				for _, a := range n.Args {
					if ms, ok := a.(*parser.MatrixSelector); ok && ms.Range != rateWindow {
						errs = append(errs, fmt.Sprintf("%s() over %s, want $__rate_interval", n.Func.Name, ms.Range))
					}
				}
			}
		}
		return nil
	})
	return errs
}

// TestCheckExprCatchesMistakes feeds the checker queries that break the
// conventions, so a checker that accepts everything cannot pass.
func TestCheckExprCatchesMistakes(t *testing.T) {
	metrics := map[string]bool{"tcpstate_sockets": true, "tcpstate_dumps_total": true}
	records := map[string]bool{"netns:tcpstate_x:sum": true}
	p := parser.NewParser(parser.Options{})
	cases := []struct {
		expr string
		want string
	}{
		{`tcpstate_sockets{job=~"tcpstate", instance=~"n"}`, ""},
		{`netns:tcpstate_x:sum{job=~"tcpstate", instance=~"n"}`, ""},
		{`rate(tcpstate_dumps_total{job=~"tcpstate", instance=~"n"}[7777s])`, ""},
		{`tcpstate_socket{job=~"tcpstate", instance=~"n"}`, "not in the contract"},
		{`netns:tcpstate_y:sum{job=~"tcpstate", instance=~"n"}`, "not in rules"},
		{`tcpstate_sockets{job=~"tcpstate"}`, "does not filter on instance"},
		{`rate(tcpstate_dumps_total{job=~"tcpstate", instance=~"n"}[5m])`, "want $__rate_interval"},
	}
	for _, c := range cases {
		node, err := p.ParseExpr(c.expr)
		if err != nil {
			t.Fatalf("%q: %v", c.expr, err)
		}
		errs := checkExpr(node, []string{"job", "instance"}, metrics, records, map[string]bool{})
		got := strings.Join(errs, "; ")
		if c.want == "" && got != "" {
			t.Errorf("%q: unexpected complaint %q", c.expr, got)
		}
		if c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%q: got %q, want a complaint containing %q", c.expr, got, c.want)
		}
	}
}

func TestSubstituteOrder(t *testing.T) {
	got := substitute(`rate(x{instance=~"$instance"}[$__rate_interval]) offset $__range`)
	want := `rate(x{instance=~"node1:9874"}[7777s]) offset 1h`
	if got != want {
		t.Errorf("substitute = %q, want %q", got, want)
	}
}
