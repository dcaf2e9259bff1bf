package collector

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

func timed(s diag.Socket, timer diag.Timer, retrans uint8, inode uint32) diag.Socket {
	s.Timer, s.Retrans, s.Inode = timer, retrans, inode
	return s
}

// healthSockets is a namespace with a listener on :80, three clients (one
// with four connections, one of them half-open and retransmitted), two
// peers with stalled outbound sockets and a self-connected socket.
func healthSockets() []diag.Socket {
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	dead, slow := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	return []diag.Socket{
		listener(diag.AFInet, v4any, 80, 0, 128),
		sock(diag.AFInet, diag.Established, v4lo, 80, a, 50001),
		sock(diag.AFInet, diag.Established, v4lo, 80, a, 50002),
		sock(diag.AFInet, diag.Established, v4lo, 80, a, 50003),
		timed(sock(diag.AFInet, diag.SynRecv, v4lo, 80, a, 50004), diag.TimerRetransmit, 2, 0),
		sock(diag.AFInet, diag.SynRecv, v4lo, 80, b, 50005),
		sock(diag.AFInet, diag.Established, v4lo, 80, c, 50006),
		// Not live: a CLOSE_WAIT connection of the listener.
		sock(diag.AFInet, diag.CloseWait, v4lo, 80, c, 50007),
		// Stalled towards dead: two at or above the threshold, one below.
		timed(sock(diag.AFInet, diag.Established, v4lo, 40001, dead, 443), diag.TimerRetransmit, 6, 11),
		timed(sock(diag.AFInet, diag.FinWait1, v4lo, 40002, dead, 443), diag.TimerRetransmit, 4, 12),
		timed(sock(diag.AFInet, diag.Established, v4lo, 40003, dead, 443), diag.TimerRetransmit, 3, 13),
		// Zero window towards slow.
		timed(sock(diag.AFInet, diag.Established, v4lo, 40004, slow, 9000), diag.TimerZeroWindow, 0, 14),
		// A keepalive timer is no stall.
		timed(sock(diag.AFInet, diag.Established, v4lo, 40005, slow, 9000), diag.TimerKeepalive, 5, 15),
		// Self-connected, and its TIME_WAIT twin which is not.
		timed(sock(diag.AFInet, diag.Established, v4lo, 40006, v4lo, 40006), diag.TimerNone, 0, 16),
		sock(diag.AFInet, diag.TimeWait, v4lo, 40007, v4lo, 40007),
	}
}

