package collector

import (
	"cmp"
	"slices"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// BusiestListeners returns a copy of a sample's client counts ordered most
// connections first, then by listening address: the order in which
// listeners are reported in tcpstate_listener_client_connections (the
// first ones, the rest folded) and listed by the snapshot.
func BusiestListeners(ls []detect.ListenerClients) []detect.ListenerClients {
	out := slices.Clone(ls)
	slices.SortStableFunc(out, func(x, y detect.ListenerClients) int {
		if c := cmp.Compare(y.Connections, x.Connections); c != 0 {
			return c
		}
		return x.ListenerKey.Compare(y.ListenerKey)
	})
	return out
}
