//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// leaked is how many CLOSE_WAIT sockets the scenario leaks: above both the
// exporter's default --closewait.threshold (10) and the rule's count
// condition (> 10).
const leaked = 20

// closeWaitMinAge is the exporter's --closewait.min-age in the scenario.
const closeWaitMinAge = 3 * time.Second

// alertWait bounds the wait for both alerts of the leak's port to reach
// Alertmanager.
const alertWait = 120 * time.Second

// commandWait bounds the wait for those alerts to carry the leaking
// command. The exporter looks owners up by scanning /proc/PID/fd within a
// 250 ms budget; a scan cut short (other processes on the machine holding
// hundreds of thousands of descriptors, as other tests' fixtures do) is
// retried after 20, 40 and 80 s with a doubled budget each time, up to 2 s
// (collector/closewait.go), so the last retry happens about 143 s after the
// sockets reach --closewait.min-age. Until then the command label is "".
// Measured: with 239,000 socket descriptors held by other processes (a
// 1.35 s scan) both alerts named the command 146-148 s after the leak.
const commandWait = 180 * time.Second

// allowedAbsentMetrics are metric names the dashboards or rules query that
// the exporter legitimately does not serve in this scenario, each with the
// reason. Anything else a dashboard or rule names must be in the real
// /metrics output. Every entry must still be used somewhere and really be
// absent, or the test says the list is stale.
//
// tcpstate_alert (present only while an alert is pending or firing) exists
// because the leak fires TCPCloseWaitLeak; the tcpstate_alertmanager_*
// notifier metrics (present only with --alertmanager.url) exist because the
// exporter pushes to the test's Alertmanager.
var allowedAbsentMetrics = map[string]string{
	"tcpstate_netns_namespaces":                 "served only with --netns=all (the namespace sampler's self-metrics); the scenario runs --netns=host",
	"tcpstate_netns_sweep_period_seconds":       "served only with --netns=all (the namespace sampler's self-metrics); the scenario runs --netns=host",
	"tcpstate_netns_unsampled":                  "served only with --netns=all (the namespace sampler's self-metrics); the scenario runs --netns=host (cmd/tcpstate-exporter's TestNetnsAllUnderFDLimit scrapes it)",
	"tcpstate_peer_stalled_sockets":             "served only while sockets towards a peer are stalled (retransmitting or zero window); the scenario's peers all answer",
	"tcpstate_peer_stalled_seconds":             "served only while sockets towards a peer are stalled; the scenario's peers all answer",
	"tcpstate_peer_stalled_max_retransmissions": "served only while sockets towards a peer are stalled; the scenario's peers all answer",
	"tcpstate_halfopen_suspects":                "served only while ESTABLISHED sockets with no timer armed sit idle past --halfopen.min-idle; every connection of the scenario has keepalive on (Go's default) or is closed (collector/halfopen_linux_test.go makes suspects)",
	"tcpstate_halfopen_oldest_idle_seconds":     "served only while there are half-open suspects; the scenario has none",
}