func TestConnHealthSample(t *testing.T) {
	looked := 0
	lookup := func(inodes []uint64, _ time.Duration) (map[uint64][]procnet.Process, bool, error) {
		looked++
		out := map[uint64][]procnet.Process{}
		for _, i := range inodes {
			if i == 11 || i == 16 {
				out[i] = []procnet.Process{{PID: 42, Comm: "app"}}
			}
		}
		return out, true, nil
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(healthSockets()), LookupOwners: lookup})
	smp, err := s.Sample(Full)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(smp.Listeners[0].SynRecv, smp.Listeners[0].SynRecvRetransmitted), "2 1"; got != want {
		t.Errorf("SYN_RECV, retransmitted = %s, want %s", got, want)
	}
	if len(smp.Clients) != 1 {
		t.Fatalf("clients: %+v", smp.Clients)
	}
	lc := smp.Clients[0]
	if got, want := fmt.Sprint(lc.ListenerKey, lc.Connections, lc.Clients, lc.Top, lc.Other), "{ipv4 0.0.0.0 80} 6 3 [{10.0.0.1 4} {10.0.0.2 1} {10.0.0.3 1}] 0"; got != want {
		t.Errorf("clients\n got %s\nwant %s", got, want)
	}
	if len(smp.Peers) != 2 {
		t.Fatalf("peers: %+v", smp.Peers)
	}
	p := smp.Peers[0]
	if got, want := strings.TrimSpace(fmt.Sprintln(p.Stall, p.Remote, p.Sockets, p.MaxRetrans, p.LocalPorts, p.RemotePorts, p.PID, p.Command, p.Since.Equal(smp.Time))),
		"retransmit 10.9.0.1 2 6 [40001 40002] [443] 42 app true"; got != want {
		t.Errorf("dead peer\n got %s\nwant %s", got, want)
	}
	if p := smp.Peers[1]; p.Stall != detect.StallZeroWindow || p.Remote.String() != "10.9.0.2" || p.Sockets != 1 || p.PID != 0 {
		t.Errorf("slow peer %+v", p)
	}
	if smp.SelfConnected != 1 || len(smp.SelfConnects) != 1 || smp.SelfConnects[0].Port != 40006 || smp.SelfConnects[0].Command != "app" {
		t.Errorf("self-connects %d %+v", smp.SelfConnected, smp.SelfConnects)
	}

	// A later full sample keeps the peers' first-seen time, a rare one
	// gathers none of it, and owners come from the cache.
	first := smp.Time
	time.Sleep(5 * time.Millisecond)
	smp, err = s.Sample(Full)
	if err != nil {
		t.Fatal(err)
	}
	if !smp.Peers[0].Since.Equal(first) || smp.Peers[0].Command != "app" || looked != 1 {
		t.Errorf("second sample: since %v (want %v), command %q, %d lookups", smp.Peers[0].Since, first, smp.Peers[0].Command, looked)
	}
	rare, err := s.Sample(Rare)
	if err != nil {
		t.Fatal(err)
	}
	if rare.Peers != nil || rare.Clients != nil || rare.SelfConnected != 0 {
		t.Errorf("rare sample has connection health: %+v %+v %d", rare.Peers, rare.Clients, rare.SelfConnected)
	}
	// The detectors read the latest full sample's.
	fs := s.Findings()
	alerts := map[string]int{}
	for _, f := range fs {
		alerts[f.Alert]++
	}
	if alerts[detect.AlertPeerUnresponsive] != 1 || alerts[detect.AlertSelfConnect] != 1 || alerts[detect.AlertPeerZeroWindow] != 0 {
		t.Errorf("findings after a rare sample: %v", alerts)
	}

	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{MaxClients: 1})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	want := `
# HELP tcpstate_listener_client_connections Live connections (ESTABLISHED and SYN_RECV) of a listening address by client address, from the latest full sample: the --collector.clients.max largest clients of each of the 50 busiest listeners, the rest in client "other".
# TYPE tcpstate_listener_client_connections gauge
tcpstate_listener_client_connections{address="0.0.0.0",client="10.0.0.1",family="ipv4",port="80"} 4
tcpstate_listener_client_connections{address="0.0.0.0",client="other",family="ipv4",port="80"} 2
# HELP tcpstate_peer_stalled_sockets Stalled sockets towards a remote address, from the latest full sample: stall="retransmit" for a running retransmission timer with at least --detect.peer.retransmits consecutive retransmissions, "zero_window" for zero-window probing.
# TYPE tcpstate_peer_stalled_sockets gauge
tcpstate_peer_stalled_sockets{family="ipv4",remote_address="10.9.0.1",stall="retransmit"} 2
tcpstate_peer_stalled_sockets{family="ipv4",remote_address="10.9.0.2",stall="zero_window"} 1
# HELP tcpstate_peer_stalled_max_retransmissions Highest retransmission (stall="retransmit") or zero-window probe (stall="zero_window") count among the stalled sockets towards a remote address.
# TYPE tcpstate_peer_stalled_max_retransmissions gauge
tcpstate_peer_stalled_max_retransmissions{family="ipv4",remote_address="10.9.0.1",stall="retransmit"} 6
tcpstate_peer_stalled_max_retransmissions{family="ipv4",remote_address="10.9.0.2",stall="zero_window"} 0
# HELP tcpstate_self_connected_sockets Sockets connected to themselves (same local and remote address and port), from the latest full sample.
# TYPE tcpstate_self_connected_sockets gauge
tcpstate_self_connected_sockets 1
# HELP tcpstate_folded_series Entries folded into an "other" series in the latest sample because a --collector.*.max limit was reached.
# TYPE tcpstate_folded_series gauge
tcpstate_folded_series{kind="clients"} 2
tcpstate_folded_series{kind="closewait"} 0
tcpstate_folded_series{kind="destinations"} 0
tcpstate_folded_series{kind="listeners"} 0
tcpstate_folded_series{kind="peers"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_listener_client_connections", "tcpstate_peer_stalled_sockets",
		"tcpstate_peer_stalled_max_retransmissions", "tcpstate_self_connected_sockets", "tcpstate_folded_series"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestConnHealthBounds fills the peer and client tables past their bounds:
// the overflow lands in "other" and in the listener's total, and the
// stored and exported series stay bounded.
func TestConnHealthBounds(t *testing.T) {
	socks := []diag.Socket{listener(diag.AFInet, v4any, 80, 0, 128)}
	for i := range maxPeerGroups + 10 {
		remote := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		socks = append(socks, timed(sock(diag.AFInet, diag.Established, v4lo, 40000, remote, 443), diag.TimerRetransmit, 5, 0))
	}
	for i := range maxClientKeys + 7 {
		remote := netip.AddrFrom4([4]byte{10, 2 + byte(i>>16), byte(i >> 8), byte(i)})
		socks = append(socks, sock(diag.AFInet, diag.Established, v4lo, 80, remote, 50000))
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), LookupOwners: noLookup(t)})
	s.dumps.agg.health.owners[0] = procnet.Process{} // inode 0 is never looked up
	smp, err := s.Sample(Full)
	if err != nil {
		t.Fatal(err)
	}
	var named, other uint64
	for _, g := range smp.Peers {
		if g.Remote.IsValid() {
			named += g.Sockets
		} else {
			other += g.Sockets
		}
	}
	if len(smp.Peers) != StoredPeers+1 || named != StoredPeers || other != maxPeerGroups+10-StoredPeers || smp.PeersFolded != maxPeerGroups-StoredPeers+1 {
		t.Errorf("peers: %d stored, %d named sockets, %d other, %d folded", len(smp.Peers), named, other, smp.PeersFolded)
	}
	lc := smp.Clients[0]
	if lc.Connections != maxClientKeys+7 || lc.Clients != maxClientKeys || len(lc.Top) != StoredClients || smp.ClientsUntracked != 7 {
		t.Errorf("clients: %d connections, %d clients, %d top, %d untracked", lc.Connections, lc.Clients, len(lc.Top), smp.ClientsUntracked)
	}
	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	if n, err := testutil.GatherAndCount(reg, "tcpstate_peer_stalled_sockets"); err != nil || n != 21 {
		t.Errorf("%d peer series (err %v), want 20 and other", n, err)
	}
	if n, err := testutil.GatherAndCount(reg, "tcpstate_listener_client_connections"); err != nil || n != 4 {
		t.Errorf("%d client series (err %v), want 3 and other", n, err)
	}
}

// TestConnHealthAllocs holds the aggregation of a dump with stalled,
// inbound and self-connected sockets to zero allocations once the tables
// have grown.
func TestConnHealthAllocs(t *testing.T) {
	socks := append(benchSockets(2000), healthSockets()...)
	allocs, a := dumpAllocs(socks)
	if allocs != 0 {
		t.Errorf("%v allocations per dump of %d sockets, want 0", allocs, len(socks))
	}
	if len(a.health.peers) != 2 || len(a.health.clientKeys) == 0 || a.health.selfTotal != 1 {
		t.Errorf("the dump did not exercise the connection-health paths: %d peers, %d clients, %d self", len(a.health.peers), len(a.health.clientKeys), a.health.selfTotal)
	}
}

// TestConnHealthFoldedNamespaces folds two namespaces into the "other"
// target: their connection health is summed into "other" series and
// counted in tcpstate_folded_series.
func TestConnHealthFoldedNamespaces(t *testing.T) {
	host := NewSampler(SamplerOptions{Dial: fakeDial([]diag.Socket{listener(diag.AFInet, v4any, 22, 0, 1)})})
	a := NewSampler(SamplerOptions{Dial: fakeDial(healthSockets()), LookupOwners: noLookup(t)})
	b := NewSampler(SamplerOptions{Dial: fakeDial(healthSockets()), LookupOwners: noLookup(t)})
	for _, s := range []*Sampler{host, a, b} {
		s.dumps.agg.health.owners[11], s.dumps.agg.health.owners[14], s.dumps.agg.health.owners[16] = procnet.Process{}, procnet.Process{}, procnet.Process{}
		if _, err := s.Sample(Full); err != nil {
			t.Fatal(err)
		}
	}
	e := NewExporter(func() []Target {
		return []Target{{Sampler: host, Labels: []string{"host", "", ""}}, {Sampler: a, Labels: []string{"1", "", ""}}, {Sampler: b, Labels: []string{"2", "", ""}}}
	}, ExporterOptions{TargetLabels: []string{"netns", "namespace", "pod"}, MaxTargets: 1})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	want := `
