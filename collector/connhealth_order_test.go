package collector

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
)

func TestBusiestListeners(t *testing.T) {
	key := func(port uint16) detect.ListenerKey {
		return detect.ListenerKey{Family: diag.AFInet, Addr: netip.MustParseAddr("10.0.0.1"), Port: port}
	}
	in := []detect.ListenerClients{
		{ListenerKey: key(9000), Connections: 5},
		{ListenerKey: key(8080), Connections: 7},
		{ListenerKey: key(443), Connections: 5},
		{ListenerKey: key(80), Connections: 0},
	}
	orig := slices.Clone(in)
	var got []uint16
	for _, lc := range BusiestListeners(in) {
		got = append(got, lc.Port)
	}
	// Most connections first; equal counts by address and port.
	if want := []uint16{8080, 443, 9000, 80}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if !slices.EqualFunc(in, orig, func(x, y detect.ListenerClients) bool { return x.ListenerKey == y.ListenerKey }) {
		t.Errorf("the input was reordered: %v", in)
	}
}