// emptyInScenario are dashboard queries ("file|panel title|refId") that
// legitimately return no data in this scenario, each with the reason. Every
// other query of every dashboard must return data, instant and over the
// last minute, with the variables set to the scrape's job and instance and
// with them set to All.
var emptyInScenario = map[string]string{
	"listeners.json|Accept queue length and limit|A":                     "filters on accept-queue length > 0; the leaky server accepts every connection at once, so no queue holds one",
	"listeners.json|Accept queue length and limit|B":                     "same > 0 filter on the accept-queue length",
	"listeners.json|SYN_RECV per listener|A":                             "filters on SYN_RECV > 0; the scenario makes no half-open connections",
	"pods.json|SYN_RECV per listener|A":                                  "filters on SYN_RECV > 0; the scenario makes no half-open connections",
	"leaks-and-exhaustion.json|Orphans against tcp_max_orphans|B":        "tcpstate_sysctl{name=\"net.ipv4.tcp_max_orphans\"} exists only in the initial network namespace (contract), and this exporter runs in a test namespace",
	"overview.json|Namespace sampler|A":                                  "tcpstate_netns_namespaces is served only with --netns=all; the scenario runs --netns=host",
	"overview.json|Namespace sampler|B":                                  "tcpstate_netns_sweep_period_seconds is served only with --netns=all; the scenario runs --netns=host",
	"overview.json|Namespace sampler|C":                                  "tcpstate_netns_unsampled is served only with --netns=all; the scenario runs --netns=host",
	"overview.json|Stalled sockets per peer (top 20)|A":                  "no peer is stalled in the scenario (collector/connhealth_scenario_linux_test.go makes them)",
	"overview.json|Stalled sockets per peer (top 20)|B":                  "no peer is stalled in the scenario",
	"overview.json|How long peers have been stalled|A":                   "no peer is stalled in the scenario",
	"overview.json|How long peers have been stalled|B":                   "no peer is stalled in the scenario",
	"overview.json|Self-connected sockets per node|A":                    "filters on a count > 0; the scenario has no self-connected socket",
	"listeners.json|Half-open connections with SYN-ACK retransmitted|A":  "filters on > 0; the scenario makes no half-open connections",
	"listeners.json|Half-open connections with SYN-ACK retransmitted|B":  "same > 0 filter",
	"leaks-and-exhaustion.json|Half-open suspects by port and command|A": "no half-open suspect in the scenario (see allowedAbsentMetrics)",
	"leaks-and-exhaustion.json|Longest silence of a half-open suspect|A": "no half-open suspect in the scenario",
	"leaks-and-exhaustion.json|Half-open groups|A":                       "no half-open suspect in the scenario",
	"leaks-and-exhaustion.json|Half-open groups|B":                       "no half-open suspect in the scenario",
}

// corePanels ("file|panel title") are the panels the scenario must fill:
// each must exist, and each of its queries must return data both instant
// and over the last minute, with job and instance selected and with All.
// (Every other query must return data too unless emptyInScenario lists it;
// this list also catches a core panel being renamed or removed.)
var corePanels = []string{
	"overview.json|Sockets per state",
	"overview.json|CLOSE_WAIT",
	"overview.json|Peaks of rare states over the sample window",
	"overview.json|Listen queues and SYN handling",
	"overview.json|Dump duration",
	"overview.json|Dump CPU",
	"overview.json|Sample age at scrape",
	"overview.json|Dumps and errors",
	"listeners.json|Listeners by accept-queue fill",
	"listeners.json|Accept queue fill (top 20)",
	"listeners.json|Listening sockets per address",
	"leaks-and-exhaustion.json|CLOSE_WAIT by port and command",
	"leaks-and-exhaustion.json|Oldest CLOSE_WAIT socket",
	"leaks-and-exhaustion.json|CLOSE_WAIT groups",
	"leaks-and-exhaustion.json|Local port use per destination (top 20)",
	"leaks-and-exhaustion.json|TIME_WAIT bucket use",
	"pods.json|CLOSE_WAIT per pod",
	"pods.json|Sockets per pod and state",
	"alerts.json|Active agent alerts",
	"alerts.json|Agent alerts over time",
	"alerts.json|Active rule alerts",
	"alerts.json|Rule alerts over time",
}

// emptyRecordingRules are recording rules that legitimately produce nothing
// in this scenario, with the reason.
var emptyRecordingRules = map[string]string{
	"instance:tcpstate_orphan_sockets_used:ratio": "joins on tcpstate_sysctl{name=\"net.ipv4.tcp_max_orphans\"}, which exists only in the initial network namespace; this exporter runs in a test namespace",
}