# HELP tcpstate_listener_client_connections Live connections (ESTABLISHED and SYN_RECV) of a listening address by client address, from the latest full sample: the --collector.clients.max largest clients of each of the 50 busiest listeners, the rest in client "other".
# TYPE tcpstate_listener_client_connections gauge
tcpstate_listener_client_connections{address="other",client="other",family="ipv4",namespace="",netns="other",pod="",port="other"} 12
# HELP tcpstate_peer_stalled_sockets Stalled sockets towards a remote address, from the latest full sample: stall="retransmit" for a running retransmission timer with at least --detect.peer.retransmits consecutive retransmissions, "zero_window" for zero-window probing.
# TYPE tcpstate_peer_stalled_sockets gauge
tcpstate_peer_stalled_sockets{family="ipv4",namespace="",netns="other",pod="",remote_address="other",stall="retransmit"} 4
tcpstate_peer_stalled_sockets{family="ipv4",namespace="",netns="other",pod="",remote_address="other",stall="zero_window"} 2
# HELP tcpstate_self_connected_sockets Sockets connected to themselves (same local and remote address and port), from the latest full sample.
# TYPE tcpstate_self_connected_sockets gauge
tcpstate_self_connected_sockets{namespace="",netns="host",pod=""} 0
tcpstate_self_connected_sockets{namespace="",netns="other",pod=""} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_listener_client_connections", "tcpstate_peer_stalled_sockets", "tcpstate_self_connected_sockets"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	folded := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tcpstate_folded_series" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["netns"] == "other" {
				folded[l["kind"]] = m.GetGauge().GetValue()
			}
		}
	}
	if folded["peers"] != 4 || folded["clients"] != 6 {
		t.Errorf("folded series of the other target: %v, want 4 peers and 6 clients", folded)
	}
}

