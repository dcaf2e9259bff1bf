//go:build linux

package netns

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture/rawsock"
)

// benchLockHeld names an environment variable that says the caller (such
// as scripts/bench-netns.sh, under flock) already holds /tmp/bench.lock.
const benchLockHeld = "TCPSTATE_BENCH_LOCK_HELD"

// benchLock takes the machine-wide lock that every run of 50k sockets or
// more holds, waiting for it, and releases it when the test ends.
func benchLock(t *testing.T) {
	t.Helper()
	if os.Getenv(benchLockHeld) != "" {
		return
	}
	f, err := os.OpenFile("/tmp/bench.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("waiting for /tmp/bench.lock")
	start := time.Now()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Logf("holding /tmp/bench.lock (waited %v)", time.Since(start).Round(time.Second))
	t.Cleanup(func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	})
}

// sockfill builds the bulk-socket helper once per test.
func sockfill(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(fixture.SockfillEnv); bin != "" {
		return bin
	}
	bin, err := fixture.BuildSockfill(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// busyNamespaces creates n namespaces holding perNS ESTABLISHED sockets
// each.
func busyNamespaces(t *testing.T, n, perNS int) []*fixture.Netns {
	t.Helper()
	bin := sockfill(t)
	start := time.Now()
	var out []*fixture.Netns
	for range n {
		ns := fixture.NewNetnsPrefix(t, "tsnb-")
		b, err := fixture.StartBulk(context.Background(), ns, perNS, fixture.IPv4, fixture.BulkOptions{Binary: bin})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Error(err)
			}
		})
		out = append(out, ns)
	}
	t.Logf("%d namespaces of %d sockets up in %v", n, perNS, time.Since(start).Round(time.Second))
	return out
}

var floodDst = netip.MustParseAddr("198.19.254.1")

