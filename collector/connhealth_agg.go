package collector

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// Connection health, gathered in full dumps from the fields every socket
// carries (idiag_timer, idiag_retrans and the addresses): stalled sockets
// by peer, live connections of each listener by client, and
// self-connected sockets. ESTABLISHED sockets are only in full dumps, so
// rare dumps gather none of it and the detectors read the latest full
// sample's.
//
// Memory is bounded whatever the number of sockets: at most
// maxPeerGroups peers (the sockets towards further peers count in one
// "other" group per stall and family) and maxClientKeys (listener address,
// client) pairs (further connections count per local address and port, in
// the listener's total but towards no client, for at most
// maxUntrackedLocals of those); the tables are cleared, not reallocated,
// between dumps, so the per-socket path allocates nothing.
const (
	maxPeerGroups = 4096
	// StoredPeers is the most peer groups a Sample keeps (most sockets
	// first); the rest fold into the "other" groups.
	StoredPeers   = 100
	maxClientKeys = 1 << 16
	// maxUntrackedLocals bounds the local addresses and ports whose
	// connections beyond maxClientKeys are counted; connections beyond
	// both count in Sample.ClientsUntracked only.
	maxUntrackedLocals = 1 << 14
	// StoredClients is the most clients a Sample keeps per listener.
	StoredClients = 10
	// StoredSelfConnects is the most self-connected sockets a Sample
	// lists; Sample.SelfConnected counts them all.
	StoredSelfConnects = 64
	// maxOwnerCache bounds the remembered owners of stalled and
	// self-connected sockets, by inode.
	maxOwnerCache = 1024
	// maxHealthLookups bounds the inodes one owner lookup asks for;
	// maxPeerLookups the peer groups (most stalled sockets first) whose
	// owner is looked up.
	maxHealthLookups = 64
	maxPeerLookups   = 16
)

type peerKey struct {
	stall detect.Stall
	fam   diag.Family
	addr  [16]byte
}

type peerAgg struct {
	sockets    uint64
	maxRetrans uint8
	nl, nr     uint8
	lports     [detect.MaxPeerPorts]uint16
	rports     [detect.MaxPeerPorts]uint16
	inode      uint32
}

// addPort adds p to the first n entries of ps if absent and there is room.
func addPort(ps *[detect.MaxPeerPorts]uint16, n *uint8, p uint16) {
	for _, q := range ps[:*n] {
		if q == p {
			return
		}
	}
	if int(*n) < len(ps) {
		ps[*n] = p
		*n++
	}
}

func (g *peerAgg) add(s *diag.Socket) {
	g.sockets++
	g.maxRetrans = max(g.maxRetrans, s.Retrans)
	addPort(&g.lports, &g.nl, s.SrcPort)
	addPort(&g.rports, &g.nr, s.DstPort)
	if g.inode == 0 {
		g.inode = s.Inode
	}
}

// clientKey has no padding (fam is widened to 16 bits), so that the map
// hashes and compares it as one block of memory.
type clientKey struct {
	fam           uint16
	port          uint16
	local, remote [16]byte
}

// untrackedFam marks, in the client table, the key of a local address
// and port that counts the connections of clients beyond maxClientKeys
// (remote zero).
const untrackedFam = 1 << 15

// healthAgg is the aggregator's connection-health part.
type healthAgg struct {
	on         bool
	now        time.Time
	retransMin uint8

	peerIdx   map[peerKey]int32
	peers     []peerAgg
	peerKeys  []peerKey
	peerOther [2][2]peerAgg // by stall and family
	// since holds when each peer group was first seen stalled, over the
	// consecutive full dumps that saw it; next is filled by this dump.
	since, next map[peerKey]time.Time

	// clientIdx indexes clientKeys and clientCounts: one map lookup per
	// inbound connection. Once it holds maxClientKeys clients, further
	// clients' connections count under their local address and port
	// (family marked untrackedFam, remote zero), and beyond
	// maxUntrackedLocals of those in untrackedLost.
	clientIdx     map[clientKey]int32
	clientKeys    []clientKey
	clientCounts  []uint32
	untrackedLost uint64
	// accIdx and accs gather the clients per listener when the dump ends.
	accIdx map[*detect.Listener]int32
	accs   []clientAcc

	selfs     []detect.SelfConnectedSocket
	selfTotal uint64

	owners     map[uint32]procnet.Process
	lastLookup time.Time
}

