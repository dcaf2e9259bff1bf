//go:build linux

package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
)

func TestSnapshotConnHealthSections(t *testing.T) {
	now := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	lk := detect.ListenerKey{Family: diag.AFInet, Addr: netip.MustParseAddr("0.0.0.0"), Port: 8080}
	snap := &snapshot{
		Time: now, Dumps: 1, RetransMin: 4,
		Listener: []detect.Listener{{ListenerKey: lk, Sockets: 1, QueueLimit: 128, SynRecv: 3, SynRecvRetransmitted: 2}},
		Full: &collector.Sample{
			Time: now,
			Peers: []detect.PeerGroup{
				{Stall: detect.StallRetransmit, Family: diag.AFInet, Remote: netip.MustParseAddr("10.9.0.1"), Sockets: 5, MaxRetrans: 6,
					Since: now.Add(-12 * time.Second), LocalPorts: []uint16{40001, 40002}, RemotePorts: []uint16{443}, PID: 42, Command: "app"},
				{Stall: detect.StallZeroWindow, Family: diag.AFInet, Sockets: 2, Since: now},
			},
			Clients: []detect.ListenerClients{{ListenerKey: lk, Connections: 330, Clients: 11,
				Top: []detect.ClientCount{{Addr: netip.MustParseAddr("10.2.0.50"), Count: 300}, {Addr: netip.MustParseAddr("10.2.0.10"), Count: 3}}}},
			SelfConnected: 1,
			SelfConnects:  []detect.SelfConnectedSocket{{Family: diag.AFInet, Addr: netip.MustParseAddr("127.0.0.1"), Port: 40004}},
		},
	}
	var b bytes.Buffer
	if err := snap.write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"Stalled peers (retransmission timer with at least 4 RTO retransmissions, or zero-window probing): 2\n",
		"retransmit   ipv4    10.9.0.1  5        6            12s       40001,40002  443           app/42",
		"zero_window  ipv4    other     2        0            0s        -            -             -",
		"ipv4    0.0.0.0  8080  330          11       10.2.0.50  300                 90%",
		"Self-connected sockets (same local and remote address and port): 1\n",
		"ipv4    127.0.0.1  40004  -",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if f := rowFields(out, "ipv4"); strings.Join(f, " ") != "ipv4 0.0.0.0 8080 0 128 0% 3 1 2" {
		t.Errorf("listener at risk row %v, want SYN-ACK retransmitted 2 last", f)
	}
}