// TestE2EPrometheusAlertmanager runs the whole chain in one network
// namespace: the exporter, a real Prometheus scraping it every second with a
// test copy of rules/tcpstate.rules.yml, a real Alertmanager and a webhook
// receiver. A server leaks CLOSE_WAIT sockets; the exporter's own
// TCPCloseWaitLeak and the Prometheus rule's must both reach Alertmanager.
// Then every dashboard query runs through Prometheus's HTTP API, and every
// metric name the dashboards and rules use is looked up in the exporter's
// real /metrics.
//
// Everything shares the namespace's loopback, so nothing needs a route
// between namespaces, the ports are free whatever the host runs, and the
// scenario's sockets are isolated from the host's. Prometheus's and
// Alertmanager's own connections are counted by the exporter too; the test
// checks alerts, query health and the leak's own series, not totals.
func TestE2EPrometheusAlertmanager(t *testing.T) {
	promBin := lookBinary(t, "Prometheus", "prometheus")
	amBin := lookBinary(t, "Alertmanager", "alertmanager", "prometheus-alertmanager")
	boards, err := loadBoards()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := loadRules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	rulesSrc, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	// The rules Prometheus loads: every for: shortened to 1s and the
	// CLOSE_WAIT age condition to 5 s, so the scenario takes seconds, not
	// ten minutes. rules/tcpstate.rules.yml itself is not changed.
	rulesCopy, err := testRulesCopy(rulesSrc, "1s", testRuleEdits)
	if err != nil {
		t.Fatal(err)
	}

	ns := fixture.NewNetnsPrefix(t, "tse5-")
	dir := t.TempDir()
	t0 := time.Now()
	exporterBin := buildExporter(t, dir)
	t.Logf("exporter built in %v", time.Since(t0).Round(time.Millisecond))

	c := nsClient(ns)
	defer c.CloseIdleConnections()
	hook, hookURL := startWebhook(t, ns)
	startAlertmanager(t, ns, c, amBin, dir, hookURL)
	startExporter(t, ns, c, exporterBin, "--sample.interval=1s", "--halfopen.interval=1s", "--closewait.min-age="+closeWaitMinAge.String())
	rulesFile := filepath.Join(dir, "tcpstate.rules.yml")
	if err := os.WriteFile(rulesFile, rulesCopy, 0o644); err != nil {
		t.Fatal(err)
	}
	startPrometheus(t, ns, c, promBin, dir, rulesFile)
	stackUp := time.Now()
	t.Logf("Alertmanager, exporter and Prometheus ready in namespace %s after %v", ns, stackUp.Sub(t0).Round(time.Millisecond))

	pc, err := api.NewClient(api.Config{Address: "http://" + prometheusAddr, Client: c})
	if err != nil {
		t.Fatal(err)
	}
	prom := promv1.NewAPI(pc)
	waitTargetUp(t, prom)

	ls := startLeakyServer(t, ns, dir)
	ls.leak(t, ns, leaked)
	leakAt := time.Now()
	port := strconv.Itoa(ls.port)
	t.Logf("leak: %d connections to %s on port %s closed by their clients; server never closes them", leaked, leakyServerName, port)

	agent, rule := waitBothAlerts(t, c, port, false, leakAt.Add(alertWait), leakAt)
	if agent.Labels["command"] != leakyServerName || rule.Labels["command"] != leakyServerName {
		t.Logf("the alerts carry command=%q (agent) and %q (rule): the owner lookup has not placed the sockets yet; waiting for command=%s", agent.Labels["command"], rule.Labels["command"], leakyServerName)
		logBusiestProcesses(t)
		agent, rule = waitBothAlerts(t, c, port, true, leakAt.Add(commandWait), leakAt)
	}
	checkAgentAlert(t, agent, port)
	checkRuleAlert(t, rule, port)
	waitWebhook(t, hook, port)

	checkRuleHealth(t, prom)
	body := scrapeExporter(t, c)
	served := metricFamilies(t, body)
	checkMetricNames(t, prom, boards, rules, served)
	checkRecordingRules(t, prom, rules)
	runDashboards(t, prom, boards, port)
	both := rule.seenAt
	if agent.seenAt.After(both) {
		both = agent.seenAt
	}
	t.Logf("total %v; leak to both alerts in Alertmanager %v", time.Since(t0).Round(time.Millisecond), both.Sub(leakAt).Round(time.Millisecond))
}