func newHealthAgg() healthAgg {
	return healthAgg{
		retransMin: uint8(detect.DefaultConfig().PeerRetransMin),
		peerIdx:    map[peerKey]int32{},
		since:      map[peerKey]time.Time{},
		next:       map[peerKey]time.Time{},
		clientIdx:  map[clientKey]int32{},
		accIdx:     map[*detect.Listener]int32{},
		owners:     map[uint32]procnet.Process{},
	}
}

// setRetransMin sets the retransmission count from which a socket counts
// as stalled (detect.Config.PeerRetransMin, at most 255).
func (h *healthAgg) setRetransMin(n uint64) {
	h.retransMin = uint8(min(max(n, 1), 255))
}

func (h *healthAgg) reset(on bool, now time.Time) {
	h.on, h.now = on, now
	clear(h.peerIdx)
	h.peers = h.peers[:0]
	h.peerKeys = h.peerKeys[:0]
	h.peerOther = [2][2]peerAgg{}
	clear(h.next)
	clear(h.clientIdx)
	h.clientKeys = h.clientKeys[:0]
	h.clientCounts = h.clientCounts[:0]
	h.untrackedLost = 0
	h.selfs = h.selfs[:0]
	h.selfTotal = 0
}

// see is the per-socket path of a full dump for a connected socket (not
// LISTEN, SYN_RECV or CLOSE); inbound says its local port is a listening
// port. It costs a map operation for an inbound ESTABLISHED socket and
// compares for the rest.
func (h *healthAgg) see(s *diag.Socket, inbound bool) {
	switch {
	case s.Timer == diag.TimerRetransmit && s.Retrans >= h.retransMin:
		h.addPeer(s, detect.StallRetransmit)
	case s.Timer == diag.TimerZeroWindow:
		h.addPeer(s, detect.StallZeroWindow)
	}
	if s.State == diag.Established && inbound {
		h.addClient(s)
	}
	if s.SrcPort == s.DstPort && s.State != diag.TimeWait && s.Src == s.Dst {
		h.selfTotal++
		if len(h.selfs) < StoredSelfConnects {
			h.selfs = append(h.selfs, detect.SelfConnectedSocket{Family: s.Family, Addr: s.Src.Unmap(), Port: s.SrcPort, Inode: s.Inode})
		}
	}
}

func (h *healthAgg) addPeer(s *diag.Socket, st detect.Stall) {
	k := peerKey{stall: st, fam: s.Family, addr: s.Dst.Unmap().As16()}
	i, ok := h.peerIdx[k]
	switch {
	case ok:
	case len(h.peers) < maxPeerGroups:
		i = int32(len(h.peers))
		h.peerIdx[k] = i
		h.peers = append(h.peers, peerAgg{})
		h.peerKeys = append(h.peerKeys, k)
	default:
		h.peerOther[st][familyIndex(s.Family)].add(s)
		return
	}
	h.peers[i].add(s)
}

// addClient counts a live inbound connection (ESTABLISHED, or a SYN_RECV
// request socket) towards its client.
func (h *healthAgg) addClient(s *diag.Socket) {
	// As16 gives an IPv4 address in its IPv4-mapped form, as Unmap().As16().
	k := clientKey{fam: uint16(s.Family), port: s.SrcPort, local: s.Src.As16(), remote: s.Dst.As16()}
	if h.count(k, maxClientKeys) {
		return
	}
	// The first maxClientKeys keys were all clients, so every key added
	// from here on is an untracked local one.
	k.fam |= untrackedFam
	k.remote = [16]byte{}
	if !h.count(k, maxClientKeys+maxUntrackedLocals) {
		h.untrackedLost++
	}
}

// count adds a connection to k's count, adding k if it is new and the
// table holds fewer than limit keys; it reports whether it counted.
func (h *healthAgg) count(k clientKey, limit int) bool {
	if i, ok := h.clientIdx[k]; ok {
		h.clientCounts[i]++
		return true
	}
	if len(h.clientKeys) >= limit {
		return false
	}
	h.clientIdx[k] = int32(len(h.clientKeys))
	h.clientKeys = append(h.clientKeys, k)
	h.clientCounts = append(h.clientCounts, 1)
	return true
}

