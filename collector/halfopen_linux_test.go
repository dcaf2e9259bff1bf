//go:build linux

package collector_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// watchWith starts a Sampler with opts in ns (Dial, InNetns, the
// lookup timeout, the logger and OnSample are set here), records every
// evaluation, and stops it at the end of the test.
func watchWith(t *testing.T, ns *fixture.Netns, opts collector.SamplerOptions) (*watcher, *collector.Sampler) {
	t.Helper()
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{t: t, ns: ns}
	var s *collector.Sampler
	opts.Dial = func() (*diag.Conn, error) { return diag.Dial(&diag.DialOptions{NetNS: int(f.Fd())}) }
	opts.InNetns = ns.Do
	// The shared test machine may hold hundreds of thousands of
	// descriptors in other tests' processes: give the real owner lookup
	// room to scan them all.
	opts.LookupTimeout = 3 * time.Second
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.OnSample = func(*collector.Sample) {
		fs := s.Findings()
		w.mu.Lock()
		w.evals = append(w.evals, evaluation{at: time.Now(), findings: fs})
		w.mu.Unlock()
	}
	s = collector.NewSampler(opts)
	run := fixture.Background(t, "Sampler.Run", s.Run)
	t.Cleanup(func() {
		run.Stop(fixture.DefaultStopGrace)
		f.Close()
	})
	return w, s
}

// holdServer listens on addr inside ns with keepalive on or off and keeps
// every accepted connection open, reading (and discarding) what arrives,
// until the test ends.
func holdServer(t *testing.T, ns *fixture.Netns, addr string, keepalive bool) netip.AddrPort {
	t.Helper()
	ka := time.Duration(-1)
	if keepalive {
		ka = 15 * time.Second // Go's default
	}
	return listenGoKeepAlive(t, ns, addr, ka, nil)
}

// greetFrom opens n connections from ns to addr with keepalive off, each
// sending one line.
func greetFrom(t *testing.T, ns *fixture.Netns, addr netip.AddrPort, n int) []net.Conn {
	t.Helper()
	out := dialFrom(t, ns, netip.Addr{}, addr, n)
	for _, c := range out {
		if _, err := c.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// talker writes a line to every connection every period until stop
// closes; wg ends with it.
type talker struct {
	wg sync.WaitGroup
	// last is when the latest round of writes started (read after wg).
	last time.Time
}

// talk starts a talker.
func talk(conns []net.Conn, period time.Duration, stop <-chan struct{}) *talker {
	tk := &talker{last: time.Now()}
	tk.wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				tk.last = time.Now()
				for _, c := range conns {
					c.Write([]byte("tick\n"))
				}
			}
		}
	})
	return tk
}

