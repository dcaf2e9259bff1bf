package collector

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// Kind names the two kinds of dump a Sampler runs.
type Kind int

const (
	// Full dumps every state.
	Full Kind = iota
	// Rare dumps every state but ESTABLISHED and TIME_WAIT.
	Rare
)

// Kinds lists every Kind, for iteration.
var Kinds = [...]Kind{Full, Rare}

func (k Kind) String() string {
	if k == Rare {
		return "rare"
	}
	return "full"
}

// Mask returns the states a dump of this kind asks for.
func (k Kind) Mask() diag.StateMask {
	if k == Rare {
		return diag.RareStates
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

// ListenerKey identifies a listening address. Several sockets may share one
// (SO_REUSEPORT); they are reported together.
type ListenerKey struct {
	Family diag.Family
	Addr   netip.Addr
	Port   uint16
}

// Listener is one listening address and its queues.
type Listener struct {
	ListenerKey
	// Sockets is the number of listening sockets behind the address.
	Sockets int
	// QueueLen is the number of connections waiting to be accepted, and
	// QueueLimit the accept-queue limit, summed over the sockets.
	QueueLen   uint64
	QueueLimit uint64
	// SynRecv counts half-open connections (request sockets) for it.
	SynRecv uint64
}

// Sample is what one dump saw in one network namespace.
type Sample struct {
	Kind Kind
	// Time is when the dump started.
	Time time.Time
	// Counts per family and state, for the states Kind.Mask selects.
	Counts Counts
	// Listeners sorted by family, address and port. A rare dump includes
	// LISTEN and SYN_RECV, so both kinds carry listeners.
	Listeners []Listener
	// Unknown counts sockets with a family or state the package does not know.
	Unknown uint64
	// Dump describes the kernel exchange.
	Dump diag.Stats
}

// aggregator folds a dump's sockets into a Sample. It is reused across
// dumps: its map keeps its buckets.
type aggregator struct {
	sample    *Sample
	listeners map[ListenerKey]*Listener
	// synRecv counts request sockets by (family, local address, port) until
	// the dump ends, when they are matched with listeners.
	synRecv map[ListenerKey]uint64
}

func newAggregator() *aggregator {
	return &aggregator{listeners: map[ListenerKey]*Listener{}, synRecv: map[ListenerKey]uint64{}}
}

func (a *aggregator) reset(s *Sample) {
	a.sample = s
	clear(a.listeners)
	clear(a.synRecv)
}

// add is the per-socket hot path: no allocation for ordinary sockets.
func (a *aggregator) add(s *diag.Socket) error {
	if (s.Family != diag.AFInet && s.Family != diag.AFInet6) || s.State == 0 || s.State > diag.MaxState {
		a.sample.Unknown++
		return nil
	}
	a.sample.Counts[familyIndex(s.Family)][s.State]++
	switch s.State {
	case diag.Listen:
		k := ListenerKey{s.Family, s.Src.Unmap(), s.SrcPort}
		l := a.listeners[k]
		if l == nil {
			l = &Listener{ListenerKey: k}
			a.listeners[k] = l
		}
		l.Sockets++
		l.QueueLen += uint64(s.RQueue)
		l.QueueLimit += uint64(s.WQueue)
	case diag.SynRecv:
		a.synRecv[ListenerKey{s.Family, s.Src.Unmap(), s.SrcPort}]++
	}
	return nil
}

// finish matches request sockets with listeners and sorts the listeners.
func (a *aggregator) finish() {
	for k, n := range a.synRecv {
		if l := a.matchListener(k); l != nil {
			l.SynRecv += n
		}
	}
	ls := make([]Listener, 0, len(a.listeners))
	for _, l := range a.listeners {
		ls = append(ls, *l)
	}
	slices.SortFunc(ls, func(x, y Listener) int { return compareKeys(x.ListenerKey, y.ListenerKey) })
	a.sample.Listeners = ls
}

// matchListener finds the listener a request socket belongs to: the one on
// its exact address, else a wildcard one of its family, else a wildcard IPv6
// one (dual-stack sockets accept IPv4 too).
func (a *aggregator) matchListener(k ListenerKey) *Listener {
	if l := a.listeners[k]; l != nil {
		return l
	}
	if k.Family == diag.AFInet {
		if l := a.listeners[ListenerKey{diag.AFInet, netip.IPv4Unspecified(), k.Port}]; l != nil {
			return l
		}
		if l := a.listeners[ListenerKey{diag.AFInet6, k.Addr, k.Port}]; l != nil {
			return l
		}
	}
	return a.listeners[ListenerKey{diag.AFInet6, netip.IPv6Unspecified(), k.Port}]
}

func compareKeys(x, y ListenerKey) int {
	if c := cmp.Compare(x.Family, y.Family); c != 0 {
		return c
	}
	if c := x.Addr.Compare(y.Addr); c != 0 {
		return c
	}
	return cmp.Compare(x.Port, y.Port)
}
