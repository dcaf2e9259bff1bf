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

// Kind names the kinds of dump a Sampler runs.
type Kind int

const (
	// Full dumps every state.
	Full Kind = iota
	// Rare dumps every state but ESTABLISHED and TIME_WAIT.
	Rare
	// Listen dumps LISTEN sockets only, which skips the kernel's
	// established hash: the cheap path, read every interval with the
	// kernel counters.
	Listen
	// HalfOpen is the half-open sweep: ESTABLISHED sockets only, with
	// INET_DIAG_INFO (see Sampler.Sweep). Its dump metrics carry kind
	// "halfopen".
	HalfOpen
)

// Kinds lists every Kind, for iteration.
var Kinds = [...]Kind{Full, Rare, Listen, HalfOpen}

func (k Kind) String() string {
	switch k {
	case Rare:
		return "rare"
	case Listen:
		return "listen"
	case HalfOpen:
		return kindHalfOpen
	}
	return "full"
}

// Mask returns the states a dump of this kind asks for.
func (k Kind) Mask() diag.StateMask {
	switch k {
	case Rare:
		return diag.RareStates
	case Listen:
		return diag.MaskOf(diag.Listen)
	case HalfOpen:
		return diag.MaskOf(diag.Established)
	}
	return diag.AllStates
}

// Families in the order used by Counts.
var Families = [...]diag.Family{diag.AFInet, diag.AFInet6}

// States reported as tcpstate_sockets, in label order.
var States = [...]diag.State{
	diag.Established, diag.SynSent, diag.SynRecv, diag.FinWait1, diag.FinWait2,
	diag.TimeWait, diag.Close, diag.CloseWait, diag.LastAck, diag.Listen, diag.Closing,
}

// Counts holds socket counts per family (index 0 IPv4, 1 IPv6) and state.
type Counts [2][diag.MaxState + 1]uint64

func familyIndex(f diag.Family) int {
	if f == diag.AFInet6 {
		return 1
	}
	return 0
}

// Get returns the count for a family and state.
func (c *Counts) Get(f diag.Family, s diag.State) uint64 {
	if s > diag.MaxState {
		return 0
	}
	return c[familyIndex(f)][s]
}

// Total returns the number of sockets counted.
func (c *Counts) Total() uint64 {
	var n uint64
	for f := range c {
		for _, v := range c[f] {
			n += v
		}
	}
	return n
}

// ProcfsValues holds what a sample read from procfs besides the dump: the TCP
// counters, sockstat and the sysctls the detectors use. Each part's Present
// set says what could be read.
type ProcfsValues struct {
	Counters procnet.Counters
	Sockstat procnet.Sockstat
	Sysctls  procnet.Sysctls
}

