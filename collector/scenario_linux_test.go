//go:build linux

package collector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture/rawsock"
)

// Scenario tests: real traffic in namespaces the tests create, a Sampler
// running at the default 1 s interval inside the namespace, and the
// detectors' findings recorded after every sample.

const scenarioPrefix = "tsdt-"

// evaluation is the findings of one sample.
type evaluation struct {
	at       time.Time
	findings []detect.Finding
}

// watcher runs a Sampler in a namespace and records every evaluation.
type watcher struct {
	t  *testing.T
	ns *fixture.Netns

	mu    sync.Mutex
	evals []evaluation
}

// watch starts a Sampler with default options (1 s interval) and cfg in ns,
// stopped at the end of the test.
func watch(t *testing.T, ns *fixture.Netns, cfg detect.Config) *watcher {
	t.Helper()
	w, _ := watchWith(t, ns, collector.SamplerOptions{Detect: cfg})
	return w
}

// since returns the evaluations recorded at or after t.
func (w *watcher) since(t time.Time) []evaluation {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []evaluation
	for _, e := range w.evals {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// waitEvals waits until n evaluations after t exist.
func (w *watcher) waitEvals(t time.Time, n int, limit time.Duration) {
	w.t.Helper()
	end := time.Now().Add(limit)
	for len(w.since(t)) < n {
		if time.Now().After(end) {
			w.t.Fatalf("fewer than %d samples within %v", n, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// match selects findings.
type match func(*detect.Finding) bool

func alertWith(alert string, labels map[string]string) match {
	return func(f *detect.Finding) bool {
		if f.Alert != alert {
			return false
		}
		for k, v := range labels {
			if f.Labels[k] != v {
				return false
			}
		}
		return true
	}
}

func (e evaluation) find(m match) *detect.Finding {
	for i := range e.findings {
		if m(&e.findings[i]) {
			return &e.findings[i]
		}
	}
	return nil
}

// waitFor returns the first evaluation after t with a finding m selects,
// waiting at most limit.
func (w *watcher) waitFor(t time.Time, m match, limit time.Duration) (evaluation, *detect.Finding, bool) {
	end := time.Now().Add(limit)
	for {
		for _, e := range w.since(t) {
			if f := e.find(m); f != nil {
				return e, f, true
			}
		}
		if time.Now().After(end) {
			return evaluation{}, nil, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitClear returns the first evaluation after t without a finding m
// selects.
func (w *watcher) waitClear(t time.Time, m match, limit time.Duration) (evaluation, bool) {
	end := time.Now().Add(limit)
	for {
		for _, e := range w.since(t) {
			if e.find(m) == nil {
				return e, true
			}
		}
		if time.Now().After(end) {
			return evaluation{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// none fails the test if any evaluation after t has a finding m selects.
func (w *watcher) none(t time.Time, m match, what string) {
	w.t.Helper()
	for _, e := range w.since(t) {
		if f := e.find(m); f != nil {
			w.t.Errorf("%s: unexpected finding at %v: %s %v: %s %v", what, e.at.Format("15:04:05.000"), f.Alert, f.Labels, f.Summary, f.Evidence)
			return
		}
	}
}

func newNetns(t *testing.T) *fixture.Netns { return fixture.NewNetnsPrefix(t, scenarioPrefix) }

// listenIn opens a raw listening socket inside ns that nobody accepts on.
func listenIn(t *testing.T, ns *fixture.Netns, addr netip.AddrPort, backlog int) netip.AddrPort {
	t.Helper()
	var fd int
	var bound netip.AddrPort
	err := ns.Do(func() error {
		var err error
		fd, bound, err = rawsock.Listen(addr, backlog)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return bound
}

// serveIn runs a Go listener inside ns whose connections are read to the
// end and then closed; it returns the address and a count of accepted
// connections.
func serveIn(t *testing.T, ns *fixture.Netns, addr string) (netip.AddrPort, func() int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	accepted := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return netip.MustParseAddrPort(ln.Addr().String()), func() int { mu.Lock(); defer mu.Unlock(); return accepted }
}

var floodAddr = netip.MustParseAddr("198.19.254.1")

func TestScenarioSynFlood(t *testing.T) {
	if _, err := exec.LookPath("hping3"); err != nil {
		t.Skip("hping3 is not installed")
	}
	for _, tc := range []struct {
		name       string
		syncookies string
	}{{"syncookies-on", "1"}, {"syncookies-off", "0"}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
			defer cancel()
			// The namespace's own address sits on a sink interface that is
			// also the default route: SYN-ACKs to the random sources vanish.
			if _, err := ns.AddSink(ctx, "tsdtk0"); err != nil {
				t.Fatal(err)
			}
			if err := ns.AddAddr(ctx, "tsdtk0", netip.PrefixFrom(floodAddr, 24)); err != nil {
				t.Fatal(err)
			}
			if err := ns.IP(ctx, "route", "add", "default", "dev", "tsdtk0"); err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{
				"net.ipv4.tcp_syncookies": tc.syncookies,
				// Request sockets give up after one SYN-ACK retry (~3 s), so
				// SYN_RECV drains soon after the flood.
				"net.ipv4.tcp_synack_retries": "1",
			} {
				if err := ns.Sysctl(k, v); err != nil {
					t.Fatal(err)
				}
			}
			l := listenIn(t, ns, netip.AddrPortFrom(floodAddr, 8080), 128)
			w := watch(t, ns, detect.DefaultConfig())
			begin := time.Now()
			w.waitEvals(begin, 3, 10*time.Second)
			surge := alertWith(detect.AlertSynRecvSurge, map[string]string{"address": floodAddr.String(), "port": "8080", "family": "ipv4"})
			anySurge := alertWith(detect.AlertSynRecvSurge, nil)
			w.none(begin, anySurge, "before the flood")

			// About 1000 SYNs/s from random sources for 5 s.
			cmd := ns.Command(ctx, "hping3", "-q", "-S", "-p", strconv.Itoa(int(l.Port())), "--rand-source", "-i", "u1000", "-c", "5000", floodAddr.String())
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			e, f, ok := w.waitFor(start, surge, 6*time.Second)
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("no TCPSynRecvSurge for %v within 6 s of the flood's start", l)
			}
			took := e.at.Sub(start)
			t.Logf("fired after %v: %s; evidence %v", took.Round(time.Millisecond), f.Summary, f.Evidence)
			if took > 3*time.Second {
				t.Errorf("TCPSynRecvSurge fired %v after the flood started, want within 3 s", took)
			}
			if n, _ := strconv.Atoi(strings.TrimSuffix(f.Evidence["distinct_sources"], "+")); n < 100 || !strings.HasPrefix(f.Evidence["sources"], "many random sources") {
				t.Errorf("random-source flood: distinct_sources %q, sources %q", f.Evidence["distinct_sources"], f.Evidence["sources"])
			}
			if f.Evidence["limit"] != "128" || f.Evidence["listener"] != l.String() || f.Evidence["top_source_prefixes"] == "" {
				t.Errorf("evidence %v", f.Evidence)
			}
			if tc.syncookies == "1" {
				if f.Severity != detect.Warning || !strings.Contains(f.Evidence["reasons"], "syncookies") {
					t.Errorf("with syncookies: severity %s, reasons %q", f.Severity, f.Evidence["reasons"])
				}
			} else if f.Severity != detect.Critical || !strings.Contains(f.Evidence["reasons"], "syn_drops") {
				t.Errorf("without syncookies: severity %s, reasons %q", f.Severity, f.Evidence["reasons"])
			}

			if err := cmd.Wait(); err != nil {
				t.Fatalf("hping3: %v: %s", err, out.String())
			}
			stop := time.Now()
			t.Logf("flood lasted %v", stop.Sub(start).Round(time.Millisecond))
			e, ok = w.waitClear(stop, anySurge, 15*time.Second)
			if !ok {
				t.Fatalf("TCPSynRecvSurge still present 15 s after the flood")
			}
			t.Logf("cleared %v after the flood", e.at.Sub(stop).Round(time.Millisecond))
			// And it stays clear.
			w.waitEvals(e.at, 3, 10*time.Second)
			w.none(e.at, anySurge, "after the flood")
		})
	}
}

func TestScenarioHandshakeBurst(t *testing.T) {
	ns := newNetns(t)
	addr, accepted := serveIn(t, ns, "127.0.0.1:0")
	w := watch(t, ns, detect.DefaultConfig())
	begin := time.Now()
	w.waitEvals(begin, 2, 10*time.Second)
	// 3000 complete handshakes from one client within about a second.
	const rounds, batch = 6, 500
	err := ns.Do(func() error {
		for range rounds {
			var fds []int
			for range batch {
				fd, _, err := rawsock.Dial(addr, true)
				if err != nil {
					rawsock.CloseAll(fds)
					return err
				}
				fds = append(fds, fd)
			}
			err := rawsock.WaitConnected(fds, time.Now().Add(10*time.Second))
			rawsock.CloseAll(fds)
			if err != nil {
				return err
			}
			time.Sleep(150 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	w.waitEvals(end, 3, 10*time.Second)
	if n := accepted(); n < rounds*batch*9/10 {
		t.Fatalf("server accepted %d of %d connections", n, rounds*batch)
	}
	t.Logf("%d handshakes in %v, %d samples", rounds*batch, end.Sub(begin).Round(time.Millisecond), len(w.since(begin)))
	w.none(begin, alertWith(detect.AlertSynRecvSurge, nil), "burst of complete handshakes")
}

// ownComm is this process's command name, as the owner lookup reports it.
func ownComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func closeWaitConfig() detect.Config {
	cfg := detect.DefaultConfig()
	cfg.CloseWaitMinAge = 2 * time.Second
	cfg.CloseWaitThreshold = 10
	return cfg
}

func TestScenarioCloseWaitLeak(t *testing.T) {
	ns := newNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	w := watch(t, ns, closeWaitConfig())
	// 20 connections whose client shut down its side while the server (this
	// process) never closes: 20 CLOSE_WAIT sockets on the server's port.
	set, err := ns.CloseWait(ctx, fixture.IPv4, 20)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	start := time.Now()
	port := strconv.Itoa(int(set.Listeners()[0].Port()))
	comm := ownComm(t)
	leak := alertWith(detect.AlertCloseWaitLeak, map[string]string{"port": port, "command": comm})
	e, f, ok := w.waitFor(start, leak, 30*time.Second)
	if !ok {
		var last []detect.Finding
		if es := w.since(start); len(es) > 0 {
			last = es[len(es)-1].findings
		}
		t.Fatalf("no TCPCloseWaitLeak for port %s command %s within 30 s; latest findings %v", port, comm, last)
	}
	t.Logf("fired %v after the leak began: %s; evidence %v", e.at.Sub(start).Round(time.Millisecond), f.Summary, f.Evidence)
	// The fixture opens the sockets over a moment: some may still be
	// younger than the minimum age when the threshold is crossed.
	if old, _ := strconv.Atoi(f.Evidence["old_sockets"]); old < 10 || f.Evidence["sockets"] != "20" || f.Evidence["pids"] != strconv.Itoa(os.Getpid()) {
		t.Errorf("evidence %v, want 20 sockets, at least 10 of them old, of pid %d", f.Evidence, os.Getpid())
	}
	if age, err := time.ParseDuration(f.Evidence["oldest_age"]); err != nil || age < 2*time.Second {
		t.Errorf("oldest_age %q, want at least the 2 s minimum age", f.Evidence["oldest_age"])
	}
	// The application closes them: the finding clears.
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	if _, ok := w.waitClear(closed, alertWith(detect.AlertCloseWaitLeak, nil), 5*time.Second); !ok {
		t.Errorf("TCPCloseWaitLeak still present 5 s after the sockets closed")
	}
}

func TestScenarioCloseWaitChurnQuiet(t *testing.T) {
	ns := newNetns(t)
	addr, accepted := serveIn(t, ns, "127.0.0.1:0")
	w := watch(t, ns, closeWaitConfig())
	begin := time.Now()
	// Connections whose client half-closes and waits for the server to
	// close too, for 6 s: each server socket passes through CLOSE_WAIT.
	n := 0
	err := ns.Do(func() error {
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			var fds []int
			for range 20 {
				fd, _, err := rawsock.Dial(addr, false)
				if err != nil {
					rawsock.CloseAll(fds)
					return err
				}
				fds = append(fds, fd)
			}
			if err := rawsock.WaitConnected(fds, time.Now().Add(5*time.Second)); err != nil {
				rawsock.CloseAll(fds)
				return err
			}
			for _, fd := range fds {
				if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
					rawsock.CloseAll(fds)
					return fmt.Errorf("shutdown: %w", err)
				}
			}
			err := rawsock.WaitEOF(fds, time.Now().Add(5*time.Second))
			rawsock.CloseAll(fds)
			if err != nil {
				return err
			}
			n += len(fds)
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	// Past the minimum age, so that any socket left behind would count.
	w.waitEvals(end.Add(3*time.Second), 1, 10*time.Second)
	t.Logf("%d connections closed by both sides (server accepted %d) over %v", n, accepted(), end.Sub(begin).Round(time.Millisecond))
	if n < 200 {
		t.Fatalf("only %d connections churned", n)
	}
	w.none(begin, alertWith(detect.AlertCloseWaitLeak, nil), "churn against a server that closes")
}

// churn opens short connections to addr from inside ns at rate per second,
// closed by the client first so that each leaves a TIME_WAIT socket on a
// local port, for at most limit. With stopOnExhaustion it returns when
// connect() first fails with EADDRNOTAVAIL, and when that was.
func churn(ns *fixture.Netns, addr netip.AddrPort, rate int, limit time.Duration, stopOnExhaustion bool) (made int, failedAt time.Time, err error) {
	err = ns.Do(func() error {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		deadline := time.Now().Add(limit)
		for range tick.C {
			if time.Now().After(deadline) {
				if stopOnExhaustion {
					return fmt.Errorf("no EADDRNOTAVAIL after %d connections", made)
				}
				return nil
			}
			fd, _, err := rawsock.Dial(addr, false)
			if errors.Is(err, unix.EADDRNOTAVAIL) && stopOnExhaustion {
				failedAt = time.Now()
				return nil
			}
			if err != nil {
				return err
			}
			err = rawsock.WaitConnected([]int{fd}, time.Now().Add(5*time.Second))
			unix.Close(fd)
			if err != nil {
				return err
			}
			made++
		}
		return nil
	})
	return made, failedAt, err
}

// TestScenarioTimeWaitExhaustion churns 100 connections a second towards
// one destination of a namespace with 600 usable ports: they run out after
// about 6 s. The share threshold (80%) alone would fire about 1.2 s before;
// the forecast fires at least 2 s before.
func TestScenarioTimeWaitExhaustion(t *testing.T) {
	ns := newNetns(t)
	for k, v := range map[string]string{
		"net.ipv4.ip_local_port_range": "40000 40599",
		"net.ipv4.tcp_tw_reuse":        "0",
	} {
		if err := ns.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.SysctlAtLeast("net.ipv4.tcp_max_tw_buckets", 8192); err != nil {
		t.Fatal(err)
	}
	addr, _ := serveIn(t, ns, "127.0.0.1:9000")
	w := watch(t, ns, detect.DefaultConfig())
	begin := time.Now()
	w.waitEvals(begin, 2, 10*time.Second)
	start := time.Now()
	made, failedAt, err := churn(ns, addr, 100, 40*time.Second, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("EADDRNOTAVAIL after %d connections, %v", made, failedAt.Sub(start).Round(time.Millisecond))
	exhaust := alertWith(detect.AlertTimeWaitExhaustion, map[string]string{
		"reason": "local_ports", "remote_address": "127.0.0.1", "remote_port": "9000", "local_address": "127.0.0.1",
	})
	e, f, ok := w.waitFor(begin, exhaust, 0)
	if !ok {
		t.Fatalf("no TCPTimeWaitExhaustion by the first EADDRNOTAVAIL")
	}
	ahead := failedAt.Sub(e.at)
	t.Logf("fired %v before the first EADDRNOTAVAIL: %s; evidence %v", ahead.Round(time.Millisecond), f.Summary, f.Evidence)
	if ahead < 2*time.Second {
		t.Errorf("TCPTimeWaitExhaustion fired %v before the first EADDRNOTAVAIL, want at least 2s", ahead)
	}
	if f.Evidence["usable"] != "600" || f.Severity != detect.Warning || f.Evidence["trigger"] != "forecast" {
		t.Errorf("finding %s: evidence %v", f.Severity, f.Evidence)
	}
	rate, err := strconv.ParseFloat(f.Evidence["ports_per_second"], 64)
	if err != nil || rate < 10 || rate > 150 {
		t.Errorf("ports_per_second %q at firing, want about 100", f.Evidence["ports_per_second"])
	}
	if eta, err := strconv.ParseFloat(f.Evidence["seconds_to_exhaustion"], 64); err != nil || eta <= 0 || eta > 60 {
		t.Errorf("seconds_to_exhaustion %q at firing", f.Evidence["seconds_to_exhaustion"])
	}
}

// TestScenarioTimeWaitSlowChurnQuiet churns 5 connections a second towards
// a 28232-port range: the ports in TIME_WAIT level off at about 300, far
// from exhaustion, and nothing fires.
func TestScenarioTimeWaitSlowChurnQuiet(t *testing.T) {
	ns := newNetns(t)
	for k, v := range map[string]string{
		"net.ipv4.ip_local_port_range": "32768 60999",
		"net.ipv4.tcp_tw_reuse":        "0",
	} {
		if err := ns.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
	addr, _ := serveIn(t, ns, "127.0.0.1:9000")
	w := watch(t, ns, detect.DefaultConfig())
	begin := time.Now()
	w.waitEvals(begin, 2, 10*time.Second)
	made, _, err := churn(ns, addr, 5, 20*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	if made < 80 {
		t.Fatalf("only %d connections in 20 s at 5/s", made)
	}
	w.waitEvals(time.Now(), 1, 10*time.Second)
	t.Logf("%d connections at 5/s", made)
	w.none(begin, alertWith(detect.AlertTimeWaitExhaustion, nil), "5 connections a second towards 28232 ports")
}

func TestScenarioAcceptQueueOverflow(t *testing.T) {
	ns := newNetns(t)
	l := listenIn(t, ns, netip.MustParseAddrPort("127.0.0.1:0"), 8)
	w := watch(t, ns, detect.DefaultConfig())
	begin := time.Now()
	w.waitEvals(begin, 2, 10*time.Second)
	anyOverflow := alertWith(detect.AlertAcceptQueueOverflow, nil)
	w.none(begin, anyOverflow, "before the connects")
	var fds []int
	if err := ns.Do(func() error {
		for range 20 {
			fd, _, err := rawsock.Dial(l, true)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer rawsock.CloseAll(fds)
	start := time.Now()
	overflow := alertWith(detect.AlertAcceptQueueOverflow, map[string]string{"address": "127.0.0.1", "port": strconv.Itoa(int(l.Port()))})
	e, f, ok := w.waitFor(start, overflow, 10*time.Second)
	if !ok {
		t.Fatalf("no TCPAcceptQueueOverflow for %v within 10 s", l)
	}
	t.Logf("fired %v after the connects: %s; evidence %v", e.at.Sub(start).Round(time.Millisecond), f.Summary, f.Evidence)
	if f.Evidence["queue_limit"] != "8" || f.Evidence["queue_length"] != "9" {
		t.Errorf("evidence %v, want a queue of 9 against a limit of 8", f.Evidence)
	}
}
