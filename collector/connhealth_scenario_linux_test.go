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

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// Connection-health scenarios: a server namespace and a client namespace
// joined by a veth pair on 198.19.200.0/24 (server .1, clients .2 and up),
// which only these namespaces carry.

var (
	chServer = netip.MustParseAddr("198.19.200.1")
	chClient = netip.MustParseAddr("198.19.200.2")
)

// pairNetns returns a server and a client namespace joined by a veth pair;
// the client end also carries extra.
func pairNetns(t *testing.T, extra ...netip.Addr) (server, client *fixture.Netns) {
	t.Helper()
	server, client = newNetns(t), newNetns(t)
	addrs := []netip.Prefix{netip.PrefixFrom(chClient, 24)}
	for _, a := range extra {
		addrs = append(addrs, netip.PrefixFrom(a, 24))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := fixture.ConnectVeth(ctx, server, client, fixture.VethOptions{
		NameA: "tsdtch0", NameB: "tsdtch1",
		AddrsA: []netip.Prefix{netip.PrefixFrom(chServer, 24)},
		AddrsB: addrs,
	}); err != nil {
		t.Fatal(err)
	}
	return server, client
}

// listenGo opens a Go listener in ns, keepalive off, that accepts every
// connection and hands it to serve (nil: hold it open, reading and
// discarding).
func listenGo(t *testing.T, ns *fixture.Netns, addr string, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	return listenGoKeepAlive(t, ns, addr, -1, serve)
}

// listenGoKeepAlive is listenGo with the accepted connections' keepalive
// period (negative: off).
func listenGoKeepAlive(t *testing.T, ns *fixture.Netns, addr string, keepAlive time.Duration, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{KeepAlive: keepAlive}).Listen(context.Background(), "tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
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
			conns = append(conns, c)
			mu.Unlock()
			if serve == nil {
				serve = func(c net.Conn) { io.Copy(io.Discard, c) }
			}
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// dialFrom opens n connections from local (invalid: any) in ns to remote,
// keepalive off, closed at the end of the test.
func dialFrom(t *testing.T, ns *fixture.Netns, local netip.Addr, remote netip.AddrPort, n int) []net.Conn {
	t.Helper()
	d := &net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	var cs []net.Conn
	err := ns.Do(func() error {
		for range n {
			c, err := d.Dial("tcp", remote.String())
			if err != nil {
				return err
			}
			cs = append(cs, c)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// writeEvery writes a small chunk on every connection each period until
// the test ends; write errors end that connection's writer.
func writeEvery(t *testing.T, cs []net.Conn, chunk int, period time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	buf := make([]byte, chunk)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := time.NewTicker(period)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
				c.SetWriteDeadline(time.Now().Add(period))
				if _, err := c.Write(buf); err != nil && !os.IsTimeout(err) {
					return
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
}

func TestScenarioPeerUnresponsive(t *testing.T) {
	server, client := pairNetns(t)
	l := listenGo(t, server, netip.AddrPortFrom(chServer, 0).String(), nil)
	cs := dialFrom(t, client, netip.Addr{}, l, 5)
	w := watch(t, client, detect.DefaultConfig())
	writeEvery(t, cs, 1024, 100*time.Millisecond)

	unresponsive := alertWith(detect.AlertPeerUnresponsive, map[string]string{"remote_address": chServer.String(), "family": "ipv4"})
	begin := time.Now()
	w.waitEvals(begin, 4, 15*time.Second)
	w.none(begin, alertWith(detect.AlertPeerUnresponsive, nil), "while the server answers")

	// The server's path back to the client goes into a blackhole: it
	// acknowledges nothing any more.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := server.IP(ctx, "route", "add", "blackhole", chClient.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e, f, ok := w.waitFor(start, unresponsive, 15*time.Second)
	if !ok {
		t.Fatalf("no TCPPeerUnresponsive for %v within 15 s of the blackhole", chServer)
	}
	t.Logf("fired after %v: %s; evidence %v", e.at.Sub(start).Round(time.Millisecond), f.Summary, f.Evidence)
	if n, _ := strconv.Atoi(f.Evidence["sockets"]); n != len(cs) {
		t.Errorf("sockets = %q, want %d", f.Evidence["sockets"], len(cs))
	}
	if r, _ := strconv.Atoi(f.Evidence["max_retransmissions"]); r < 4 {
		t.Errorf("max_retransmissions = %q, want at least the default threshold 4", f.Evidence["max_retransmissions"])
	}
	if f.Evidence["remote_ports"] != strconv.Itoa(int(l.Port())) || f.Evidence["local_ports"] == "" || f.Evidence["stalled_for"] == "" {
		t.Errorf("evidence %v", f.Evidence)
	}
	if comm := ownComm(t); !strings.HasPrefix(f.Evidence["process"], comm+" (pid "+strconv.Itoa(os.Getpid())+")") {
		t.Errorf("process = %q, want %s (pid %d)", f.Evidence["process"], comm, os.Getpid())
	}
	for _, e := range w.since(start) {
		for _, f := range e.findings {
			if f.Alert == detect.AlertPeerUnresponsive && f.Labels["remote_address"] != chServer.String() {
				t.Errorf("TCPPeerUnresponsive for another peer: %v", f.Labels)
			}
		}
	}
}

func TestScenarioPeerZeroWindow(t *testing.T) {
	server, client := pairNetns(t)
	// A listener nobody accepts on, with a small receive buffer its
	// children inherit: the connections fill it and advertise a zero
	// window.
	var lfd int
	var l netip.AddrPort
	if err := server.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		lfd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: chServer.As4()}); err != nil {
			return err
		}
		if err := unix.Listen(fd, 16); err != nil {
			return err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		l = netip.AddrPortFrom(chServer, uint16(sa.(*unix.SockaddrInet4).Port))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(lfd) })
	cs := dialFrom(t, client, netip.Addr{}, l, 3)
	w := watch(t, client, detect.DefaultConfig())
	start := time.Now()
	writeEvery(t, cs, 16384, 50*time.Millisecond)
	e, f, ok := w.waitFor(start, alertWith(detect.AlertPeerZeroWindow, map[string]string{"remote_address": chServer.String()}), 20*time.Second)
	if !ok {
		t.Fatalf("no TCPPeerZeroWindow for %v within 20 s of the writes' start", chServer)
	}
	t.Logf("fired after %v: %s; evidence %v", e.at.Sub(start).Round(time.Millisecond), f.Summary, f.Evidence)
	if f.Evidence["sockets"] != "3" || f.Evidence["remote_ports"] != strconv.Itoa(int(l.Port())) {
		t.Errorf("evidence %v", f.Evidence)
	}
	if d, err := time.ParseDuration(f.Evidence["stalled_for"]); err != nil || d < detect.DefaultConfig().ZeroWindowMin {
		t.Errorf("stalled_for = %q, want at least %v", f.Evidence["stalled_for"], detect.DefaultConfig().ZeroWindowMin)
	}
	w.none(start, alertWith(detect.AlertPeerUnresponsive, nil), "a peer that acknowledges zero-window probes")
}

func TestScenarioClientConnectionHog(t *testing.T) {
	var small []netip.Addr
	for i := range 10 {
		small = append(small, netip.AddrFrom4([4]byte{198, 19, 200, byte(10 + i)}))
	}
	hog := netip.MustParseAddr("198.19.200.50")
	server, client := pairNetns(t, append(small, hog)...)
	if err := server.Sysctl("net.core.somaxconn", "1024"); err != nil {
		t.Fatal(err)
	}
	l := listenGo(t, server, netip.AddrPortFrom(chServer, 0).String(), nil)
	w := watch(t, server, detect.DefaultConfig())
	begin := time.Now()
	for _, a := range small {
		dialFrom(t, client, a, l, 3)
	}
	w.waitEvals(time.Now(), 2, 10*time.Second)
	w.none(begin, alertWith(detect.AlertClientConnectionHog, nil), "clients with 3 connections each")

	start := time.Now()
	dialFrom(t, client, hog, l, 300)
	e, f, ok := w.waitFor(start, alertWith(detect.AlertClientConnectionHog, map[string]string{"client": hog.String(), "port": strconv.Itoa(int(l.Port()))}), 15*time.Second)
	if !ok {
		t.Fatalf("no TCPClientConnectionHog for %v within 15 s", hog)
	}
	t.Logf("fired after %v: %s; evidence %v", e.at.Sub(start).Round(time.Millisecond), f.Summary, f.Evidence)
	if f.Evidence["client_connections"] != "300" || f.Evidence["listener_connections"] != "330" || f.Evidence["listener_clients"] != "11" {
		t.Errorf("evidence %v", f.Evidence)
	}
	if !strings.Contains(f.Evidence["iptables_connlimit_rule"], "--dport "+strconv.Itoa(int(l.Port()))+" -m connlimit --connlimit-above 100") ||
		!strings.Contains(f.Evidence["nft_connlimit_rule"], "ct count over 100") {
		t.Errorf("connlimit rules: %q, %q", f.Evidence["iptables_connlimit_rule"], f.Evidence["nft_connlimit_rule"])
	}
	w.waitEvals(e.at, 2, 10*time.Second)
	for _, e := range w.since(begin) {
		for _, f := range e.findings {
			if f.Alert == detect.AlertClientConnectionHog && f.Labels["client"] != hog.String() {
				t.Errorf("TCPClientConnectionHog for another client: %v", f.Labels)
			}
		}
	}
}

func TestScenarioClientConnectionHogAllowed(t *testing.T) {
	hog := netip.MustParseAddr("198.19.200.50")
	server, client := pairNetns(t, hog)
	l := listenGo(t, server, netip.AddrPortFrom(chServer, 0).String(), nil)
	cfg := detect.DefaultConfig()
	cfg.ClientHogAllow = "198.19.200.48/29"
	w := watch(t, server, cfg)
	begin := time.Now()
	dialFrom(t, client, hog, l, 150)
	w.waitEvals(time.Now(), 3, 15*time.Second)
	w.none(begin, alertWith(detect.AlertClientConnectionHog, nil), "an allow-listed client")
}

// selfConnect connects from ns to 127.0.0.1:port in a loop of raw
// connect(2) calls until one socket is connected to itself, and returns it.
func selfConnect(t *testing.T, ns *fixture.Netns, port int) int {
	t.Helper()
	fd := -1
	err := ns.Do(func() error {
		deadline := time.Now().Add(8 * time.Second)
		for time.Now().Before(deadline) {
			s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			if err := unix.Connect(s, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
				unix.Close(s)
				continue
			}
			fd = s
			return nil
		}
		return os.ErrDeadlineExceeded
	})
	if err != nil {
		t.Fatalf("no self-connection to port %d: %v", port, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestScenarioSelfConnect(t *testing.T) {
	ns := newNetns(t)
	// A narrow ephemeral range makes connect() pick the target port soon.
	if err := ns.Sysctl("net.ipv4.ip_local_port_range", "40000\t40009"); err != nil {
		t.Fatal(err)
	}
	w := watch(t, ns, detect.DefaultConfig())
	begin := time.Now()
	w.waitEvals(begin, 2, 10*time.Second)
	const port = 40004
	fd := selfConnect(t, ns, port)
	local, _ := unix.Getsockname(fd)
	peer, _ := unix.Getpeername(fd)
	if local.(*unix.SockaddrInet4).Port != port || peer.(*unix.SockaddrInet4).Port != port {
		t.Fatalf("socket %v -> %v is not self-connected", local, peer)
	}
	start := time.Now()
	e, f, ok := w.waitFor(start, alertWith(detect.AlertSelfConnect, map[string]string{"port": strconv.Itoa(port), "family": "ipv4"}), 10*time.Second)
	if !ok {
		t.Fatalf("no TCPSelfConnect for port %d within 10 s", port)
	}
	t.Logf("fired after %v: %s; evidence %v", e.at.Sub(start).Round(time.Millisecond), f.Summary, f.Evidence)
	if comm := ownComm(t); f.Evidence["process"] != comm+" (pid "+strconv.Itoa(os.Getpid())+")" || f.Evidence["address"] != "127.0.0.1" {
		t.Errorf("evidence %v, want process %s (pid %d)", f.Evidence, comm, os.Getpid())
	}
	w.none(begin, func(f *detect.Finding) bool {
		return f.Alert == detect.AlertSelfConnect && f.Labels["port"] != strconv.Itoa(port)
	}, "other ports")
}

func TestScenarioRetransmittedHandshakes(t *testing.T) {
	server, client := newNetns(t), newNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// SYN-ACKs from server vanish into a sink: the clients never answer,
	// as spoofed sources never do.
	const n = 20
	set, err := server.SynRecv(ctx, client, fixture.IPv4, n)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	f, err := os.Open(server.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := collector.NewSampler(collector.SamplerOptions{
		Dial:    func() (*diag.Conn, error) { return diag.Dial(&diag.DialOptions{NetNS: int(f.Fd())}) },
		InNetns: server.Do,
		Logger:  slog.New(slog.DiscardHandler),
	})
	defer s.Close()
	want := set.Listeners()[0]
	// The first SYN-ACK retransmission comes 1 s after the SYN.
	deadline := time.Now().Add(10 * time.Second)
	var last detect.Listener
	for time.Now().Before(deadline) {
		for _, kind := range collector.Kinds {
			smp, err := s.Sample(kind)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range smp.Listeners {
				if l.Port == want.Port() {
					last = l
				}
			}
			if last.SynRecv == n && last.SynRecvRetransmitted == n {
				t.Logf("%s dump: %d SYN_RECV, %d retransmitted", kind, last.SynRecv, last.SynRecvRetransmitted)
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("listener %v: %d SYN_RECV, %d retransmitted after 10 s, want %d and %d", want, last.SynRecv, last.SynRecvRetransmitted, n, n)
}