// TestScenarioHalfOpen: clients in a namespace of their own, joined to the
// server's by a veth pair, talk to a server with keepalive off, then vanish
// without a FIN or RST reaching it (their route to the server is
// blackholed, their connections reset into the blackhole, their namespace
// deleted). TCPHalfOpenSuspect must stay quiet while they talk, for longer
// than the 3 s minimum idle time, and then name the listener and the server
// process (this test binary) with exactly the 12 vanished connections.
// Quiet cases on the same server: connections that keep talking (over the
// server namespace's loopback), and 12 connections to a second listener with
// keepalive on that vanished the same way, are never counted.
func TestScenarioHalfOpen(t *testing.T) {
	server := newNetns(t)
	client := newNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srvAddr := netip.MustParsePrefix("198.18.200.1/24")
	cliAddr := netip.MustParsePrefix("198.18.200.2/24")
	if _, err := fixture.ConnectVeth(ctx, server, client, fixture.VethOptions{
		NameA: "hosrv", NameB: "hocli", AddrsA: []netip.Prefix{srvAddr}, AddrsB: []netip.Prefix{cliAddr},
	}); err != nil {
		t.Fatal(err)
	}
	cfg := detect.DefaultConfig()
	cfg.HalfOpenMinIdle = 3 * time.Second
	cfg.HalfOpenMinCount = 10
	w, s := watchWith(t, server, collector.SamplerOptions{Detect: cfg, HalfOpenInterval: time.Second})

	// Wildcard listeners: the chatty clients use the server's loopback,
	// which outlives the veth pair (it goes with the client namespace).
	noKA := holdServer(t, server, "0.0.0.0:0", false)
	withKA := holdServer(t, server, "0.0.0.0:0", true)
	via := func(p netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(srvAddr.Addr(), p.Port()) }
	vanishing := append(greetFrom(t, client, via(noKA), 12), greetFrom(t, client, via(withKA), 12)...)
	chatty := greetFrom(t, server, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), noKA.Port()), 3)
	stopChat, stopVanishing := make(chan struct{}), make(chan struct{})
	chatTalk := talk(chatty, 300*time.Millisecond, stopChat)
	defer func() { close(stopChat); chatTalk.wg.Wait() }()
	vanishTalk := talk(vanishing, 500*time.Millisecond, stopVanishing)

	noKAPort, withKAPort := strconv.Itoa(int(noKA.Port())), strconv.Itoa(int(withKA.Port()))
	anySuspect := alertWith(detect.AlertHalfOpenSuspect, nil)
	// Healthy for longer than the minimum idle time: quiet.
	start := time.Now()
	time.Sleep(5 * time.Second)
	w.waitEvals(start, 3, 20*time.Second)
	w.none(start, anySuspect, "while every client talked")
	if v := s.View(time.Now()); v.HalfOpen.Stats.Dumps < 2 || v.HalfOpen.Latest == nil {
		t.Fatalf("fewer than two sweeps in 5 s: %+v", v.HalfOpen)
	}

	// The clients vanish: nothing they send reaches the server any more.
	close(stopVanishing)
	vanishTalk.wg.Wait()
	// The server's connections go idle from the clients' latest write,
	// up to one period before they vanish.
	lastData := vanishTalk.last
	if err := client.IP(ctx, "route", "add", "blackhole", srvAddr.Addr().String()+"/32"); err != nil {
		t.Fatal(err)
	}
	for _, c := range vanishing {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	vanished := time.Now()
	if err := client.Delete(); err != nil {
		t.Fatal(err)
	}

	comm := ownComm(t)
	e, f, ok := w.waitFor(vanished, alertWith(detect.AlertHalfOpenSuspect, map[string]string{"port": noKAPort, "command": comm}), 20*time.Second)
	if !ok {
		var last []detect.Finding
		if es := w.since(vanished); len(es) > 0 {
			last = es[len(es)-1].findings
		}
		t.Fatalf("no TCPHalfOpenSuspect for port %s command %s within 20 s; latest findings %v; half-open view %+v", noKAPort, comm, last, s.View(time.Now()).HalfOpen.Latest)
	}
	t.Logf("fired %v after the clients' latest data, %v after they vanished: %s; evidence %v", e.at.Sub(lastData).Round(time.Millisecond), e.at.Sub(vanished).Round(time.Millisecond), f.Summary, f.Evidence)
	// Idle is counted from the clients' latest data, in the kernel's
	// jiffies (ms in tcp_info): allow 10 ms of rounding.
	if e.at.Sub(lastData) < cfg.HalfOpenMinIdle-10*time.Millisecond {
		t.Errorf("fired %v after the clients' latest data (%v after they vanished), before the %v minimum idle time", e.at.Sub(lastData), e.at.Sub(vanished), cfg.HalfOpenMinIdle)
	}
	if f.Evidence["listeners"] != noKA.String() || !strings.Contains(f.Summary, noKA.String()) {
		t.Errorf("finding does not name the listener %v: %s %v", noKA, f.Summary, f.Evidence)
	}
	if f.Evidence["pids"] != strconv.Itoa(os.Getpid()) || !strings.Contains(f.Summary, comm) {
		t.Errorf("finding does not name the server process %s (pid %d): %s %v", comm, os.Getpid(), f.Summary, f.Evidence)
	}
	if f.Evidence["connections"] != "12" || f.Evidence["remotes"] != cliAddr.Addr().String() {
		t.Errorf("connections %q from %q, want the 12 vanished ones from %v", f.Evidence["connections"], f.Evidence["remotes"], cliAddr.Addr())
	}
	if idle, err := time.ParseDuration(f.Evidence["oldest_idle"]); err != nil || idle < cfg.HalfOpenMinIdle {
		t.Errorf("oldest_idle %q, want at least the minimum %v", f.Evidence["oldest_idle"], cfg.HalfOpenMinIdle)
	}
	for _, k := range []string{"tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes", "fix"} {
		if f.Evidence[k] == "" {
			t.Errorf("evidence lacks %s: %v", k, f.Evidence)
		}
	}
	// A few more sweeps: the keepalive listener is never named, and the
	// talking connections never join the count.
	more := time.Now()
	w.waitEvals(more, 3, 20*time.Second)
	w.none(start, alertWith(detect.AlertHalfOpenSuspect, map[string]string{"port": withKAPort}), "keepalive listener")
	for _, ev := range w.since(vanished) {
		if f := ev.find(anySuspect); f != nil && (f.Labels["port"] != noKAPort || f.Evidence["connections"] != "12") {
			t.Errorf("finding %v %v: only the 12 vanished connections of port %s may count", f.Labels, f.Evidence, noKAPort)
		}
	}
	v := s.View(time.Now())
	if v.HalfOpen.Latest == nil || v.HalfOpen.Stats.Planned < time.Second || v.HalfOpen.BudgetShare <= 0 || v.HalfOpen.Latest.Suspects != 12 {
		t.Errorf("half-open view %+v, latest %+v", v.HalfOpen, v.HalfOpen.Latest)
	}
}