// Sample is what one dump saw in one network namespace.
type Sample struct {
	Kind Kind
	// Time is when the dump started.
	Time time.Time
	// Counts per family and state, for the states Kind.Mask selects.
	Counts Counts
	// Listeners sorted by family, address and port. A rare dump includes
	// LISTEN and SYN_RECV, so every kind carries listeners; a Listen
	// sample's half-open counts and sources come from the latest dump that
	// saw them, its queues from its own.
	Listeners []detect.Listener
	// Unknown counts sockets with a family or state the package does not know.
	Unknown uint64
	// Dump describes the kernel exchange.
	Dump diag.Stats
	// Procfs holds the counters, sockstat and sysctls read with the dump.
	// A Listen sample reads the sysctls only every few seconds and carries
	// the latest values between.
	Procfs ProcfsValues
	// ReadCPU is the CPU time the kernel reads used on a thread of their
	// own (inside another network namespace); zero when they ran on the
	// caller's thread.
	ReadCPU time.Duration

	// Destinations (full samples only) counts outbound sockets per
	// destination, most used first, at most StoredDestinations of them.
	// An outbound socket is a connected one (not LISTEN, SYN_RECV or CLOSE)
	// whose local port lies in ip_local_port_range (when readable) and is
	// not a listening port of the namespace (in this dump or the previous
	// one). DestinationsOther holds, per family, the sums of the
	// destinations beyond the limit (with zero addresses), and
	// DestinationsFolded how many destinations they are.
	Destinations       []detect.Destination
	DestinationsOther  []detect.Destination
	DestinationsFolded int

	// CloseWait groups the CLOSE_WAIT sockets by local port and owning
	// command, most sockets first; CloseWaitFolded counts groups folded into
	// the last one (port and command "other") by SamplerOptions.MaxCloseWaitGroups,
	// and CloseWaitUntracked the sockets not tracked because the tracker
	// was full (they are in Counts but in no group).
	CloseWait          []detect.CloseWaitGroup
	CloseWaitFolded    int
	CloseWaitUntracked uint64

	// Connection health (full samples only; see connhealth_agg.go).
	// Peers are the stalled sockets by stall and remote address, most
	// sockets first, at most StoredPeers, then the "other" groups (invalid
	// Remote) of what PeersFolded counts. Clients are the listeners' live
	// connections by client, sorted by listener; ClientsUntracked counts
	// the connections beyond the client table's bound, each once (in its
	// listener's Connections, in no client; beyond the bound of local
	// addresses too, in no listener's). SelfConnects lists self-connected
	// sockets, at most StoredSelfConnects; SelfConnected counts them all.
	Peers            []detect.PeerGroup
	PeersFolded      int
	Clients          []detect.ListenerClients
	ClientsUntracked uint64
	SelfConnects     []detect.SelfConnectedSocket
	SelfConnected    uint64

	// Events is what the eBPF event source had counted in the namespace
	// when the sample was taken; nil when events are off or unreadable.
	Events *EventSample
}

// Bounds on the per-dump bookkeeping.
const (
	// maxSynSources caps the distinct SYN_RECV source addresses counted
	// per local address; maxSynSourcesTotal caps them over all.
	maxSynSources      = 4096
	maxSynSourcesTotal = 1 << 16
	// maxSynPrefixes caps the source prefixes counted per local address.
	maxSynPrefixes = 1024
	// topSources is the number of source prefixes kept per listener.
	topSources = 5
	// maxDestinations caps the destinations tracked in one dump; sockets
	// towards further destinations are counted in the "other" sums.
	maxDestinations = 1 << 17
	// StoredDestinations is the most destinations a Sample keeps.
	StoredDestinations = 1000
)

// portSet is a set of ports.
type portSet [65536 / 64]uint64

func (p *portSet) add(port uint16)      { p[port>>6] |= 1 << (port & 63) }
func (p *portSet) has(port uint16) bool { return p[port>>6]&(1<<(port&63)) != 0 }

// synAgg gathers the request sockets of one local address and port.
type synAgg struct {
	key      detect.ListenerKey
	n        uint64
	retrans  uint64
	distinct int
	capped   bool
	prefixes int
}

type synSrcKey struct {
	idx  int32
	addr [16]byte
}

type synPfxKey struct {
	idx int32
	pfx [16]byte
}

// destKey has no padding (fam is widened to 16 bits), so that the map
// hashes and compares it as one block of memory.
type destKey struct {
	fam    uint16
	rport  uint16
	local  [16]byte
	remote [16]byte
}

type destAgg struct {
	used, tw uint64
}