// finish fills the sample's connection-health fields; match finds the
// dump's listener a local address and port belongs to.
func (h *healthAgg) finish(smp *Sample, match func(detect.ListenerKey) *detect.Listener) {
	if !h.on {
		return
	}
	h.finishPeers(smp)
	h.finishClients(smp, match)
	if len(h.selfs) > 0 {
		smp.SelfConnects = slices.Clone(h.selfs)
	}
	smp.SelfConnected = h.selfTotal
}

func (g *peerAgg) group(st detect.Stall, fam diag.Family, remote netip.Addr, since time.Time) detect.PeerGroup {
	pg := detect.PeerGroup{
		Stall: st, Family: fam, Remote: remote, Sockets: g.sockets, MaxRetrans: g.maxRetrans, Since: since, Inode: g.inode,
		LocalPorts: slices.Clone(g.lports[:g.nl]), RemotePorts: slices.Clone(g.rports[:g.nr]),
	}
	slices.Sort(pg.LocalPorts)
	slices.Sort(pg.RemotePorts)
	return pg
}

func (h *healthAgg) finishPeers(smp *Sample) {
	var gs []detect.PeerGroup
	for i, k := range h.peerKeys {
		since, ok := h.since[k]
		if !ok {
			since = h.now
		}
		h.next[k] = since
		gs = append(gs, h.peers[i].group(k.stall, k.fam, netip.AddrFrom16(k.addr).Unmap(), since))
	}
	h.since, h.next = h.next, h.since
	slices.SortFunc(gs, func(x, y detect.PeerGroup) int {
		if c := cmp.Compare(y.Sockets, x.Sockets); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Stall, y.Stall); c != 0 {
			return c
		}
		return x.Remote.Compare(y.Remote)
	})
	other := h.peerOther
	folded := 0
	for st := range other {
		for f := range other[st] {
			if other[st][f].sockets > 0 {
				folded++ // the groups beyond maxPeerGroups count as one entry
			}
		}
	}
	if len(gs) > StoredPeers {
		for _, g := range gs[StoredPeers:] {
			o := &other[g.Stall][familyIndex(g.Family)]
			o.sockets += g.Sockets
			o.maxRetrans = max(o.maxRetrans, g.MaxRetrans)
		}
		folded += len(gs) - StoredPeers
		gs = gs[:StoredPeers:StoredPeers]
	}
	for _, st := range detect.Stalls {
		for fi, fam := range Families {
			if o := &other[st][fi]; o.sockets > 0 {
				gs = append(gs, detect.PeerGroup{Stall: st, Family: fam, Sockets: o.sockets, MaxRetrans: o.maxRetrans, Since: h.now})
			}
		}
	}
	smp.Peers, smp.PeersFolded = gs, folded
}

type clientAcc struct {
	lc  detect.ListenerClients
	top [StoredClients]detect.ClientCount
	n   int
}

// offer keeps c if it is among the StoredClients largest so far.
func (a *clientAcc) offer(c detect.ClientCount) {
	less := func(x, y detect.ClientCount) bool { // x ranks after y
		return x.Count < y.Count || x.Count == y.Count && x.Addr.Compare(y.Addr) > 0
	}
	if a.n == len(a.top) {
		if !less(a.top[a.n-1], c) {
			return
		}
		a.n--
	}
	i := a.n
	for i > 0 && less(a.top[i-1], c) {
		a.top[i] = a.top[i-1]
		i--
	}
	a.top[i] = c
	a.n++
}

