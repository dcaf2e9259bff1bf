package collector

import (
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// netipZero is the invalid address of the "other" peer groups.
var netipZero netip.Addr

// maxClientListeners is the most listeners per target whose clients are
// reported one by one (most connections first); the clients of the rest
// fold into one series per family with address, port and client "other".
const maxClientListeners = 50

// healthDescs are the connection-health metric families.
type healthDescs struct {
	maxPeers, maxClients int
	foldedDesc           *prometheus.Desc

	synRetrans                        *prometheus.Desc
	peerSockets, peerRetrans, peerAge *prometheus.Desc
	clientConns                       *prometheus.Desc
	selfConnected                     *prometheus.Desc
}

func newHealthDescs(d func(name, help string, labels ...string) *prometheus.Desc, folded *prometheus.Desc, maxPeers, maxClients int) healthDescs {
	peer := []string{"stall", "family", "remote_address"}
	return healthDescs{
		maxPeers:   maxPeers,
		maxClients: maxClients,
		foldedDesc: folded,
		synRetrans: d("listener_syn_recv_retransmitted", "Half-open connections (SYN_RECV request sockets) of a listening address whose SYN-ACK was retransmitted at least once: the client never answered it.", "family", "address", "port"),
		peerSockets: d("peer_stalled_sockets", "Stalled sockets towards a remote address, from the latest full sample: stall=\"retransmit\" for a running retransmission timer with at least --detect.peer.retransmits consecutive retransmissions, \"zero_window\" for zero-window probing.",
			peer...),
		peerRetrans: d("peer_stalled_max_retransmissions", "Highest retransmission (stall=\"retransmit\") or zero-window probe (stall=\"zero_window\") count among the stalled sockets towards a remote address.", peer...),
		peerAge:     d("peer_stalled_seconds", "How long the exporter has seen sockets towards a remote address stalled, over consecutive full samples (0 for the \"other\" series).", peer...),
		clientConns: d("listener_client_connections", "Live connections (ESTABLISHED and SYN_RECV) of a listening address by client address, from the latest full sample: the --collector.clients.max largest clients of each of the 50 busiest listeners, the rest in client \"other\".",
			"family", "address", "port", "client"),
		selfConnected: d("self_connected_sockets", "Sockets connected to themselves (same local and remote address and port), from the latest full sample."),
	}
}

func (h *healthDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{h.synRetrans, h.peerSockets, h.peerRetrans, h.peerAge, h.clientConns, h.selfConnected} {
		ch <- d
	}
}

// foldPeers keeps the limit groups towards named peers with the most
// sockets (the sample's order) and sums the rest, with the sample's own
// "other" groups, into one group per stall and family.
func foldPeers(gs []detect.PeerGroup, sampleFolded, limit int) (kept, other []detect.PeerGroup, folded int) {
	var sums [2][2]detect.PeerGroup
	var present [2][2]bool
	add := func(g detect.PeerGroup) {
		i := familyIndex(g.Family)
		o := &sums[g.Stall][i]
		o.Stall, o.Family = g.Stall, g.Family
		o.Sockets += g.Sockets
		o.MaxRetrans = max(o.MaxRetrans, g.MaxRetrans)
		present[g.Stall][i] = true
	}
	folded = sampleFolded
	for _, g := range gs {
		switch {
		case !g.Remote.IsValid():
			add(g)
		case len(kept) < limit:
			kept = append(kept, g)
		default:
			add(g)
			folded++
		}
	}
	for st := range sums {
		for f := range sums[st] {
			if present[st][f] {
				other = append(other, sums[st][f])
			}
		}
	}
	return kept, other, folded
}

// series emits, through gauge, the connection-health series of a view's
// full sample.
func (h *healthDescs) series(gauge func(d *prometheus.Desc, v float64, l ...string), full *Sample) {
	if full == nil {
		return
	}
	kept, other, folded := foldPeers(full.Peers, full.PeersFolded, h.maxPeers)
	for _, g := range kept {
		l := []string{g.Stall.String(), g.Family.String(), g.Remote.String()}
		gauge(h.peerSockets, float64(g.Sockets), l...)
		gauge(h.peerRetrans, float64(g.MaxRetrans), l...)
		gauge(h.peerAge, full.Time.Sub(g.Since).Seconds(), l...)
	}
	for _, g := range other {
		l := []string{g.Stall.String(), g.Family.String(), "other"}
		gauge(h.peerSockets, float64(g.Sockets), l...)
		gauge(h.peerRetrans, float64(g.MaxRetrans), l...)
		gauge(h.peerAge, 0, l...)
	}
	gauge(h.foldedDesc, float64(folded), "peers")

	ls := BusiestListeners(full.Clients)
	var rest familySums[detect.ListenerClients]
	cfolded := 0
	for i, lc := range ls {
		if i >= maxClientListeners {
			o := rest.of(lc.Family)
			o.Family = lc.Family
			o.Connections += lc.Connections
			cfolded += lc.Clients
			continue
		}
		fn, addr, port := lc.Family.String(), lc.Addr.String(), strconv.Itoa(int(lc.Port))
		top := lc.Top[:min(len(lc.Top), h.maxClients)]
		sum := uint64(0)
		for _, c := range top {
			gauge(h.clientConns, float64(c.Count), fn, addr, port, c.Addr.String())
			sum += c.Count
		}
		if n := lc.Connections - sum; n > 0 {
			gauge(h.clientConns, float64(n), fn, addr, port, "other")
		}
		cfolded += lc.Clients - len(top)
	}
	for _, o := range rest.list() {
		gauge(h.clientConns, float64(o.Connections), o.Family.String(), "other", "other", "other")
	}
	gauge(h.foldedDesc, float64(cfolded), "clients")
	gauge(h.selfConnected, float64(full.SelfConnected))
}

// otherSeries appends the connection-health series of the folded target:
// the sums of the folded views' full samples.
func (h *healthDescs) otherSeries(gauge func(d *prometheus.Desc, v float64, l ...string), views []*View) {
	var peers []detect.PeerGroup
	var clients familySums[detect.ListenerClients]
	var self uint64
	nPeers, nClients := 0, 0
	seen := false
	for _, v := range views {
		smp := v.Full
		if smp == nil || !v.Ready {
			continue
		}
		seen = true
		for _, g := range smp.Peers {
			if g.Remote.IsValid() {
				nPeers++
			}
			g.Remote = netipZero
			peers = append(peers, g)
		}
		nPeers += smp.PeersFolded
		for _, lc := range smp.Clients {
			o := clients.of(lc.Family)
			o.Family = lc.Family
			o.Connections += lc.Connections
			nClients += lc.Clients
		}
		self += smp.SelfConnected
	}
	if !seen {
		return
	}
	_, other, _ := foldPeers(peers, 0, 0)
	for _, g := range other {
		l := []string{g.Stall.String(), g.Family.String(), "other"}
		gauge(h.peerSockets, float64(g.Sockets), l...)
		gauge(h.peerRetrans, float64(g.MaxRetrans), l...)
		gauge(h.peerAge, 0, l...)
	}
	gauge(h.foldedDesc, float64(nPeers), "peers")
	for _, o := range clients.list() {
		gauge(h.clientConns, float64(o.Connections), o.Family.String(), "other", "other", "other")
	}
	gauge(h.foldedDesc, float64(nClients), "clients")
	gauge(h.selfConnected, float64(self))
}