// aggregator folds a dump's sockets into a Sample. It is reused across
// dumps: its maps keep their buckets.
type aggregator struct {
	sample *Sample
	// Listening addresses of this dump: an index into lst, whose backing
	// array is reused across dumps, so that a dump allocates nothing per
	// listener.
	listenerIdx map[detect.ListenerKey]int32
	lst         []detect.Listener

	// Request sockets by local address and port, matched with listeners
	// when the dump ends; their source addresses and prefixes.
	synIdx map[detect.ListenerKey]int32
	syn    []synAgg
	synSrc map[synSrcKey]struct{}
	synPfx map[synPfxKey]uint64

	// Outbound sockets per destination (full dumps only).
	dest         bool
	ephLo, ephHi uint16
	// ports holds the listening ports of this dump and the previous one,
	// prevPorts those of the previous one.
	ports, prevPorts portSet
	destIdx          map[destKey]int32
	dests            []destAgg
	destKeys         []destKey
	destOther        [2]destAgg

	cw *closeWaitTracker

	health healthAgg
}

func newAggregator(maxTracked int) *aggregator {
	return &aggregator{
		listenerIdx: map[detect.ListenerKey]int32{},
		synIdx:      map[detect.ListenerKey]int32{},
		synSrc:      map[synSrcKey]struct{}{},
		synPfx:      map[synPfxKey]uint64{},
		destIdx:     map[destKey]int32{},
		cw:          newCloseWaitTracker(maxTracked),
		health:      newHealthAgg(),
	}
}

// reset prepares for a dump into s. withDest turns destination counting on;
// pr is ip_local_port_range (ok false when unknown: every port counts).
func (a *aggregator) reset(s *Sample, withDest bool, pr procnet.PortRange, ok bool) {
	a.sample = s
	clear(a.listenerIdx)
	a.lst = a.lst[:0]
	clear(a.synIdx)
	a.syn = a.syn[:0]
	clear(a.synSrc)
	clear(a.synPfx)
	a.dest = withDest
	a.ephLo, a.ephHi = 0, 65535
	if ok {
		a.ephLo, a.ephHi = pr.Low, pr.High
	}
	a.ports = a.prevPorts
	clear(a.destIdx)
	a.dests = a.dests[:0]
	a.destKeys = a.destKeys[:0]
	a.destOther = [2]destAgg{}
	a.cw.begin(s.Time)
	a.health.reset(withDest, s.Time)
}

// add is the per-socket hot path: no allocation for ordinary sockets. A
// SYN_RECV or CLOSE_WAIT socket costs a few map operations; an outbound
// socket in a full dump one map lookup.
func (a *aggregator) add(s *diag.Socket) error {
	if (s.Family != diag.AFInet && s.Family != diag.AFInet6) || s.State == 0 || s.State > diag.MaxState {
		a.sample.Unknown++
		return nil
	}
	a.sample.Counts[familyIndex(s.Family)][s.State]++
	switch s.State {
	case diag.Listen:
		k := detect.ListenerKey{Family: s.Family, Addr: s.Src.Unmap(), Port: s.SrcPort}
		i, ok := a.listenerIdx[k]
		if !ok {
			i = int32(len(a.lst))
			a.listenerIdx[k] = i
			a.lst = append(a.lst, detect.Listener{ListenerKey: k})
		}
		l := &a.lst[i]
		l.Sockets++
		l.QueueLen += uint64(s.RQueue)
		l.QueueLimit += uint64(s.WQueue)
		a.ports.add(s.SrcPort)
		return nil
	case diag.SynRecv:
		a.addSynRecv(s)
		return nil
	case diag.Close, diag.NewSynRecv, diag.BoundInactive:
		return nil
	case diag.CloseWait:
		a.cw.see(s)
	}
	if a.health.on {
		a.health.see(s, a.ports.has(s.SrcPort))
	}
	if a.dest && a.outbound(s.SrcPort) {
		a.addDest(s)
	}
	return nil
}

// outbound reports whether a connected socket's local port makes it an
// outbound one: in ip_local_port_range and not a listening port of this
// dump or the previous one. Destinations and the "ephemeral" CLOSE_WAIT
// group both follow it.
func (a *aggregator) outbound(port uint16) bool {
	return port >= a.ephLo && port <= a.ephHi && !a.ports.has(port)
}

