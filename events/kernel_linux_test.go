//go:build linux

package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// loadFor loads the programs with the kernel filter set to ns's cookie (0
// for ns == nil: every namespace), failing the test when they cannot load:
// these tests are run as root on a kernel with BTF.
func loadFor(t *testing.T, ns *fixture.Netns) (*Source, uint64) {
	t.Helper()
	var cookie uint64
	if ns != nil {
		cookie = cookieOf(t, ns)
	}
	if err := Check(); err != nil {
		t.Fatalf("the event programs cannot load here (run as root on a kernel with BTF): %v", err)
	}
	src, err := Open(SourceOptions{Netns: cookie})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src, cookie
}

func cookieOf(t *testing.T, ns *fixture.Netns) uint64 {
	t.Helper()
	var c uint64
	if err := ns.Do(func() (err error) { c, err = NetnsCookie(); return err }); err != nil {
		t.Fatal(err)
	}
	if c == 0 {
		t.Fatal("namespace cookie 0")
	}
	return c
}

// waitFor reads the maps until cond holds for the namespace's records or
// the deadline passes, and returns the last read.
func waitFor(t *testing.T, src *Source, cookie uint64, d time.Duration, cond func(*Namespace) bool) *Namespace {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		snap, err := src.Read()
		if err != nil {
			t.Fatal(err)
		}
		if snap.Skipped != 0 {
			t.Fatalf("%d records did not decode: %v", snap.Skipped, snap.Err)
		}
		ns := snap.Namespaces[cookie]
		if ns == nil {
			ns = &Namespace{}
		}
		if cond(ns) || time.Now().After(deadline) {
			return ns
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// total returns the total of a kind and code.
func total(ns *Namespace, k Kind, code uint32) uint64 {
	var n uint64
	for _, r := range ns.Totals {
		if r.Kind == k && r.Code == code {
			n += r.Count
		}
	}
	return n
}

// detail sums the details of a kind matching the filter.
func detail(ns *Namespace, k Kind, match func(Record) bool) uint64 {
	var n uint64
	for _, r := range ns.Details {
		if r.Kind == k && match(r) {
			n += r.Count
		}
	}
	return n
}

func dumpRecords(t *testing.T, ns *Namespace) {
	t.Helper()
	for _, r := range ns.Totals {
		t.Logf("total  %-18s code=%-4d count=%d", r.Kind, r.Code, r.Count)
	}
	for _, r := range ns.Details {
		t.Logf("detail %-18s code=%-4d %s lport=%d rport=%d count=%d", r.Kind, r.Code, r.Addr, r.LocalPort, r.RemotePort, r.Count)
	}
}

var dialer = net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}

// TestOpenClose opens and closes N connections on loopback and expects
// exactly N active and N passive opens, N closes of each with their
// lifetimes, attributed to the destination and the listener's port.
func TestOpenClose(t *testing.T) {
	const n = 40
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	src, cookie := loadFor(t, ns)

	var port uint16
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		accepted := make(chan net.Conn, n)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		for range n {
			c, err := dialer.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			s := <-accepted
			c.Close()
			// Wait for the FIN before the server closes, so that every
			// connection ends the same way (client in TIME_WAIT).
			if _, err := s.Read(make([]byte, 1)); err == nil {
				return errors.New("server read data, want EOF")
			}
			s.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := func(ns *Namespace) bool {
		return total(ns, KindClose, uint32(DirectionActive)) >= n && total(ns, KindClose, uint32(DirectionPassive)) >= n
	}
	got := waitFor(t, src, cookie, 5*time.Second, want)
	dumpRecords(t, got)

	dst := netip.MustParseAddr("127.0.0.1")
	for _, c := range []struct {
		name string
		got  uint64
	}{
		{"active opens", total(got, KindOpen, uint32(DirectionActive))},
		{"passive opens", total(got, KindOpen, uint32(DirectionPassive))},
		{"active closes", total(got, KindClose, uint32(DirectionActive))},
		{"passive closes", total(got, KindClose, uint32(DirectionPassive))},
		{"active opens to the destination", detail(got, KindOpen, func(r Record) bool {
			return r.Code == uint32(DirectionActive) && r.Addr == dst && r.RemotePort == port
		})},
		{"passive opens on the listener", detail(got, KindOpen, func(r Record) bool {
			return r.Code == uint32(DirectionPassive) && r.LocalPort == port && r.RemotePort == 0
		})},
		{"passive closes on the listener", detail(got, KindClose, func(r Record) bool {
			return r.Code == uint32(DirectionPassive) && r.LocalPort == port
		})},
	} {
		if c.got != n {
			t.Errorf("%s: %d, want %d", c.name, c.got, n)
		}
	}
	if u := total(got, KindClose, uint32(DirectionUnknown)); u != 0 {
		t.Errorf("%d closes of unknown direction, want 0 (every connection was opened after load)", u)
	}
	if f := got.Total(KindConnectFailure); f != 0 {
		t.Errorf("%d connect failures, want 0", f)
	}
	// Every close carries its lifetime: the histogram counts n per
	// direction, and loopback connections closed at once live < 5 s.
	for _, r := range got.Totals {
		if r.Kind != KindClose {
			continue
		}
		var sum uint64
		for _, b := range r.Lifetime {
			sum += b
		}
		if sum != r.Count {
			t.Errorf("close %s: lifetime buckets sum to %d, count %d", Direction(r.Code), sum, r.Count)
		}
		if r.LifetimeSum <= 0 || r.LifetimeSum > time.Duration(n)*5*time.Second {
			t.Errorf("close %s: lifetime sum %v out of range", Direction(r.Code), r.LifetimeSum)
		}
	}
}

// TestRefusedConnects connects N times to a closed port: N connect
// failures of reason refused, and N resets sent with reason no_socket from
// that port to the client.
func TestRefusedConnects(t *testing.T) {
	const n = 25
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	src, cookie := loadFor(t, ns)
	if !src.HasResetReason() {
		t.Logf("this kernel passes no reset reason; expecting reason %q", src.ResetReason(ReasonUnknown))
	}

	var port uint16
	err := ns.Do(func() error {
		// A port that was just free: bind, read the port, close.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		for range n {
			_, err := dialer.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("dial a closed port: %w, want ECONNREFUSED", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, src, cookie, 5*time.Second, func(ns *Namespace) bool {
		return ns.Total(KindConnectFailure) >= n && ns.Total(KindResetSent) >= n
	})
	dumpRecords(t, got)

	if f := total(got, KindConnectFailure, errECONNREFUSED); f != n {
		t.Errorf("refused connect failures: %d, want %d", f, n)
	}
	if f := got.Total(KindConnectFailure); f != n {
		t.Errorf("connect failures of any reason: %d, want %d", f, n)
	}
	for _, r := range got.Totals {
		if r.Kind == KindConnectFailure && ConnectFailureReason(r.Code) != "refused" {
			t.Errorf("connect failure code %d named %q", r.Code, ConnectFailureReason(r.Code))
		}
	}
	var sent uint64
	for _, r := range got.Totals {
		if r.Kind != KindResetSent {
			continue
		}
		want := "no_socket"
		if !src.HasResetReason() {
			want = "unknown"
		}
		if name := src.ResetReason(r.Code); name != want {
			t.Errorf("reset sent with reason %q (code %d), want %q", name, r.Code, want)
		}
		sent += r.Count
	}
	if sent != n {
		t.Errorf("resets sent: %d, want %d", sent, n)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if d := detail(got, KindResetSent, func(r Record) bool { return r.LocalPort == port && r.Addr == lo }); d != n {
		t.Errorf("resets sent from port %d to %s: %d, want %d", port, lo, d, n)
	}
	if d := detail(got, KindConnectFailure, func(r Record) bool { return r.RemotePort == port && r.Addr == lo }); d != n {
		t.Errorf("connect failures towards %s:%d: %d, want %d", lo, port, d, n)
	}
	// The clients' side: the resets they received, keyed by the closed
	// port and not by their ephemeral ones (one key, not one per connect).
	if d := detail(got, KindResetReceived, func(r Record) bool { return r.RemotePort == port && r.LocalPort == 0 && r.Addr == lo }); d != n {
		t.Errorf("resets received from %s:%d with no local port: %d, want %d", lo, port, d, n)
	}
}

// TestLingerZeroResets has a server on 127.0.0.2 close N accepted
// connections with SO_LINGER 0: the clients receive N resets attributed to
// the server's address and port.
func TestLingerZeroResets(t *testing.T) {
	const n = 20
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	src, cookie := loadFor(t, ns)

	server := netip.MustParseAddr("127.0.0.2")
	var port uint16
	var clients []net.Conn
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", server.String()+":0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		for range n {
			d := dialer
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
			c, err := d.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			clients = append(clients, c)
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			if err := s.(*net.TCPConn).SetLinger(0); err != nil {
				return err
			}
			s.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, src, cookie, 5*time.Second, func(ns *Namespace) bool {
		return ns.Total(KindResetReceived) >= n
	})
	dumpRecords(t, got)
	if r := got.Total(KindResetReceived); r != n {
		t.Errorf("resets received: %d, want %d", r, n)
	}
	if d := detail(got, KindResetReceived, func(r Record) bool { return r.Addr == server && r.RemotePort == port }); d != n {
		t.Errorf("resets received from %s:%d: %d, want %d", server, port, d, n)
	}
	// The server's side: n resets sent from the listener's port.
	if d := detail(got, KindResetSent, func(r Record) bool { return r.LocalPort == port }); d != n {
		t.Errorf("resets sent from port %d: %d, want %d", port, d, n)
	}
}

// TestSynAckRetransmits builds half-open connections whose SYN-ACKs go to a
// sink (the final ACK never comes) and expects the listener's SYN-ACK
// retransmissions to be counted against its port.
func TestSynAckRetransmits(t *testing.T) {
	const n = 6
	server := fixture.NewNetnsPrefix(t, "tsev-")
	client := fixture.NewNetnsPrefix(t, "tsev-")
	src, cookie := loadFor(t, server)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	set, err := server.SynRecv(ctx, client, fixture.IPv4, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	ports := make(map[uint16]bool)
	for _, l := range set.Listeners() {
		ports[l.Port()] = true
	}
	// The first retransmission is due after 1 s (TCP_TIMEOUT_INIT).
	got := waitFor(t, src, cookie, 6*time.Second, func(ns *Namespace) bool {
		return ns.Total(KindSynAckRetransmit) >= n
	})
	dumpRecords(t, got)
	if r := got.Total(KindSynAckRetransmit); r < n {
		t.Fatalf("SYN-ACK retransmissions: %d, want at least %d (one per half-open connection)", r, n)
	}
	var onListeners uint64
	for _, r := range got.Details {
		if r.Kind != KindSynAckRetransmit {
			continue
		}
		if !ports[r.LocalPort] {
			t.Errorf("SYN-ACK retransmission on port %d, not a listener of the fixture %v", r.LocalPort, set.Listeners())
		}
		if !r.Addr.Is4() || r.Addr.IsLoopback() {
			t.Errorf("SYN-ACK retransmission to %s, want the client's veth address", r.Addr)
		}
		onListeners += r.Count
	}
	if onListeners != got.Total(KindSynAckRetransmit) {
		t.Errorf("details %d != total %d", onListeners, got.Total(KindSynAckRetransmit))
	}
}

// TestFilterAndPrune checks the kernel filter (a source for one namespace
// sees nothing of another), the all-namespaces mode, and Prune.
func TestFilterAndPrune(t *testing.T) {
	a := fixture.NewNetnsPrefix(t, "tsev-")
	b := fixture.NewNetnsPrefix(t, "tsev-")
	onlyA, ca := loadFor(t, a)
	all, _ := loadFor(t, nil)
	cb := cookieOf(t, b)

	refuse := func(ns *fixture.Netns) {
		t.Helper()
		if err := ns.Do(func() error {
			_, err := dialer.Dial("tcp4", "127.0.0.1:1")
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("dial: %w, want ECONNREFUSED", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	refuse(a)
	refuse(b)
	refuse(b)

	gotA := waitFor(t, onlyA, ca, 3*time.Second, func(ns *Namespace) bool { return ns.Total(KindConnectFailure) >= 1 })
	if f := gotA.Total(KindConnectFailure); f != 1 {
		t.Errorf("filtered source, namespace a: %d failures, want 1", f)
	}
	snap, err := onlyA.Read()
	if err != nil {
		t.Fatal(err)
	}
	for c := range snap.Namespaces {
		if c != ca {
			t.Errorf("filtered source has records of namespace cookie %d (a is %d)", c, ca)
		}
	}
	gotB := waitFor(t, all, cb, 3*time.Second, func(ns *Namespace) bool { return ns.Total(KindConnectFailure) >= 2 })
	if f := gotB.Total(KindConnectFailure); f != 2 {
		t.Errorf("unfiltered source, namespace b: %d failures, want 2", f)
	}
	if f := waitFor(t, all, ca, time.Second, func(ns *Namespace) bool { return ns.Total(KindConnectFailure) >= 1 }).Total(KindConnectFailure); f != 1 {
		t.Errorf("unfiltered source, namespace a: %d failures, want 1", f)
	}

	removed, err := all.Prune(func(c uint64) bool { return c != cb })
	if err != nil {
		t.Fatal(err)
	}
	if removed == 0 {
		t.Error("Prune removed nothing")
	}
	snap, err = all.Read()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Namespaces[cb] != nil {
		t.Errorf("namespace b still has records after Prune: %+v", snap.Namespaces[cb])
	}
	if snap.Namespaces[ca] == nil {
		t.Error("Prune removed namespace a's records too")
	}
	if snap.Drops != (Drops{}) {
		t.Errorf("drops %+v, want none", snap.Drops)
	}
}

// TestNoReasonVariant loads the tcp_send_reset program meant for kernels
// whose tracepoint has no reason argument (before 6.10) and checks that it
// counts resets with ReasonUnknown; and that this kernel's BTF says whether
// the argument exists.
func TestNoReasonVariant(t *testing.T) {
	const n = 5
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	cookie := cookieOf(t, ns)
	src, err := Open(SourceOptions{Netns: cookie, noReason: true})
	if err != nil {
		t.Fatalf("Open (no-reason variant): %v", err)
	}
	defer src.Close()
	if src.HasResetReason() {
		t.Error("no-reason variant reports reasons")
	}
	if err := ns.Do(func() error {
		for range n {
			if _, err := dialer.Dial("tcp4", "127.0.0.1:1"); !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("dial: %w, want ECONNREFUSED", err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, src, cookie, 3*time.Second, func(ns *Namespace) bool { return ns.Total(KindResetSent) >= n })
	if c := total(got, KindResetSent, ReasonUnknown); c != n {
		dumpRecords(t, got)
		t.Errorf("resets sent with ReasonUnknown: %d, want %d", c, n)
	}
	if name := src.ResetReason(ReasonUnknown); name != "unknown" {
		t.Errorf("ReasonUnknown named %q", name)
	}
}

// TestFullMapDropsAndCounts fills the details map (16384 entries) with
// refused connects to distinct closed ports (three detail keys each: the
// failure, the reset sent and the reset received): the events that find no
// room are dropped and counted, never block, and the per-namespace totals
// stay exact.
func TestFullMapDropsAndCounts(t *testing.T) {
	const n = 6000
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	src, cookie := loadFor(t, ns)
	err := ns.Do(func() error {
		for i := range n {
			port := 10000 + i
			if _, err := dialer.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("dial port %d: %w, want ECONNREFUSED", port, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Read()
	if err != nil {
		t.Fatal(err)
	}
	got := snap.Namespaces[cookie]
	if got == nil {
		t.Fatal("no records")
	}
	if f := got.Total(KindConnectFailure); f != n {
		t.Errorf("connect failures (totals map): %d, want exactly %d", f, n)
	}
	if r := got.Total(KindResetSent); r != n {
		t.Errorf("resets sent (totals map): %d, want exactly %d", r, n)
	}
	if len(got.Details) > 16384 {
		t.Errorf("%d detail entries, more than the map's 16384", len(got.Details))
	}
	var detailCount uint64
	for _, r := range got.Details {
		detailCount += r.Count
	}
	if snap.Drops.Details == 0 {
		t.Fatalf("no details dropped with %d entries in the map", len(got.Details))
	}
	if snap.Drops.Totals != 0 {
		t.Errorf("totals dropped: %d", snap.Drops.Totals)
	}
	// Every detail event either found its entry or was counted as dropped.
	want := got.Total(KindConnectFailure) + got.Total(KindResetSent) + got.Total(KindResetReceived)
	if detailCount+snap.Drops.Details != want {
		t.Errorf("details %d + dropped %d = %d, want the %d events of the totals", detailCount, snap.Drops.Details, detailCount+snap.Drops.Details, want)
	}
	t.Logf("%d detail entries, %d events dropped", len(got.Details), snap.Drops.Details)
}

// TestResetKeysKeepNoEphemeralPort checks that resets sent on ephemeral
// ports share their detail keys instead of taking one each (which filled the
// details map under connection churn): N clients that close first in a
// namespace without TIME_WAIT lose their sockets, so the server's data
// that follows draws N resets with reason no_socket answering a segment
// other than a SYN; and N clients that close with SO_LINGER 0 send N resets
// on connections they opened. All are keyed by the peer and the reason alone
// (local port 0), not one entry per client port.
func TestResetKeysKeepNoEphemeralPort(t *testing.T) {
	const n = 20
	ns := fixture.NewNetnsPrefix(t, "tsev-")
	if err := ns.Sysctl("net.ipv4.tcp_max_tw_buckets", "0"); err != nil {
		t.Fatal(err)
	}
	src, cookie := loadFor(t, ns)
	server := netip.MustParseAddr("127.0.0.2")
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", server.String()+":0")
		if err != nil {
			return err
		}
		defer ln.Close()
		d := dialer
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
		buf := make([]byte, 1)
		for i := range 2 * n {
			c, err := d.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			if i >= n {
				// The client aborts: a reset on an active connection.
				if err := c.(*net.TCPConn).SetLinger(0); err != nil {
					return err
				}
				c.Close()
				s.Read(buf)
				s.Close()
				continue
			}
			// The client closes first; once its FIN has arrived its
			// socket is gone (no TIME_WAIT), and the server's byte
			// draws a reset from no socket.
			c.Close()
			if _, err := s.Read(buf); err == nil {
				return errors.New("server read data, want EOF")
			}
			time.Sleep(5 * time.Millisecond)
			if _, err := s.Write([]byte{1}); err != nil {
				return fmt.Errorf("server write: %w", err)
			}
			s.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, src, cookie, 5*time.Second, func(ns *Namespace) bool { return ns.Total(KindResetSent) >= 2*n })
	dumpRecords(t, got)
	if r := got.Total(KindResetSent); r != 2*n {
		t.Errorf("resets sent: %d, want %d", r, 2*n)
	}
	keys, reasons := 0, map[uint32]bool{}
	for _, r := range got.Totals {
		if r.Kind == KindResetSent {
			reasons[r.Code] = true
		}
	}
	for _, r := range got.Details {
		if r.Kind != KindResetSent {
			continue
		}
		keys++
		if r.LocalPort != 0 {
			t.Errorf("reset sent keyed by local port %d (%d resets), want 0: the port is ephemeral", r.LocalPort, r.Count)
		}
	}
	// Every reset goes to the server's address (from no socket, the
	// reset answers the server's segment): one key per reason.
	if keys != len(reasons) {
		t.Errorf("%d detail keys of resets sent, want one per reason (%d)", keys, len(reasons))
	}
	if d := detail(got, KindResetSent, func(r Record) bool { return r.Addr == server }); d != 2*n {
		t.Errorf("resets sent to the server %s: %d, want %d", server, d, 2*n)
	}
}