// floodTarget prepares ns for a spoofed SYN flood: its address on a sink
// device that is also the default route (SYN-ACKs to the random sources
// vanish), tcp_syncookies as given, and a listener of backlog 128 nobody
// accepts on.
func floodTarget(t *testing.T, ns *fixture.Netns, syncookies string) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := ns.AddSink(ctx, "tsnbk0"); err != nil {
		t.Fatal(err)
	}
	if err := ns.AddAddr(ctx, "tsnbk0", netip.PrefixFrom(floodDst, 24)); err != nil {
		t.Fatal(err)
	}
	if err := ns.IP(ctx, "route", "add", "default", "dev", "tsnbk0"); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"net.ipv4.tcp_syncookies": syncookies, "net.ipv4.tcp_synack_retries": "1"} {
		if err := ns.Sysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
	var fd int
	var bound netip.AddrPort
	if err := ns.Do(func() (err error) {
		fd, bound, err = rawsock.Listen(netip.AddrPortFrom(floodDst, 8080), 128)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return bound
}

// findingsOf returns a function that reads the findings of the namespace
// labelled label, nil while it is not sampled.
func findingsOf(m *Manager, label string) func() []detect.Finding {
	return func() []detect.Finding {
		for _, tg := range m.Targets() {
			if tg.Labels[0] == label {
				return tg.Sampler.Findings()
			}
		}
		return nil
	}
}

func has(fs []detect.Finding, alert string) *detect.Finding {
	for i := range fs {
		if fs[i].Alert == alert {
			return &fs[i]
		}
	}
	return nil
}

// timeTo polls find every 20 ms until it returns a finding or limit
// passes, and returns how long that took from start.
func timeTo(find func() *detect.Finding, start time.Time, limit time.Duration) (time.Duration, *detect.Finding) {
	for time.Since(start) < limit {
		if f := find(); f != nil {
			return time.Since(start), f
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, nil
}

// synFlood runs hping3 in ns against l: about 1000 SYNs/s from random
// sources for 5 s. It returns a function that waits for the end.
func synFlood(t *testing.T, ns *fixture.Netns, l netip.AddrPort) func() {
	t.Helper()
	cmd := ns.Command(context.Background(), "hping3", "-q", "-S", "-p", strconv.Itoa(int(l.Port())), "--rand-source", "-i", "u1000", "-c", "5000", l.Addr().String())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := cmd.Wait(); err != nil {
			t.Errorf("hping3: %v: %s", err, out.String())
		}
	}
}

// TestNetnsDetectionAmongBusyNamespaces is the node-scale scenario of
// --netns=all at the default interval and budget: 30 namespaces of 3400
// sockets (102k on the node) and three more where things go wrong. A
// spoofed SYN flood (syncookies on, and off) and an accept queue overflow
// must each be flagged for their namespace within 3 s, from the cheap path
// (counters and LISTEN-only dumps every second), whatever the dumps of the
// shared hash cost.
func TestNetnsDetectionAmongBusyNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("102k sockets in 30 namespaces: skipped in -short mode")
	}
	if _, err := exec.LookPath("hping3"); err != nil {
		t.Fatal("hping3 is needed for the spoofed SYN flood: " + err.Error())
	}
	benchLock(t)
	busy := busyNamespaces(t, 30, 3400)
	cookiesOn := fixture.NewNetnsPrefix(t, "tsnb-")
	cookiesOff := fixture.NewNetnsPrefix(t, "tsnb-")
	lOn := floodTarget(t, cookiesOn, "1")
	lOff := floodTarget(t, cookiesOff, "0")
	// The accept queue overflows in one of the busy namespaces.
	aq := busy[7]
	var aqFD int
	var aqAddr netip.AddrPort
	if err := aq.Do(func() (err error) {
		aqFD, aqAddr, err = rawsock.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 8)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(aqFD) })

	m, err := NewManager(ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// As the agent: the whole process holds the budget.
	m.Scheduler().CountProcess()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	label := func(ns *fixture.Netns) string {
		ino, err := ns.Inode()
		if err != nil {
			t.Fatal(err)
		}
		return strconv.FormatUint(ino, 10)
	}
	// Every namespace of ours has had a few cheap samples.
	ours := append([]*fixture.Netns{cookiesOn, cookiesOff}, busy...)
	waitFor(t, 60*time.Second, "three cheap samples of every test namespace", func() (bool, string) {
		byNetns := targetsByNetns(m.Targets())
		for _, ns := range ours {
			tg, ok := byNetns[label(ns)]
			if !ok {
				return false, ns.Name() + " not sampled yet"
			}
			if n := tg.Sampler.View(time.Now()).Stats[collector.Listen].Dumps; n < 3 {
				return false, fmt.Sprintf("%s: %d cheap samples", ns.Name(), n)
			}
		}
		return true, ""
	})
	logPlan := func(when string) {
		st := m.Stats()
		var parts []string
		for _, p := range m.Scheduler().Plan() {
			parts = append(parts, fmt.Sprintf("%s every %v, achieved %v (asked %v, off %v, exceeded %v, %.4f of a core)", p.Kind, m.Scheduler().Planned(p.Kind).Round(time.Millisecond), m.Scheduler().Achieved(p.Kind).Round(time.Millisecond), p.Asked, p.Off, p.Exceeded, p.Rate))
		}
		t.Logf("%s: %d namespaces; process %.4f of a core; %s", when, st.Namespaces, m.Scheduler().ProcessRatio(), strings.Join(parts, "; "))
	}
	logPlan("before")
	for _, ns := range ours {
		if fs := findingsOf(m, label(ns))(); has(fs, detect.AlertSynRecvSurge) != nil || has(fs, detect.AlertAcceptQueueOverflow) != nil {
			t.Fatalf("%s: findings before anything went wrong: %v", ns.Name(), fs)
		}
	}

	for _, tc := range []struct {
		name string
		ns   *fixture.Netns
		l    netip.AddrPort
		sev  detect.Severity
	}{{"syncookies-on", cookiesOn, lOn, detect.Warning}, {"syncookies-off", cookiesOff, lOff, detect.Critical}} {
		t.Run("syn-flood-"+tc.name, func(t *testing.T) {
			find := findingsOf(m, label(tc.ns))
			start := time.Now()
			wait := synFlood(t, tc.ns, tc.l)
			defer wait()
			took, f := timeTo(func() *detect.Finding { return has(find(), detect.AlertSynRecvSurge) }, start, 10*time.Second)
			if f == nil {
				t.Fatalf("no TCPSynRecvSurge for %s within 10 s of the flood's start", tc.ns.Name())
			}
			t.Logf("TCPSynRecvSurge %v after the flood's start: %s (labels %v, evidence %v)", took.Round(time.Millisecond), f.Summary, f.Labels, f.Evidence)
			if took > 3*time.Second {
				t.Errorf("TCPSynRecvSurge %v after the flood's start, want within 3 s", took)
			}
			if f.Severity != tc.sev {
				t.Errorf("severity %s, want %s", f.Severity, tc.sev)
			}
		})
	}
	t.Run("accept-queue-overflow", func(t *testing.T) {
		find := findingsOf(m, label(aq))
		var fds []int
		start := time.Now()
		if err := aq.Do(func() error {
			for range 20 {
				fd, _, err := rawsock.Dial(aqAddr, true)
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
		took, f := timeTo(func() *detect.Finding { return has(find(), detect.AlertAcceptQueueOverflow) }, start, 10*time.Second)
		if f == nil {
			t.Fatalf("no TCPAcceptQueueOverflow for %s within 10 s", aq.Name())
		}
		t.Logf("TCPAcceptQueueOverflow %v after the connects: %s", took.Round(time.Millisecond), f.Summary)
		if took > 3*time.Second {
			t.Errorf("TCPAcceptQueueOverflow %v after the connects, want within 3 s", took)
		}
		if f.Evidence["queue_limit"] != "8" || f.Evidence["queue_length"] != "9" {
			t.Errorf("evidence %v, want a queue of 9 against a limit of 8", f.Evidence)
		}
	})
	logPlan("after")
}

// scale1M names an environment variable that turns on the 1M-socket
// scenario (minutes of fixture setup): scripts/bench-netns.sh sets it.
const scale1M = "TCPSTATE_TEST_1M"

// TestHostSynFloodAt1M runs the agent's host-mode sampling (one Sampler
// under its own Scheduler, default interval and budget) in a namespace
// holding 1M ESTABLISHED sockets, where a rare dump costs ~0.1-0.2 s of CPU
// and a full one over a second: a spoofed SYN flood must be flagged within
// 2 s, with syncookies on and off. Opt-in (TCPSTATE_TEST_1M=1).
func TestHostSynFloodAt1M(t *testing.T) {
	if os.Getenv(scale1M) == "" {
		t.Skip("set " + scale1M + "=1 to run the 1M-socket scenario (scripts/bench-netns.sh does)")
	}
	if _, err := exec.LookPath("hping3"); err != nil {
		t.Fatal("hping3 is needed for the spoofed SYN flood: " + err.Error())
	}
	benchLock(t)
	for _, tc := range []struct{ name, syncookies string }{{"syncookies-on", "1"}, {"syncookies-off", "0"}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fixture.NewNetnsPrefix(t, "tsnb-")
			start := time.Now()
			b, err := fixture.StartBulk(context.Background(), ns, 1_000_000, fixture.IPv4, fixture.BulkOptions{Binary: sockfill(t), Timeout: 10 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			t.Logf("1M sockets up in %v", time.Since(start).Round(time.Second))
			l := floodTarget(t, ns, tc.syncookies)
			f, err := os.Open(ns.Path())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := collector.NewSampler(collector.SamplerOptions{
				Dial:    func() (*diag.Conn, error) { return diag.Dial(&diag.DialOptions{NetNS: int(f.Fd())}) },
				InNetns: ns.Do,
				Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			waitFor(t, 3*time.Minute, "a full and a rare dump and three cheap samples", func() (bool, string) {
				v := s.View(time.Now())
				return v.Ready && v.Stats[collector.Rare].Dumps > 0 && v.Stats[collector.Listen].Dumps >= 3,
					fmt.Sprintf("%+v", v.Stats)
			})
			v := s.View(time.Now())
			t.Logf("plan: rare every %v (dump %v), full every %v (dump %v), cheap every %v",
				v.Stats[collector.Rare].Planned.Round(time.Millisecond), v.Stats[collector.Rare].LastDuration.Round(time.Millisecond),
				v.Stats[collector.Full].Planned.Round(time.Millisecond), v.Stats[collector.Full].LastDuration.Round(time.Millisecond),
				v.Stats[collector.Listen].Planned)
			if fs := s.Findings(); has(fs, detect.AlertSynRecvSurge) != nil {
				t.Fatalf("TCPSynRecvSurge before the flood: %v", fs)
			}
			fstart := time.Now()
			wait := synFlood(t, ns, l)
			defer wait()
			took, fd := timeTo(func() *detect.Finding { return has(s.Findings(), detect.AlertSynRecvSurge) }, fstart, 10*time.Second)
			if fd == nil {
				t.Fatal("no TCPSynRecvSurge within 10 s of the flood's start")
			}
			t.Logf("TCPSynRecvSurge %v after the flood's start: %s", took.Round(time.Millisecond), fd.Summary)
			if took > 2*time.Second {
				t.Errorf("TCPSynRecvSurge %v after the flood's start, want within 2 s", took)
			}
		})
	}
}
