//go:build linux

package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the exporter's real output")

// exporterInNetns runs the exporter binary inside ns, listening on
// 127.0.0.1:port there, and returns an HTTP client whose connections are
// made inside ns. The client keeps one connection alive, so its sockets in
// ns are exactly one ESTABLISHED pair.
func exporterInNetns(t *testing.T, ctx context.Context, ns *fixture.Netns, bin string, args ...string) (*http.Client, *fixture.LogBuffer) {
	t.Helper()
	cmd := ns.Command(ctx, bin, append([]string{"--web.listen-address=127.0.0.1:9874"}, args...)...)
	logs := fixture.StartProc(t, "exporter", cmd, fixture.ProcOptions{Grace: 5 * time.Second}).Logs
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: ns.DialContext, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://127.0.0.1:9874/-/ready")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return client, logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter not ready after 15s (last error %v)\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func scrape(t *testing.T, c *http.Client) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := c.Get("http://127.0.0.1:9874/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return body, mfs
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// socketCounts reads tcpstate_sockets into "family/state" -> value.
func socketCounts(t *testing.T, mfs map[string]*dto.MetricFamily) map[string]int {
	t.Helper()
	mf := mfs["tcpstate_sockets"]
	if mf == nil {
		t.Fatal("no tcpstate_sockets in /metrics")
	}
	out := map[string]int{}
	for _, m := range mf.GetMetric() {
		l := labelsOf(m)
		out[l["family"]+"/"+l["state"]] = int(m.GetGauge().GetValue())
	}
	return out
}

// TestE2ESocketCountsAreExact is the truth test: the fixture puts known
// numbers of sockets in every stable state, over IPv4 and IPv6, into a
// namespace of its own; the exporter running there must report exactly those
// numbers, and agree with ss run in the same namespace.
func TestE2ESocketCountsAreExact(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv := fixture.NewNetnsPrefix(t, "tse2e-")
	cli := fixture.NewNetnsPrefix(t, "tse2c-")

	var want fixture.Counts
	build := func(s *fixture.Set, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		want = want.Add(s.ExpectedIn(srv))
	}
	wantFam := map[fixture.Family]fixture.Counts{}
	for i, fam := range []fixture.Family{fixture.IPv4, fixture.IPv6} {
		before := want
		build(srv.Listen(ctx, fam, 3+i))
		build(srv.Established(ctx, fam, 5+i))
		build(srv.CloseWait(ctx, fam, 4+i))
		build(srv.TimeWait(ctx, fam, 6+i))
		build(srv.SynSent(ctx, fam, 2+i))
		build(srv.SynRecv(ctx, cli, fam, 7+i))
		var c fixture.Counts
		for st := range want {
			c[st] = want[st] - before[st]
		}
		wantFam[fam] = c
	}

	// Events off: the golden file lists the sock_diag metrics; which event
	// series exist depends on the traffic during the run
	// (TestEventsEndToEnd checks those against the real kernel).
	// A short half-open idle time and sweep interval: the fixture's idle
	// connections (no keepalive) show as half-open suspects in the golden;
	// a count no group reaches keeps TCPHalfOpenSuspect, and with it
	// tcpstate_alert, out of it.
	client, _ := exporterInNetns(t, ctx, srv, bin, "--collector.events=off", "--halfopen.interval=1s", "--halfopen.min-idle=1s", "--halfopen.min-count=1000000")
	// The exporter's listener and the test's one kept-alive scrape
	// connection are IPv4 sockets in the namespace too.
	own := wantFam[fixture.IPv4]
	own[fixture.Listen]++
	own[fixture.Established] += 2
	wantFam[fixture.IPv4] = own

	scrape(t, client)                   // opens the kept-alive connection
	time.Sleep(2500 * time.Millisecond) // at least two samples later
	body, mfs := scrape(t, client)
	got := socketCounts(t, mfs)
	if len(got) != 22 {
		t.Errorf("tcpstate_sockets has %d series, want 22", len(got))
	}
	for _, fam := range []fixture.Family{fixture.IPv4, fixture.IPv6} {
		ss, err := srv.SSCounts(ctx, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range fixture.States() {
			key := fam.String() + "/" + st.String()
			if got[key] != wantFam[fam][st] {
				t.Errorf("%s: exporter says %d, fixture made %d", key, got[key], wantFam[fam][st])
			}
			if got[key] != ss[st] {
				t.Errorf("%s: exporter says %d, ss says %d", key, got[key], ss[st])
			}
		}
	}
	t.Logf("IPv4 %v; IPv6 %v", wantFam[fixture.IPv4], wantFam[fixture.IPv6])

	// Every fixture listener shows with its accept queue.
	lq := mfs["tcpstate_listener_accept_queue_limit"]
	if lq == nil {
		t.Fatal("no listener metrics")
	}
	if n := len(lq.GetMetric()); n != want[fixture.Listen]+1 {
		t.Errorf("%d listener series, want %d (the fixture's and the exporter's own)", n, want[fixture.Listen]+1)
	}
	checkPromtool(t, body)
	checkGolden(t, body)
}

// checkPromtool runs promtool check metrics over a real scrape.
func checkPromtool(t *testing.T, body []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Errorf("promtool not installed (scripts/test-all.sh installs it): cannot lint /metrics")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// checkGolden compares the metric names, types, help and label names of a
// real scrape with testdata/metrics.golden (values vary run to run; the
// exact values are checked above). Run with -update to rewrite it.
func checkGolden(t *testing.T, body []byte) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "tcpstate_") {
			continue
		}
		labelSets := map[string]bool{}
		for _, m := range mf.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			sort.Strings(names)
			labelSets[strings.Join(names, ",")] = true
		}
		sets := make([]string, 0, len(labelSets))
		for s := range labelSets {
			sets = append(sets, "{"+s+"}")
		}
		slices.Sort(sets)
		lines = append(lines, fmt.Sprintf("%s %s %s # %s", name, strings.ToLower(mf.GetType().String()), strings.Join(sets, " "), mf.GetHelp()))
	}
	slices.Sort(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run E2E ./cmd/tcpstate-exporter -args -update)", err)
	}
	if string(want) != got {
		t.Errorf("metrics differ from %s (rerun with -args -update if intended):\n--- want\n%s\n--- got\n%s", golden, want, got)
	}
}