func (a *aggregator) addDest(s *diag.Socket) {
	// As16 gives an IPv4 address in its IPv4-mapped form, as Unmap().As16().
	k := destKey{fam: uint16(s.Family), rport: s.DstPort, local: s.Src.As16(), remote: s.Dst.As16()}
	i, ok := a.destIdx[k]
	var d *destAgg
	switch {
	case ok:
		d = &a.dests[i]
	case len(a.dests) < maxDestinations:
		a.destIdx[k] = int32(len(a.dests))
		a.dests = append(a.dests, destAgg{})
		a.destKeys = append(a.destKeys, k)
		d = &a.dests[len(a.dests)-1]
	default:
		d = &a.destOther[familyIndex(s.Family)]
	}
	d.used++
	if s.State == diag.TimeWait {
		d.tw++
	}
}

// sourcePrefix returns the /24 (IPv4) or /64 (IPv6) around a.
func sourcePrefix(a netip.Addr) [16]byte {
	if a.Is4() {
		b := a.As4()
		b[3] = 0
		return netip.AddrFrom4(b).As16()
	}
	b := a.As16()
	clear(b[8:])
	return b
}

func (a *aggregator) addSynRecv(s *diag.Socket) {
	k := detect.ListenerKey{Family: s.Family, Addr: s.Src.Unmap(), Port: s.SrcPort}
	i, ok := a.synIdx[k]
	if !ok {
		i = int32(len(a.syn))
		a.synIdx[k] = i
		a.syn = append(a.syn, synAgg{key: k})
	}
	g := &a.syn[i]
	g.n++
	if s.Retrans > 0 {
		g.retrans++
	}
	if a.health.on {
		a.health.addClient(s)
	}
	src := s.Dst.Unmap()
	if !g.capped {
		sk := synSrcKey{idx: i, addr: src.As16()}
		if _, seen := a.synSrc[sk]; !seen {
			if g.distinct >= maxSynSources || len(a.synSrc) >= maxSynSourcesTotal {
				g.capped = true
			} else {
				a.synSrc[sk] = struct{}{}
				g.distinct++
			}
		}
	}
	pk := synPfxKey{idx: i, pfx: sourcePrefix(src)}
	if c, ok := a.synPfx[pk]; ok {
		a.synPfx[pk] = c + 1
	} else if g.prefixes < maxSynPrefixes {
		a.synPfx[pk] = 1
		g.prefixes++
	}
}

// finish matches request sockets with listeners, sorts the listeners and
// builds the destinations.
func (a *aggregator) finish() {
	owners := make([]*detect.Listener, len(a.syn))
	for i := range a.syn {
		g := &a.syn[i]
		if l := a.matchListener(g.key); l != nil {
			l.SynRecv += g.n
			l.SynRecvRetransmitted += g.retrans
			l.SynSources += g.distinct
			l.SynSourcesCapped = l.SynSourcesCapped || g.capped
			owners[i] = l
		}
	}
	if len(a.synPfx) > 0 {
		byListener := map[*detect.Listener][]detect.PrefixCount{}
		for k, n := range a.synPfx {
			l := owners[k.idx]
			if l == nil {
				continue
			}
			addr := netip.AddrFrom16(k.pfx).Unmap()
			bits := 64
			if addr.Is4() {
				bits = 24
			}
			byListener[l] = append(byListener[l], detect.PrefixCount{Prefix: netip.PrefixFrom(addr, bits), Count: n})
		}
		for l, ps := range byListener {
			l.TopSources = topPrefixes(ps)
		}
	}
	ls := slices.Clone(a.lst)
	clear(a.prevPorts[:])
	for i := range ls {
		a.prevPorts.add(ls[i].Port)
	}
	a.health.finish(a.sample, a.matchListener)
	slices.SortFunc(ls, func(x, y detect.Listener) int { return x.ListenerKey.Compare(y.ListenerKey) })
	a.sample.Listeners = ls
	if a.dest {
		a.finishDestinations()
	}
}

