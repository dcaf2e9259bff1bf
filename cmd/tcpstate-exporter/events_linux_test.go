//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// eventPorts are the ports eventTraffic used.
type eventPorts struct {
	refused, linger, churn uint16
}

// eventTraffic makes, inside ns, n connects refused by a closed port of
// 127.0.0.1, n connections to 127.0.0.2 that the server closes with
// SO_LINGER 0 (a reset), and n connections to 127.0.0.3 opened and closed.
func eventTraffic(t *testing.T, ns *fixture.Netns, n int) eventPorts {
	t.Helper()
	var p eventPorts
	d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
	err := ns.Do(func() error {
		port := func(ln net.Listener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		p.refused = port(ln)
		ln.Close()
		for range n {
			if _, err := d.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", p.refused)); !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("dial a closed port: %w, want ECONNREFUSED", err)
			}
		}
		for _, c := range []struct {
			addr  string
			port  *uint16
			reset bool
		}{{"127.0.0.2", &p.linger, true}, {"127.0.0.3", &p.churn, false}} {
			ln, err := net.Listen("tcp4", c.addr+":0")
			if err != nil {
				return err
			}
			*c.port = port(ln)
			for range n {
				cl, err := d.Dial("tcp4", ln.Addr().String())
				if err != nil {
					ln.Close()
					return err
				}
				s, err := ln.Accept()
				if err != nil {
					ln.Close()
					return err
				}
				if c.reset {
					s.(*net.TCPConn).SetLinger(0)
					s.Close()
					// The client reads the reset.
					cl.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := cl.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
						ln.Close()
						return fmt.Errorf("client read after SO_LINGER 0 close: %w, want ECONNRESET", err)
					}
					cl.Close()
					continue
				}
				cl.Close()
				s.Read(make([]byte, 1)) // EOF: the client's FIN arrived
				s.Close()
			}
			ln.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// series returns the value of the series of family name whose labels
// include want, and how many matched.
func series(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, int) {
	mf := mfs[name]
	if mf == nil {
		return 0, 0
	}
	var v float64
	n := 0
next:
	for _, m := range mf.GetMetric() {
		l := labelsOf(m)
		for k, w := range want {
			if l[k] != w {
				continue next
			}
		}
		n++
		switch {
		case m.GetCounter() != nil:
			v += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v, n
}

// TestEventsEndToEnd runs the exporter with --collector.events=on in a
// namespace of its own, makes known traffic there, and checks the event
// metrics, the TCPConnectFailures alert, and promtool's lint.
func TestEventsEndToEnd(t *testing.T) {
	const n = 30
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	client, logs := exporterInNetns(t, ctx, ns, bin, "--collector.events=on")
	if !strings.Contains(logs.String(), "eBPF connection events on") {
		t.Errorf("no \"eBPF connection events on\" line in the log:\n%s", logs.String())
	}
	p := eventTraffic(t, ns, n)
	time.Sleep(2500 * time.Millisecond) // two samples
	body, mfs := scrape(t, client)

	ps := func(p uint16) string { return strconv.Itoa(int(p)) }
	// The readiness probe may have dialled the exporter's port before it
	// listened, with the programs already loaded: refused connects (and
	// the resets that refused them) of their own, counted apart.
	probe, _ := series(mfs, "tcpstate_destination_connect_failures_total", map[string]string{"remote_address": "127.0.0.1", "remote_port": "9874", "reason": "refused"})
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"tcpstate_connect_failures_total", map[string]string{"reason": "refused"}},
		{"tcpstate_resets_sent_total", map[string]string{"reason": "no_socket"}},
	} {
		if got, k := series(mfs, c.name, c.labels); k != 1 || got != n+probe {
			t.Errorf("%s%v: %v (%d series), want %d and the readiness probe's %v", c.name, c.labels, got, k, n, probe)
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tcpstate_resets_sent_total", map[string]string{"reason": "tcp_state"}, n},
		{"tcpstate_destination_connect_failures_total", map[string]string{"remote_address": "127.0.0.1", "remote_port": ps(p.refused), "reason": "refused"}, n},
		{"tcpstate_peer_resets_received_total", map[string]string{"remote_address": "127.0.0.2"}, n},
		{"tcpstate_listener_connections_opened_total", map[string]string{"port": ps(p.churn)}, n},
		{"tcpstate_listener_connections_closed_total", map[string]string{"port": ps(p.churn)}, n},
		{"tcpstate_destination_connections_opened_total", map[string]string{"remote_address": "127.0.0.3", "remote_port": ps(p.churn)}, n},
		{"tcpstate_destination_connections_closed_total", map[string]string{"remote_address": "127.0.0.3", "remote_port": ps(p.churn)}, n},
		{"tcpstate_listener_connections_opened_total", map[string]string{"port": ps(p.linger)}, n},
		// Lifetime histograms (sample counts) per listener and destination.
		{"tcpstate_listener_connection_lifetime_seconds", map[string]string{"port": ps(p.churn)}, n},
		{"tcpstate_listener_connection_lifetime_seconds", map[string]string{"port": ps(p.linger)}, n},
		{"tcpstate_destination_connection_lifetime_seconds", map[string]string{"remote_address": "127.0.0.3", "remote_port": ps(p.churn)}, n},
		{"tcpstate_destination_connection_lifetime_seconds", map[string]string{"remote_address": "127.0.0.2", "remote_port": ps(p.linger)}, n},
		{"tcpstate_destination_connection_lifetime_seconds", map[string]string{"remote_address": "other", "remote_port": "other"}, 0},
	} {
		got, k := series(mfs, c.name, c.labels)
		if k != 1 || got != c.want {
			t.Errorf("%s%v: %v (%d series), want %v", c.name, c.labels, got, k, c.want)
		}
	}
	// Every connection the traffic closed normally or by reset carries a
	// lifetime: at least 2n passive ones (the exporter's own scrape
	// connection may add one).
	if got, _ := series(mfs, "tcpstate_connection_lifetime_seconds", map[string]string{"direction": "passive"}); got < 2*n {
		t.Errorf("passive lifetimes observed: %v, want at least %d", got, 2*n)
	}
	if got, _ := series(mfs, "tcpstate_events_dropped_total", nil); got != 0 {
		t.Errorf("events dropped: %v", got)
	}
	checkPromtool(t, body)

	// TCPConnectFailures names the destination (pending: it must hold 1m).
	_, alerts, err := get(client, "http://127.0.0.1:9874/alerts", "", "")
	if err != nil {
		t.Fatal(err)
	}
	dest := fmt.Sprintf("127.0.0.1:%d", p.refused)
	if !strings.Contains(string(alerts), `"alertname":"TCPConnectFailures"`) || !strings.Contains(string(alerts), `"destination":"`+dest+`"`) {
		t.Errorf("/alerts has no TCPConnectFailures for %s:\n%s", dest, alerts)
	}
}

// TestEventsOff runs the same traffic with --collector.events=off: no event
// series, and the sock_diag metrics as always.
func TestEventsOff(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	client, logs := exporterInNetns(t, ctx, ns, bin, "--collector.events=off")
	eventTraffic(t, ns, 10)
	time.Sleep(1500 * time.Millisecond)
	body, mfs := scrape(t, client)
	for name := range mfs {
		if strings.HasPrefix(name, "tcpstate_resets_") || strings.HasPrefix(name, "tcpstate_connect") || strings.HasPrefix(name, "tcpstate_events_") {
			t.Errorf("events off, yet %s is exported", name)
		}
	}
	if got := socketCounts(t, mfs)["ipv4/listen"]; got != 1 {
		t.Errorf("ipv4 listeners: %d, want 1 (the exporter's own)", got)
	}
	if strings.Contains(logs.String(), "eBPF") {
		t.Errorf("events off, yet the log mentions eBPF:\n%s", logs.String())
	}
	checkPromtool(t, body)
}

// dropBPFCaps is a setpriv command line that runs its last argument as
// root without CAP_BPF and CAP_PERFMON (dropped from the bounding and
// inheritable sets, so the exec does not regain them); CAP_SYS_ADMIN stays,
// as in the chart's pod mode, and must not turn events on by itself.
func dropBPFCaps(t *testing.T) []string {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop capabilities: %v", err)
	}
	caps := "-bpf,-perfmon"
	return []string{setpriv, "--inh-caps=" + caps, "--bounding-set=" + caps}
}

// TestEventsWithoutCapabilities runs the exporter without CAP_BPF and
// CAP_PERFMON: auto says why events are off and keeps working on
// sock_diag; on fails at start with one error line.
func TestEventsWithoutCapabilities(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tsev-")

	t.Run("auto", func(t *testing.T) {
		p := startExporter(t, ctx, ns, bin, dropBPFCaps(t), "--web.listen-address="+exporterAddr)
		tr := nsTransport(ns, nil)
		tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 1, 1
		client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		waitReady(t, p, client, "http://"+exporterAddr, "", "")
		st, err := procStatus(p.Cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		eff, err := strconv.ParseUint(st["CapEff"], 16, 64)
		if err != nil || eff&(1<<39|1<<38) != 0 || eff&(1<<21) == 0 {
			t.Fatalf("exporter CapEff %s (%v): want CAP_BPF and CAP_PERFMON dropped, CAP_SYS_ADMIN kept", st["CapEff"], err)
		}
		logs := p.Logs.String()
		if !strings.Contains(logs, "eBPF connection events off") || !strings.Contains(logs, "CAP_BPF") {
			t.Errorf("auto without the capabilities: no line saying events are off and why:\n%s", logs)
		}
		eventTraffic(t, ns, 5)
		time.Sleep(1500 * time.Millisecond)
		_, mfs := scrape(t, client)
		if _, k := series(mfs, "tcpstate_resets_sent_total", nil); k != 0 {
			t.Error("events off for want of capabilities, yet tcpstate_resets_sent_total is exported")
		}
		if got := socketCounts(t, mfs)["ipv4/listen"]; got != 1 {
			t.Errorf("ipv4 listeners: %d, want 1 (the exporter's own): sock_diag must keep working", got)
		}
	})
	t.Run("on", func(t *testing.T) {
		p := startExporter(t, ctx, ns, bin, dropBPFCaps(t), "--web.listen-address=127.0.0.1:9875", "--collector.events=on")
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatal("--collector.events=on without the capabilities: the exporter did not exit")
		}
		var ee *exec.ExitError
		if !errors.As(p.Err(), &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit: %v, want exit code 1", p.Err())
		}
		var errLines []string
		for _, l := range strings.Split(strings.TrimSpace(p.Logs.String()), "\n") {
			if strings.Contains(l, "level=ERROR") {
				errLines = append(errLines, l)
			}
		}
		if len(errLines) != 1 || !strings.Contains(errLines[0], "--collector.events=on") || !strings.Contains(errLines[0], "CAP_BPF") {
			t.Errorf("want one error line naming --collector.events=on and CAP_BPF, got:\n%s", p.Logs.String())
		}
	})
}
