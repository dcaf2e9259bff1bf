package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

func TestAlertFlagErrorsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--alerts.max=0"}, "--alerts.max"},
		{[]string{"--alertmanager.url=ftp://am:9093"}, "--alertmanager.url"},
		{[]string{"--alertmanager.url=http://"}, "--alertmanager.url"},
		{[]string{"--alertmanager.resend-interval=0s"}, "--alertmanager.resend-interval"},
		{[]string{"--alertmanager.timeout=0s"}, "--alertmanager.timeout"},
		{[]string{"--alerts.external-label=cluster"}, "--alerts.external-label"},
		{[]string{"--alerts.external-label=1x=y"}, "--alerts.external-label"},
		{[]string{"--alerts.external-label=a=1", "--alerts.external-label=a=2"}, "--alerts.external-label"},
		{[]string{"snapshot", "--snapshot.wait=-1s"}, "--snapshot.wait"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d, stderr %q: want 2 and one line naming %s", tc.args, code, msg, tc.want)
		}
	}
}

func TestExternalLabels(t *testing.T) {
	host := func() (string, error) { return "node-7", nil }
	for _, tc := range []struct {
		flags []string
		want  map[string]string
	}{
		{nil, map[string]string{"instance": "node-7"}},
		{[]string{"cluster=prod", "region=eu-1"}, map[string]string{"instance": "node-7", "cluster": "prod", "region": "eu-1"}},
		{[]string{"instance=10.0.0.7:9874"}, map[string]string{"instance": "10.0.0.7:9874"}},
		{[]string{"instance=", "node=n7"}, map[string]string{"node": "n7"}},
		{[]string{"note=a=b"}, map[string]string{"instance": "node-7", "note": "a=b"}},
	} {
		c := alertsConfig{externalLabels: tc.flags}
		got, err := c.labels(host)
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("%v: %v, %v; want %v", tc.flags, got, err, tc.want)
		}
	}
	c := alertsConfig{}
	if _, err := c.labels(func() (string, error) { return "", errors.New("no uts") }); err == nil || !strings.Contains(err.Error(), "instance") {
		t.Errorf("host name failure: %v, want an error naming the instance label", err)
	}
}

// testAgent builds the agent as the serve command does, with the
// detectors' findings.
func testAgent(t *testing.T, args ...string) *agent {
	t.Helper()
	return testAgentWith(t, samplerFindings, args...)
}

// testAgentWith builds the agent with the test's own findings.
func testAgentWith(t *testing.T, findings findingsFunc, args ...string) *agent {
	t.Helper()
	cfg, cmd, err := parseFlags(args, io.Discard, io.Discard)
	if err != nil || cmd != "serve" {
		t.Fatalf("parseFlags(%v): %q, %v", args, cmd, err)
	}
	a, err := newAgent(cfg, slog.New(slog.DiscardHandler), findings)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func httpGet(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, path, nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rr.Code, rr.Body.String())
	}
	return rr.Body.String()
}

func TestAlertsEndpointAndMetric(t *testing.T) {
	var mu sync.Mutex
	var current []detect.Finding
	a := testAgentWith(t, func(tg collector.Target) []detect.Finding {
		if tg.Sampler == nil {
			t.Error("findings asked for a target without a sampler")
		}
		mu.Lock()
		defer mu.Unlock()
		return current
	})
	h := a.handler()
	if body := httpGet(t, h, "/alerts"); body != `{"status":"success","data":{"alerts":[]}}` {
		t.Errorf("/alerts with no findings: %s", body)
	}
	if body := httpGet(t, h, "/"); !strings.Contains(body, `href="/alerts"`) {
		t.Errorf("landing page does not link /alerts:\n%s", body)
	}

	mu.Lock()
	current = []detect.Finding{{Alert: "TCPCloseWaitLeak", Severity: detect.Warning,
		Labels: map[string]string{"port": "8080", "command": "java"}, Summary: "leak", Value: 42, For: time.Hour}}
	mu.Unlock()
	a.alerting.engine.Evaluate(time.Now(), a.alerting.source())

	var resp struct {
		Status string
		Data   struct {
			Alerts []struct {
				Labels      map[string]string
				Annotations map[string]string
				State       string
				Value       string
			}
		}
	}
	body := httpGet(t, h, "/alerts")
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(resp.Data.Alerts) != 1 {
		t.Fatalf("/alerts: %s", body)
	}
	got := resp.Data.Alerts[0]
	wantLabels := map[string]string{"alertname": "TCPCloseWaitLeak", "severity": "warning", "port": "8080", "command": "java"}
	if resp.Status != "success" || got.State != "pending" || got.Value != "4.2e+01" || !maps.Equal(got.Labels, wantLabels) || got.Annotations["summary"] != "leak" {
		t.Errorf("/alerts: %s", body)
	}
	if body := httpGet(t, h, "/alerts?state=firing"); body != `{"status":"success","data":{"alerts":[]}}` {
		t.Errorf("/alerts?state=firing: %s", body)
	}
	metrics := httpGet(t, h, "/metrics")
	want := `tcpstate_alert{alertname="TCPCloseWaitLeak",alertstate="pending",command="java",port="8080",severity="warning"} 1`
	if !strings.Contains(metrics, want+"\n") || !strings.Contains(metrics, "tcpstate_alerts_dropped 0\n") {
		t.Errorf("/metrics lacks %s or tcpstate_alerts_dropped", want)
	}
}

// TestAlertingPushesToAlertmanager runs the agent's evaluation loop with
// --alertmanager.url pointing at a recording server.
func TestAlertingPushesToAlertmanager(t *testing.T) {
	type posted struct {
		Labels       map[string]string `json:"labels"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
	}
	got := make(chan []posted, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ps []posted
		if r.URL.Path != "/api/v2/alerts" || json.NewDecoder(r.Body).Decode(&ps) != nil {
			t.Errorf("bad post to %s", r.URL.Path)
		}
		got <- ps
	}))
	defer srv.Close()
	a := testAgentWith(t, func(collector.Target) []detect.Finding {
		return []detect.Finding{{Alert: "TCPSynRecvSurge", Severity: detect.Critical, Labels: map[string]string{"port": "443"}, Value: 1}}
	}, "--alertmanager.url="+srv.URL, "--alerts.external-label=instance=tsal-node", "--alerts.external-label=cluster=test",
		"--sample.interval=20ms", "--web.listen-address=:19874")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.alerting.run(ctx); close(done) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("alerting did not stop within 5s")
		}
	}()
	select {
	case ps := <-got:
		if len(ps) != 1 {
			t.Fatalf("posted %d alerts", len(ps))
		}
		p := ps[0]
		want := map[string]string{"alertname": "TCPSynRecvSurge", "severity": "critical", "port": "443", "instance": "tsal-node", "cluster": "test"}
		if !maps.Equal(p.Labels, want) {
			t.Errorf("labels %v, want %v", p.Labels, want)
		}
		// endsAt is 4 resend intervals (1m) ahead.
		if d := time.Until(p.EndsAt); d < 3*time.Minute || d > 4*time.Minute {
			t.Errorf("endsAt %v ahead, want about 4m", d)
		}
		if !strings.HasSuffix(p.GeneratorURL, ":19874/alerts") {
			t.Errorf("generatorURL %q", p.GeneratorURL)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing posted within 10s")
	}
}
