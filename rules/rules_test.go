package rules

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/tcpstate/tcpstate-exporter"
)

const (
	rulesFile  = "tcpstate.rules.yml"
	runbookDir = "../docs/runbooks"
)

// runbookPrefix is where the runbooks of this release live: the tag named by
// the VERSION file. `go generate ./rules` rewrites the rules and their tests
// to it.
var runbookPrefix = tcpstate.RunbookBase()

// detectorAlerts are the alerts the exporter's own detectors raise; each needs
// a runbook even though the rules file mirrors them.
var detectorAlerts = []string{
	"TCPSynRecvSurge", "TCPAcceptQueueOverflow", "TCPCloseWaitLeak",
	"TCPTimeWaitExhaustion", "TCPResetStorm", "TCPOrphanPressure",
	"TCPPeerUnresponsive", "TCPPeerZeroWindow", "TCPClientConnectionHog", "TCPSelfConnect",
	"TCPConnectFailures",
	"TCPHalfOpenSuspect",
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("parsing %s: %v", rulesFile, err)
	}
	var out []rule
	for _, g := range rf.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return out
}

func alertNames(rules []rule) []string {
	var names []string
	for _, r := range rules {
		if r.Alert != "" && !slices.Contains(names, r.Alert) {
			names = append(names, r.Alert)
		}
	}
	return names
}

// promtool runs promtool with a time limit and returns its combined output.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH (Debian: apt-get install prometheus); skipping")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckRules(t *testing.T) {
	out := promtool(t, "check", "rules", rulesFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules did not report SUCCESS:\n%s", out)
	}
	t.Log(strings.TrimSpace(out))
}

