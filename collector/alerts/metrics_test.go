package alerts

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

func TestAlertMetricOnPedanticRegistry(t *testing.T) {
	e := NewEngine(EngineOptions{MaxAlerts: 2})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Collector())

	ns := Target{Key: "42", Labels: map[string]string{"netns": "42", "namespace": "shop", "pod": ""}}
	e.Update(t0, ns, []detect.Finding{
		{Alert: "TCPSynFlood", Severity: detect.Critical, Labels: map[string]string{"family": "ipv4", "port": "443"}, Value: 1},
		{Alert: "TCPCloseWaitLeak", Severity: detect.Warning, Labels: map[string]string{"port": "8080", "command": "java"}, For: time.Minute},
		{Alert: "TCPPortExhaustion", Severity: detect.Warning, Labels: map[string]string{"remote_port": "5432"}},
	})
	want := `
# HELP tcpstate_alert 1 for each active alert (alertstate pending or firing), with the alert's labels, like Prometheus's ALERTS series.
# TYPE tcpstate_alert gauge
tcpstate_alert{alertname="TCPCloseWaitLeak",alertstate="pending",command="java",namespace="shop",netns="42",port="8080",severity="warning"} 1
tcpstate_alert{alertname="TCPSynFlood",alertstate="firing",family="ipv4",namespace="shop",netns="42",port="443",severity="critical"} 1
# HELP tcpstate_alerts_dropped Findings of the latest evaluations not tracked as alerts because --alerts.max pending and firing alerts were reached.
# TYPE tcpstate_alerts_dropped gauge
tcpstate_alerts_dropped 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tcpstate_alert"); err != nil || n != 2 {
		t.Errorf("tcpstate_alert series: %d (%v), want 2 (--alerts.max)", n, err)
	}

	// Resolved alerts leave no series.
	e.Update(t0.Add(time.Second), ns, nil)
	want = `
# HELP tcpstate_alerts_dropped Findings of the latest evaluations not tracked as alerts because --alerts.max pending and firing alerts were reached.
# TYPE tcpstate_alerts_dropped gauge
tcpstate_alerts_dropped 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_alert", "tcpstate_alerts_dropped"); err != nil {
		t.Fatal(err)
	}
}

// The series are built once per engine change and reused between changes;
// a change between two scrapes (pending to firing) shows at the next one.
func TestAlertSeriesFollowEngineChanges(t *testing.T) {
	e := NewEngine(EngineOptions{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Collector())
	f := []detect.Finding{{Alert: "TCPCloseWaitLeak", Severity: detect.Warning, Labels: map[string]string{"port": "8080"}, For: time.Minute}}
	series := func(state string) string {
		return `
# HELP tcpstate_alert 1 for each active alert (alertstate pending or firing), with the alert's labels, like Prometheus's ALERTS series.
# TYPE tcpstate_alert gauge
tcpstate_alert{alertname="TCPCloseWaitLeak",alertstate="` + state + `",port="8080",severity="warning"} 1
`
	}
	e.Update(t0, Target{}, f)
	for range 2 {
		if err := testutil.GatherAndCompare(reg, strings.NewReader(series("pending")), "tcpstate_alert"); err != nil {
			t.Fatal(err)
		}
	}
	e.Update(t0.Add(time.Minute), Target{}, f)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(series("firing")), "tcpstate_alert"); err != nil {
		t.Fatal(err)
	}
}