// topPrefixes merges duplicate prefixes (from request sockets of different
// local addresses of one wildcard listener) and returns the topSources
// largest, most first.
func topPrefixes(ps []detect.PrefixCount) []detect.PrefixCount {
	slices.SortFunc(ps, func(x, y detect.PrefixCount) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits())
	})
	merged := ps[:0]
	for _, p := range ps {
		if n := len(merged); n > 0 && merged[n-1].Prefix == p.Prefix {
			merged[n-1].Count += p.Count
			continue
		}
		merged = append(merged, p)
	}
	slices.SortStableFunc(merged, func(x, y detect.PrefixCount) int { return cmp.Compare(y.Count, x.Count) })
	return slices.Clone(merged[:min(len(merged), topSources)])
}

func (a *aggregator) finishDestinations() {
	ds := make([]detect.Destination, len(a.dests))
	for i, k := range a.destKeys {
		ds[i] = detect.Destination{
			DestinationKey: detect.DestinationKey{
				Family:     diag.Family(k.fam),
				Local:      netip.AddrFrom16(k.local).Unmap(),
				Remote:     netip.AddrFrom16(k.remote).Unmap(),
				RemotePort: k.rport,
			},
			Used:     a.dests[i].used,
			TimeWait: a.dests[i].tw,
		}
	}
	slices.SortFunc(ds, func(x, y detect.Destination) int {
		if c := cmp.Compare(y.Used, x.Used); c != 0 {
			return c
		}
		return compareDestKeys(x.DestinationKey, y.DestinationKey)
	})
	other := a.destOther
	folded := 0
	if len(ds) > StoredDestinations {
		for _, d := range ds[StoredDestinations:] {
			o := &other[familyIndex(d.Family)]
			o.used += d.Used
			o.tw += d.TimeWait
		}
		folded = len(ds) - StoredDestinations
		ds = slices.Clone(ds[:StoredDestinations])
	}
	if a.destOther != ([2]destAgg{}) {
		folded++ // the sockets beyond maxDestinations count as one more entry
	}
	var os []detect.Destination
	for i, f := range Families {
		if other[i] != (destAgg{}) {
			os = append(os, detect.Destination{DestinationKey: detect.DestinationKey{Family: f}, Used: other[i].used, TimeWait: other[i].tw})
		}
	}
	a.sample.Destinations, a.sample.DestinationsOther, a.sample.DestinationsFolded = ds, os, folded
}

func compareDestKeys(x, y detect.DestinationKey) int {
	if c := cmp.Compare(x.Family, y.Family); c != 0 {
		return c
	}
	if c := x.Local.Compare(y.Local); c != 0 {
		return c
	}
	if c := x.Remote.Compare(y.Remote); c != 0 {
		return c
	}
	return cmp.Compare(x.RemotePort, y.RemotePort)
}

// matchListener finds the listener a request socket belongs to: the one on
// its exact address, else a wildcard one of its family, else a wildcard IPv6
// one (dual-stack sockets accept IPv4 too).
func (a *aggregator) matchListener(k detect.ListenerKey) *detect.Listener {
	if l := a.listener(k); l != nil {
		return l
	}
	if k.Family == diag.AFInet {
		if l := a.listener(detect.ListenerKey{Family: diag.AFInet, Addr: netip.IPv4Unspecified(), Port: k.Port}); l != nil {
			return l
		}
		if l := a.listener(detect.ListenerKey{Family: diag.AFInet6, Addr: k.Addr, Port: k.Port}); l != nil {
			return l
		}
	}
	return a.listener(detect.ListenerKey{Family: diag.AFInet6, Addr: netip.IPv6Unspecified(), Port: k.Port})
}

// listener returns the listener at k in this dump, or nil.
func (a *aggregator) listener(k detect.ListenerKey) *detect.Listener {
	if i, ok := a.listenerIdx[k]; ok {
		return &a.lst[i]
	}
	return nil
}