func TestPromtoolUnitTests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("tests", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no tests/*.yml files")
	}
	out := promtool(t, append([]string{"test", "rules"}, files...)...)
	if n := strings.Count(out, "SUCCESS"); n != len(files) {
		t.Fatalf("promtool reported SUCCESS %d times for %d files:\n%s", n, len(files), out)
	}
	t.Logf("%d promtool test files passed", len(files))
}

func TestAlertMetadata(t *testing.T) {
	rules := loadRules(t)
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		where := fmt.Sprintf("alert %s (%s)", r.Alert, strings.TrimSpace(r.Expr))
		if r.For == "" {
			t.Errorf("%s: no for", where)
		}
		switch r.Labels["severity"] {
		case "warning", "critical":
		default:
			t.Errorf("%s: severity %q, want warning or critical", where, r.Labels["severity"])
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: annotation %s missing", where, a)
			}
		}
		url := r.Annotations["runbook_url"]
		if url != runbookPrefix+r.Alert+".md" {
			t.Errorf("%s: runbook_url %q, want %q (run go generate ./rules)", where, url, runbookPrefix+r.Alert+".md")
			continue
		}
		if _, err := os.Stat(filepath.Join(runbookDir, r.Alert+".md")); err != nil {
			t.Errorf("%s: runbook file: %v", where, err)
		}
	}
}

func TestRunbooks(t *testing.T) {
	index, err := os.ReadFile(filepath.Join(runbookDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := alertNames(loadRules(t))
	for _, a := range detectorAlerts {
		if !slices.Contains(names, a) {
			names = append(names, a)
		}
	}
	for _, a := range names {
		b, err := os.ReadFile(filepath.Join(runbookDir, a+".md"))
		if err != nil {
			t.Errorf("runbook for %s: %v", a, err)
			continue
		}
		if !strings.HasPrefix(string(b), "# "+a) {
			t.Errorf("runbook %s.md does not start with the heading \"# %s\"", a, a)
		}
		if !strings.Contains(string(index), "("+a+".md)") {
			t.Errorf("docs/runbooks/README.md does not link %s.md", a)
		}
	}
	files, err := filepath.Glob(filepath.Join(runbookDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".md")
		if name != "README" && !slices.Contains(names, name) {
			t.Errorf("runbook %s has no alert", f)
		}
	}
}

// unitTestFile is the part of a promtool test file this package reads.
type unitTestFile struct {
	GroupEvalOrder []string `yaml:"group_eval_order"`
	Tests          []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertHasFiringAndQuietCases reads the promtool tests and requires,
// per alert name, a case that fires and a case that expects silence, and a
// firing case for every reason label the alert's rules use.
func TestEveryAlertHasFiringAndQuietCases(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("tests", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	quiet := map[string]bool{}
	variants := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf unitTestFile
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// promtool runs groups in random order unless told: recordings must
		// come before the alerts that read them, or results vary between runs.
		if !slices.Equal(tf.GroupEvalOrder, []string{"tcpstate.recording", "tcpstate.alerts"}) {
			t.Errorf("%s: group_eval_order is %v, want [tcpstate.recording tcpstate.alerts]", f, tf.GroupEvalOrder)
		}
		for _, tc := range tf.Tests {
			for _, at := range tc.AlertRuleTest {
				if len(at.ExpAlerts) == 0 {
					quiet[at.Alertname] = true
				}
				for _, e := range at.ExpAlerts {
					fires[at.Alertname] = true
					variants[at.Alertname+"/"+e.ExpLabels["severity"]+"/"+e.ExpLabels["reason"]] = true
				}
			}
		}
	}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] {
			t.Errorf("alert %s: no promtool case expects it to fire", r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("alert %s: no promtool case expects it to stay quiet", r.Alert)
		}
		v := r.Alert + "/" + r.Labels["severity"] + "/" + r.Labels["reason"]
		if !variants[v] {
			t.Errorf("alert %s with severity %q reason %q: no promtool case expects this rule to fire",
				r.Alert, r.Labels["severity"], r.Labels["reason"])
		}
	}
}

// contractMetrics reads the metric names of the contract kept for the
// dashboard tests.
func contractMetrics(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "dashboards", "testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			names[line] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

var recordNameRE = regexp.MustCompile(`^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$`)

// TestExpressions parses every rule expression and checks that it selects
// only contract metrics or recorded series, and that every aggregation keeps
// job and instance, and keeps netns, namespace and pod unless the quantity is
// node-wide.
func TestExpressions(t *testing.T) {
	rules := loadRules(t)
	metrics := contractMetrics(t)
	records := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			if !recordNameRE.MatchString(r.Record) {
				t.Errorf("record %s does not follow level:metric:operations", r.Record)
			}
			records[r.Record] = true
		}
	}
	p := parser.NewParser(parser.Options{})
	for _, r := range rules {
		name := r.Record + r.Alert
		node, err := p.ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		nodeWide := strings.HasPrefix(r.Record, "instance") || r.Alert == "TCPOrphanPressure"
		// The "one" side of a many-to-one match may aggregate down to exactly
		// the labels it is matched on: that is the per-node fallback join.
		oneSide := map[parser.Node]bool{}
		parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
			if b, ok := n.(*parser.BinaryExpr); ok && b.VectorMatching != nil && b.VectorMatching.Card == parser.CardManyToOne {
				rhs := b.RHS
				for {
					pe, ok := rhs.(*parser.ParenExpr)
					if !ok {
						break
					}
					rhs = pe.Expr
				}
				if agg, ok := rhs.(*parser.AggregateExpr); ok && slices.Equal(agg.Grouping, b.VectorMatching.MatchingLabels) {
					oneSide[agg] = true
				}
			}
			return nil
		})
		parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
			switch n := n.(type) {
			case *parser.VectorSelector:
				if strings.Contains(n.Name, ":") {
					if !records[n.Name] {
						t.Errorf("%s: uses %s, which no rule records", name, n.Name)
					}
				} else if !metrics[n.Name] {
					t.Errorf("%s: metric %s is not in the contract", name, n.Name)
				}
			case *parser.AggregateExpr:
				if n.Without {
					t.Errorf("%s: aggregation uses without(); use by() so label handling stays explicit", name)
				}
				want := []string{"job", "instance"}
				if !nodeWide && !oneSide[n] {
					want = append(want, "netns", "namespace", "pod")
				}
				for _, l := range want {
					if !slices.Contains(n.Grouping, l) {
						t.Errorf("%s: %s by (%s) drops %s", name, n.Op, strings.Join(n.Grouping, ", "), l)
					}
				}
			case *parser.BinaryExpr:
				if n.VectorMatching != nil && n.VectorMatching.On && len(n.VectorMatching.MatchingLabels) > 0 {
					for _, l := range []string{"job", "instance"} {
						if !slices.Contains(n.VectorMatching.MatchingLabels, l) {
							t.Errorf("%s: on(%s) does not match on %s", name, strings.Join(n.VectorMatching.MatchingLabels, ", "), l)
						}
					}
				}
			}
			return nil
		})
	}
}