// TestConnHealthUntrackedOnce fills the client table and then opens
// connections from further clients to three listeners of one port (two
// IPv4 addresses and an IPv6 wildcard): each listener's total gets its own
// untracked connections only, and ClientsUntracked counts each connection
// once (the table of untracked connections by local port alone added a
// port's overflow to every listener on that port).
func TestConnHealthUntrackedOnce(t *testing.T) {
	a1, a2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	socks := []diag.Socket{
		listener(diag.AFInet, a1, 80, 0, 128),
		listener(diag.AFInet, a2, 80, 0, 128),
		listener(diag.AFInet6, netip.IPv6Unspecified(), 80, 0, 128),
	}
	client := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2 + byte(i>>16), byte(i >> 8), byte(i)}) }
	for i := range maxClientKeys {
		socks = append(socks, sock(diag.AFInet, diag.Established, a1, 80, client(i), 50000))
	}
	add := func(local netip.Addr, fam diag.Family, n int) {
		for i := range n {
			remote := client(maxClientKeys + i)
			if fam == diag.AFInet6 {
				remote = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
			}
			socks = append(socks, sock(fam, diag.Established, local, 80, remote, 50000))
		}
	}
	add(a1, diag.AFInet, 7)
	add(a2, diag.AFInet, 3)
	add(netip.IPv6Loopback(), diag.AFInet6, 5)
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), LookupOwners: noLookup(t)})
	for range 2 { // the second dump reuses the tables
		smp, err := s.Sample(Full)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, lc := range smp.Clients {
			got = append(got, fmt.Sprint(lc.ListenerKey, lc.Connections, lc.Clients))
		}
		want := []string{
			fmt.Sprint("{ipv4 10.0.0.1 80} ", maxClientKeys+7, " ", maxClientKeys),
			"{ipv4 10.0.0.2 80} 3 0",
			"{ipv6 :: 80} 5 0",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || smp.ClientsUntracked != 15 {
			t.Errorf("listeners %q, untracked %d; want %q, 15", got, smp.ClientsUntracked, want)
		}
	}
}