func (h *healthAgg) finishClients(smp *Sample, match func(detect.ListenerKey) *detect.Listener) {
	smp.ClientsUntracked = h.untrackedLost
	if len(h.clientKeys) == 0 {
		return
	}
	clear(h.accIdx)
	h.accs = h.accs[:0]
	acc := func(l *detect.Listener) *clientAcc {
		j, ok := h.accIdx[l]
		if !ok {
			j = int32(len(h.accs))
			h.accIdx[l] = j
			h.accs = append(h.accs, clientAcc{lc: detect.ListenerClients{ListenerKey: l.ListenerKey}})
		}
		return &h.accs[j]
	}
	for i := range h.clientKeys {
		k := &h.clientKeys[i]
		l := match(detect.ListenerKey{Family: diag.Family(k.fam &^ untrackedFam), Addr: netip.AddrFrom16(k.local).Unmap(), Port: k.port})
		if l == nil {
			continue // its listener closed since the previous dump
		}
		a, n := acc(l), uint64(h.clientCounts[i])
		a.lc.Connections += n
		if k.fam&untrackedFam != 0 {
			// Connections of clients beyond the table: the listener's,
			// counted once whatever other listeners share the port.
			smp.ClientsUntracked += n
			continue
		}
		a.lc.Clients++
		a.offer(detect.ClientCount{Addr: netip.AddrFrom16(k.remote).Unmap(), Count: n})
	}
	// One backing array for every listener's Top.
	total := 0
	for i := range h.accs {
		total += h.accs[i].n
	}
	tops := make([]detect.ClientCount, 0, total)
	out := make([]detect.ListenerClients, 0, len(h.accs))
	for i := range h.accs {
		a := &h.accs[i]
		start := len(tops)
		tops = append(tops, a.top[:a.n]...)
		a.lc.Top = tops[start:len(tops):len(tops)]
		a.lc.Other = a.lc.Connections
		for _, c := range a.lc.Top {
			a.lc.Other -= c.Count
		}
		out = append(out, a.lc)
	}
	slices.SortFunc(out, func(x, y detect.ListenerClients) int { return x.ListenerKey.Compare(y.ListenerKey) })
	smp.Clients = out
}

// resolveOwners fills in the owning processes of the sample's
// self-connected sockets and largest stalled peer groups from the cache,
// looking up the inodes it lacks at most once per lookupInterval (at most
// maxHealthLookups of them, within timeout). An inode a complete scan did
// not find is remembered as unknown. The cache holds at most maxOwnerCache
// inodes and is emptied when full.
func (h *healthAgg) resolveOwners(smp *Sample, lookup OwnerLookup, timeout time.Duration) {
	if lookup == nil || (len(smp.Peers) == 0 && len(smp.SelfConnects) == 0) {
		return
	}
	var missing []uint64
	want := func(inode uint32) {
		if inode == 0 || len(missing) >= maxHealthLookups {
			return
		}
		if _, ok := h.owners[inode]; !ok && !slices.Contains(missing, uint64(inode)) {
			missing = append(missing, uint64(inode))
		}
	}
	for i := range smp.SelfConnects {
		want(smp.SelfConnects[i].Inode)
	}
	for i := range smp.Peers[:min(len(smp.Peers), maxPeerLookups)] {
		want(smp.Peers[i].Inode)
	}
	if len(missing) > 0 && (h.lastLookup.IsZero() || smp.Time.Sub(h.lastLookup) >= lookupInterval) {
		h.lastLookup = smp.Time
		owners, complete, _ := lookup(missing, timeout)
		if len(h.owners)+len(missing) > maxOwnerCache {
			clear(h.owners)
		}
		for _, ino := range missing {
			switch ps := owners[ino]; {
			case len(ps) > 0:
				p := ps[0]
				p.Comm = SafeLabel(p.Comm)
				h.owners[uint32(ino)] = p
			case complete:
				// No process holds it (another PID namespace, or it
				// exited): remembered as unknown, not looked up again.
				h.owners[uint32(ino)] = procnet.Process{}
			}
		}
	}
	for i := range smp.SelfConnects {
		sc := &smp.SelfConnects[i]
		if p := h.owners[sc.Inode]; sc.Inode != 0 && p.PID != 0 {
			sc.PID, sc.Command = p.PID, p.Comm
		}
	}
	for i := range smp.Peers {
		g := &smp.Peers[i]
		if p := h.owners[g.Inode]; g.Inode != 0 && p.PID != 0 {
			g.PID, g.Command = p.PID, p.Comm
		}
	}
}

// healthSummary gives the detectors the connection health of the latest
// full sample.
func healthSummary(sum *detect.Summary, full *Sample) {
	sum.Peers, sum.Clients, sum.SelfConnects, sum.HealthTime = full.Peers, full.Clients, full.SelfConnects, full.Time
}
