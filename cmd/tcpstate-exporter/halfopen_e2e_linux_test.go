//go:build linux

package main

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// TestE2EHalfOpenOnAlerts runs the exporter binary in a namespace holding
// 12 idle loopback connections with keepalive off (this test process holds
// both ends) and a short --halfopen.min-idle: /alerts must carry
// TCPHalfOpenSuspect for the listener's port with the evidence as
// annotations, and /metrics the sweep's series.
func TestE2EHalfOpenOnAlerts(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tse2h-")
	set, err := ns.Established(ctx, fixture.IPv4, 12)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	port := strconv.Itoa(int(set.Listeners()[0].Port()))
	client, _ := exporterInNetns(t, ctx, ns, bin, "--halfopen.interval=1s", "--halfopen.min-idle=1s", "--halfopen.min-count=10")

	type alert struct {
		Labels      map[string]string
		Annotations map[string]string
	}
	var found *alert
	deadline := time.Now().Add(20 * time.Second)
	for found == nil {
		resp, err := client.Get("http://127.0.0.1:9874/alerts")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r struct{ Data struct{ Alerts []alert } }
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("/alerts: %v: %s", err, body)
		}
		for i, a := range r.Data.Alerts {
			if a.Labels["alertname"] == "TCPHalfOpenSuspect" && a.Labels["port"] == port {
				found = &r.Data.Alerts[i]
			}
		}
		if found == nil && time.Now().After(deadline) {
			t.Fatalf("no TCPHalfOpenSuspect for port %s on /alerts within 20 s: %s", port, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	an := found.Annotations
	t.Logf("alert %v %v", found.Labels, an)
	if an["connections"] != "12" || an["listeners"] != set.Listeners()[0].String() || an["remotes"] != "127.0.0.1" ||
		an["tcp_keepalive_time"] == "" || !strings.Contains(an["fix"], "SO_KEEPALIVE") || an["summary"] == "" {
		t.Errorf("annotations %v", an)
	}
	_, mfs := scrape(t, client)
	mf := mfs["tcpstate_halfopen_suspects"]
	if mf == nil {
		t.Fatal("no tcpstate_halfopen_suspects on /metrics")
	}
	var n float64
	for _, m := range mf.GetMetric() {
		if labelsOf(m)["port"] == port {
			n = m.GetGauge().GetValue()
		}
	}
	if n != 12 {
		t.Errorf("tcpstate_halfopen_suspects{port=%q} = %v, want 12", port, n)
	}
	if mfs["tcpstate_halfopen_sweep_budget_share"] == nil {
		t.Error("no tcpstate_halfopen_sweep_budget_share")
	}
}