// waitTargetUp waits until Prometheus has scraped the exporter successfully.
func waitTargetUp(t *testing.T, prom promv1.API) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := prom.Targets(ctx)
		cancel()
		if err != nil {
			last = err.Error()
		} else {
			for _, at := range res.Active {
				if string(at.Labels["job"]) == scrapeJob && string(at.Labels["instance"]) == scrapeInstance {
					if at.Health == promv1.HealthGood {
						return
					}
					last = fmt.Sprintf("health %s, last error %q", at.Health, at.LastError)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("Prometheus did not scrape %s successfully within 30 s: %s", scrapeInstance, last)
}

// amAlert is the part of an alert in Alertmanager's GET /api/v2/alerts
// answer the test reads.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	GeneratorURL string            `json:"generatorURL"`
	StartsAt     time.Time         `json:"startsAt"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
	seenAt time.Time
}

func getAMAlerts(c *http.Client) ([]amAlert, error) {
	resp, err := c.Get("http://" + alertmanagerAddr + "/api/v2/alerts?active=true")
	if err != nil {
		return nil, fmt.Errorf("GET /api/v2/alerts: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("reading /api/v2/alerts: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/alerts: %s: %s", resp.Status, b)
	}
	var out []amAlert
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decoding /api/v2/alerts: %w", err)
	}
	return out, nil
}

// isLeakAlert tells whether l are the labels of a TCPCloseWaitLeak for the
// leak's port (and, when withCommand, of the leaky server's command), and
// whether it comes from Prometheus (the scrape's job label) or from the
// exporter (no job label: the agent pushes it itself).
func isLeakAlert(l map[string]string, port string, withCommand bool) (ok, fromRule bool) {
	if l["alertname"] != "TCPCloseWaitLeak" || l["port"] != port || (withCommand && l["command"] != leakyServerName) {
		return false, false
	}
	_, hasJob := l["job"]
	return true, hasJob
}

// waitBothAlerts polls Alertmanager until it lists both the exporter's and
// the rule's TCPCloseWaitLeak for the leak, preferring alerts that name the
// leaky server's command, and fails the test at deadline.
func waitBothAlerts(t *testing.T, c *http.Client, port string, withCommand bool, deadline, leakAt time.Time) (agent, rule amAlert) {
	t.Helper()
	var haveAgent, haveRule bool
	var lastErr error
	var last []amAlert
	better := func(have bool, cur, a amAlert) bool {
		return !have || cur.Labels["command"] != leakyServerName && a.Labels["command"] == leakyServerName
	}
	for {
		as, err := getAMAlerts(c)
		if err != nil {
			lastErr = err
		} else {
			last = as
			now := time.Now()
			for _, a := range as {
				ok, fromRule := isLeakAlert(a.Labels, port, withCommand)
				switch {
				case !ok:
				case fromRule && better(haveRule, rule, a):
					rule, haveRule = a, true
					rule.seenAt = now
					t.Logf("Alertmanager lists the rule's alert %v after the leak: %v", now.Sub(leakAt).Round(time.Millisecond), a.Labels)
				case !fromRule && better(haveAgent, agent, a):
					agent, haveAgent = a, true
					agent.seenAt = now
					t.Logf("Alertmanager lists the agent's alert %v after the leak: %v", now.Sub(leakAt).Round(time.Millisecond), a.Labels)
				}
			}
		}
		if haveAgent && haveRule {
			return agent, rule
		}
		if time.Now().After(deadline) {
			var names []string
			for _, a := range last {
				names = append(names, fmt.Sprint(a.Labels))
			}
			what := "for port " + port
			if withCommand {
				what += " naming command " + leakyServerName + " (the exporter's owner lookup never placed the sockets; see commandWait)"
			}
			t.Fatalf("%v after the leak Alertmanager has the agent's alert %s: %v, the rule's: %v (last error %v); it lists:\n%s",
				deadline.Sub(leakAt), what, haveAgent, haveRule, lastErr, strings.Join(names, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// logBusiestProcesses logs the processes holding the most descriptors on
// the machine: what makes the exporter's owner lookup slow.
func logBusiestProcesses(t *testing.T) {
	t.Helper()
	type pfd struct {
		pid  string
		comm string
		n    int
	}
	var ps []pfd
	total := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		f, err := os.Open(filepath.Join(d, "fd"))
		if err != nil {
			continue
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		comm, _ := os.ReadFile(filepath.Join(d, "comm"))
		ps = append(ps, pfd{filepath.Base(d), strings.TrimSpace(string(comm)), len(names)})
		total += len(names)
	}
	slices.SortFunc(ps, func(a, b pfd) int { return b.n - a.n })
	var top []string
	for i := 0; i < len(ps) && i < 3; i++ {
		top = append(top, fmt.Sprintf("%s[%s] %d", ps[i].comm, ps[i].pid, ps[i].n))
	}
	t.Logf("open descriptors on the machine: %d in %d processes; most: %s", total, len(ps), strings.Join(top, ", "))
}

func checkAgentAlert(t *testing.T, a amAlert, port string) {
	t.Helper()
	if a.Status.State != "active" {
		t.Errorf("agent alert state %q, want active", a.Status.State)
	}
	if a.Labels["severity"] != "warning" {
		t.Errorf("agent alert severity %q, want warning", a.Labels["severity"])
	}
	if !strings.HasSuffix(a.GeneratorURL, ":9874/alerts") {
		t.Errorf("agent alert generatorURL %q, want the exporter's /alerts", a.GeneratorURL)
	}
	if a.Annotations["old_sockets"] != strconv.Itoa(leaked) {
		t.Errorf("agent alert annotation old_sockets=%q, want %d (annotations %v)", a.Annotations["old_sockets"], leaked, a.Annotations)
	}
	if a.Annotations["port"] != port || !strings.Contains(a.Annotations["summary"], leakyServerName) {
		t.Errorf("agent alert annotations %v do not name port %s and %s", a.Annotations, port, leakyServerName)
	}
}

func checkRuleAlert(t *testing.T, a amAlert, port string) {
	t.Helper()
	want := map[string]string{"job": scrapeJob, "instance": scrapeInstance, "severity": "warning", "reason": "old_sockets", "port": port, "command": leakyServerName}
	for k, v := range want {
		if a.Labels[k] != v {
			t.Errorf("rule alert label %s=%q, want %q (labels %v)", k, a.Labels[k], v, a.Labels)
		}
	}
	if a.Status.State != "active" {
		t.Errorf("rule alert state %q, want active", a.Status.State)
	}
	if !strings.Contains(a.GeneratorURL, "/graph?") {
		t.Errorf("rule alert generatorURL %q, want Prometheus's /graph link", a.GeneratorURL)
	}
	if !strings.HasSuffix(a.Annotations["runbook_url"], "/TCPCloseWaitLeak.md") || !strings.Contains(a.Annotations["description"], leakyServerName) {
		t.Errorf("rule alert annotations %v", a.Annotations)
	}
}

// waitWebhook waits until Alertmanager has notified the receiver of both
// alerts as firing.
func waitWebhook(t *testing.T, w *webhook, port string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		as, bad := w.snapshot()
		var agent, rule bool
		for _, a := range as {
			if ok, fromRule := isLeakAlert(a.Labels, port, true); ok && a.Status == "firing" {
				rule = rule || fromRule
				agent = agent || !fromRule
			}
		}
		if len(bad) > 0 {
			t.Errorf("webhook payloads Alertmanager sent could not be decoded: %v", bad)
		}
		if agent && rule {
			t.Logf("webhook notified of both alerts firing (%d alert notifications so far)", len(as))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("webhook notified within 30 s: agent alert %v, rule alert %v", agent, rule)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkRuleHealth asserts that Prometheus evaluated every rule of the copy
// without error.
func checkRuleHealth(t *testing.T, prom promv1.API) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := prom.Rules(ctx, nil)
	if err != nil {
		t.Fatalf("GET /api/v1/rules: %v", err)
	}
	n := 0
	for _, g := range res.Groups {
		for _, r := range g.Rules {
			n++
			switch r := r.(type) {
			case promv1.AlertingRule:
				if r.Health != promv1.RuleHealthGood || r.LastError != "" {
					t.Errorf("alerting rule %s (group %s): health %q, error %q", r.Name, g.Name, r.Health, r.LastError)
				}
			case promv1.RecordingRule:
				if r.Health != promv1.RuleHealthGood || r.LastError != "" {
					t.Errorf("recording rule %s (group %s): health %q, error %q", r.Name, g.Name, r.Health, r.LastError)
				}
			default:
				t.Errorf("group %s: rule of unknown type %T", g.Name, r)
			}
		}
	}
	if n == 0 {
		t.Fatal("Prometheus loaded no rules")
	}
	t.Logf("Prometheus evaluates %d rules in %d groups, all healthy", n, len(res.Groups))
}

// scrapeExporter returns the exporter's /metrics body.
func scrapeExporter(t *testing.T, c *http.Client) []byte {
	t.Helper()
	resp, err := c.Get("http://" + exporterAddr + "/metrics")
	if err != nil {
		t.Fatalf("scraping the exporter: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping the exporter: status %d, %v", resp.StatusCode, err)
	}
	return b
}

// metricFamilies parses a /metrics body into metric name -> label names
// seen on its series.
func metricFamilies(t *testing.T, body []byte) map[string]map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]map[string]bool{}
	for name, mf := range mfs {
		ls := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = true
			}
		}
		out[name] = ls
		// A query names a histogram's or summary's series, not its family.
		var series []string
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			series = []string{"_bucket", "_sum", "_count"}
		case dto.MetricType_SUMMARY:
			series = []string{"_sum", "_count"}
		}
		for _, suffix := range series {
			out[name+suffix] = ls
		}
	}
	return out
}

// checkMetricNames asserts that every metric a dashboard query, a dashboard
// variable or a rule names is served by the exporter (or is a recording
// rule of the rules file, or a series Prometheus writes itself), unless it
// is in allowedAbsentMetrics.
func checkMetricNames(t *testing.T, prom promv1.API, boards []board, rules []ruleInfo, served map[string]map[string]bool) {
	t.Helper()
	vars := map[string]string{"job": ".+", "instance": ".+", "namespace": ".*", "pod": ".*",
		"datasource": "prometheus", "__rate_interval": "15s", "__interval": "1s", "__range": "1m"}
	used, err := usedMetrics(boards, rules, vars)
	if err != nil {
		t.Fatal(err)
	}
	rep := classifyMetrics(used, rules, served, allowedAbsentMetrics)
	for _, p := range rep.Problems {
		t.Error(p)
	}
	for _, name := range rep.Allowed {
		t.Logf("metric %s absent from /metrics, allowed: %s", name, allowedAbsentMetrics[name])
	}
	// Series Prometheus writes itself must exist there: an alert fires.
	for _, name := range rep.Builtin {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, _, _, err := prom.Query(ctx, "count("+name+")", time.Now())
		cancel()
		if err != nil || isEmpty(v) {
			t.Errorf("Prometheus has no %s series (err %v) although an alert fires; used by %s", name, err, strings.Join(used[name].Where, "; "))
		}
	}
	t.Logf("metric names used by %d dashboards and %d rules: %d served by the exporter, %d recording rules, %d written by Prometheus, %d allowed absent; /metrics has %d families",
		len(boards), len(rules), len(rep.Served), len(rep.Records), len(rep.Builtin), len(rep.Allowed), len(served))
}

// checkRecordingRules asserts that every recording rule of the scenario's
// job produces series, except those in emptyRecordingRules.
func checkRecordingRules(t *testing.T, prom promv1.API, rules []ruleInfo) {
	t.Helper()
	n, empty := 0, 0
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Record == "" || seen[r.Record] {
			continue
		}
		seen[r.Record] = true
		n++
		q := fmt.Sprintf(`count(%s{job=%q, instance=%q})`, r.Record, scrapeJob, scrapeInstance)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, _, _, err := prom.Query(ctx, q, time.Now())
		cancel()
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		why, allowed := emptyRecordingRules[r.Record]
		switch {
		case isEmpty(v) && allowed:
			empty++
			t.Logf("recording rule %s has no series, as expected: %s", r.Record, why)
		case isEmpty(v):
			t.Errorf("recording rule %s produces no series for the scenario's exporter", r.Record)
		case allowed:
			t.Logf("recording rule %s listed in emptyRecordingRules produces series now (%s): the list may be stale", r.Record, why)
		}
	}
	for name := range emptyRecordingRules {
		if !seen[name] {
			t.Errorf("emptyRecordingRules lists %s, which is not a recording rule any more: remove it", name)
		}
	}
	t.Logf("recording rules: %d, %d with series, %d empty as listed", n, n-empty, empty)
}

// isEmpty tells whether a query result holds no sample.
func isEmpty(v model.Value) bool {
	switch v := v.(type) {
	case model.Vector:
		return len(v) == 0
	case model.Matrix:
		for _, s := range v {
			if len(s.Values) > 0 || len(s.Histograms) > 0 {
				return false
			}
		}
		return true
	case *model.Scalar, *model.String:
		return v == nil
	}
	return true
}

// valueCheck asserts something about an instant result of one query.
type valueCheck struct {
	what  string
	check func(v model.Vector) bool
}

// leakSeries finds the sample of the leaky server's CLOSE_WAIT group.
func leakSeries(v model.Vector, port string) (float64, bool) {
	for _, s := range v {
		if string(s.Metric["port"]) == port && string(s.Metric["command"]) == leakyServerName {
			return float64(s.Value), true
		}
	}
	return 0, false
}

func firstValue(v model.Vector) float64 {
	if len(v) == 0 {
		return -1
	}
	return float64(v[0].Value)
}

// valueChecks are what some core panels must show in this scenario, keyed
// like emptyInScenario.
func valueChecks(port string) map[string]valueCheck {
	hasLeakAlert := func(v model.Vector) bool {
		for _, s := range v {
			if s.Metric["alertname"] == "TCPCloseWaitLeak" && string(s.Metric["port"]) == port && s.Metric["alertstate"] == "firing" {
				return true
			}
		}
		return false
	}
	return map[string]valueCheck{
		"overview.json|CLOSE_WAIT|A": {fmt.Sprintf("at least the %d leaked sockets", leaked),
			func(v model.Vector) bool { return firstValue(v) >= leaked }},
		"overview.json|Agent alerts firing|A": {"at least one", func(v model.Vector) bool { return firstValue(v) >= 1 }},
		"alerts.json|Agent alerts firing|A":   {"at least one", func(v model.Vector) bool { return firstValue(v) >= 1 }},
		"alerts.json|Rule alerts firing|A":    {"at least one", func(v model.Vector) bool { return firstValue(v) >= 1 }},
		"alerts.json|Active agent alerts|A":   {"the firing TCPCloseWaitLeak of the leak's port", hasLeakAlert},
		"alerts.json|Active rule alerts|A":    {"the firing TCPCloseWaitLeak of the leak's port", hasLeakAlert},
		"leaks-and-exhaustion.json|CLOSE_WAIT by port and command|A": {fmt.Sprintf("%d for port %s command %s", leaked, port, leakyServerName),
			func(v model.Vector) bool { x, ok := leakSeries(v, port); return ok && x == leaked }},
		"leaks-and-exhaustion.json|Oldest CLOSE_WAIT socket|A": {fmt.Sprintf("at least %v for port %s command %s", closeWaitMinAge, port, leakyServerName),
			func(v model.Vector) bool { x, ok := leakSeries(v, port); return ok && x >= closeWaitMinAge.Seconds() }},
		"pods.json|CLOSE_WAIT by command and port|A": {fmt.Sprintf("%d for port %s command %s", leaked, port, leakyServerName),
			func(v model.Vector) bool { x, ok := leakSeries(v, port); return ok && x == leaked }},
	}
}

// queryVariant is one way Grafana fills the variables.
type queryVariant struct {
	name string
	vars map[string]string
}

// resolveVariables runs a dashboard's label_values variables the way
// Grafana does (GET /api/v1/label/NAME/values with match[]), checks that
// job and instance offer the scenario's target, and returns the variables
// with the target selected (regexp-escaped as Grafana writes a single
// value); namespace and pod are All (.*): in --netns=host mode they have
// no values.
func resolveVariables(t *testing.T, prom promv1.API, b board, base map[string]string) map[string]string {
	t.Helper()
	vars := maps.Clone(base)
	want := map[string]string{"job": scrapeJob, "instance": scrapeInstance}
	for _, v := range b.Vars {
		if v.Type != "query" {
			continue
		}
		sel, label, err := parseLabelValues(v.Query)
		if err != nil {
			t.Errorf("%s: %v", b.File, err)
			continue
		}
		sel, err = expandVars(sel, vars)
		if err != nil {
			t.Errorf("%s variable %s: %v", b.File, v.Name, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		vals, _, _, err := prom.LabelValues(ctx, label, []string{sel}, time.Now().Add(-time.Minute), time.Now())
		cancel()
		if err != nil {
			t.Errorf("%s variable %s: label_values(%s, %s): %v", b.File, v.Name, sel, label, err)
			continue
		}
		if w, ok := want[v.Name]; ok {
			if !slices.Contains(vals, model.LabelValue(w)) {
				t.Errorf("%s variable %s offers %v, want %q among them", b.File, v.Name, vals, w)
			}
			vars[v.Name] = regexValue(w)
			continue
		}
		if len(vals) > 0 {
			t.Errorf("%s variable %s offers %v; in --netns=host mode it should offer none", b.File, v.Name, vals)
		}
		vars[v.Name] = v.AllValue
	}
	return vars
}

// runDashboards runs every query of every dashboard, instant and over the
// last minute, in two variants (the scenario's job and instance selected,
// and All), and checks errors, emptiness and the value checks.
func runDashboards(t *testing.T, prom promv1.API, boards []board, port string) {
	t.Helper()
	base := map[string]string{"datasource": "prometheus", "__rate_interval": "15s", "__interval": "1s", "__range": "1m",
		"job": ".+", "instance": ".+", "namespace": ".*", "pod": ".*"}
	checks := valueChecks(port)
	checked := map[string]bool{}
	seenKeys := map[string]bool{}
	panelRuns, panelData := map[string]int{}, map[string]int{}
	var nQueries, nData, nEmptyListed, nFailed int
	for _, b := range boards {
		variants := []queryVariant{
			{"selected", resolveVariables(t, prom, b, base)},
			{"all", base},
		}
		for _, vr := range variants {
			for _, p := range b.Panels {
				for _, tg := range p.Targets {
					key := b.File + "|" + p.Title + "|" + tg.RefID
					seenKeys[key] = true
					panelRuns[b.File+"|"+p.Title]++
					where := fmt.Sprintf("%s panel %q target %s (%s)", b.File, p.Title, tg.RefID, vr.name)
					expr, err := expandVars(tg.Expr, vr.vars)
					if err != nil {
						t.Errorf("%s: %v", where, err)
						nFailed++
						continue
					}
					now := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					inst, w1, _, err1 := prom.Query(ctx, expr, now)
					rng, w2, _, err2 := prom.QueryRange(ctx, expr, promv1.Range{Start: now.Add(-time.Minute), End: now, Step: time.Second})
					cancel()
					nQueries += 2
					if err1 != nil || err2 != nil || len(w1)+len(w2) > 0 {
						t.Errorf("%s: %s: instant error %v, range error %v, warnings %v %v", where, expr, err1, err2, w1, w2)
						nFailed++
						continue
					}
					why, allowedEmpty := emptyInScenario[key]
					empty := isEmpty(inst) || isEmpty(rng)
					switch {
					case empty && allowedEmpty:
						nEmptyListed++
					case empty:
						t.Errorf("%s returned no data (instant empty: %v, range empty: %v): %s", where, isEmpty(inst), isEmpty(rng), expr)
					default:
						nData++
						panelData[b.File+"|"+p.Title]++
					}
					if allowedEmpty && !isEmpty(inst) {
						t.Logf("%s is listed as empty in this scenario (%s) but returned data", where, why)
					}
					if vc, ok := checks[key]; ok && vr.name == "selected" {
						checked[key] = true
						vec, _ := inst.(model.Vector)
						if !vc.check(vec) {
							t.Errorf("%s: want %s, got %v", where, vc.what, inst)
						}
					}
				}
			}
		}
	}
	for key := range checks {
		if !checked[key] {
			t.Errorf("value check %q matches no dashboard query (panel renamed or removed?)", key)
		}
	}
	for _, cp := range corePanels {
		switch {
		case panelRuns[cp] == 0:
			t.Errorf("core panel %q is not in the dashboards (renamed or removed?)", cp)
		case panelData[cp] != panelRuns[cp]:
			t.Errorf("core panel %q: %d of %d queries returned data", cp, panelData[cp], panelRuns[cp])
		}
	}
	for key := range emptyInScenario {
		if slices.Contains(corePanels, key[:strings.LastIndex(key, "|")]) {
			t.Errorf("emptyInScenario lists %q of a core panel", key)
		}
		if !seenKeys[key] {
			t.Errorf("emptyInScenario lists %q, which matches no dashboard query: remove it", key)
		}
	}
	t.Logf("dashboards: %d boards, %d queries run (instant and range, job/instance selected and All): %d query pairs returned data, %d empty as listed, %d failed; %d core panels, %d value checks",
		len(boards), nQueries, nData, nEmptyListed, nFailed, len(corePanels), len(checked))
}
