package detect

import (
	"cmp"
	"net/netip"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// ListenerKey identifies a listening address. Several sockets may share one
// (SO_REUSEPORT); they are reported together.
type ListenerKey struct {
	Family diag.Family
	Addr   netip.Addr
	Port   uint16
}

// Compare orders keys by family, address and port.
func (k ListenerKey) Compare(o ListenerKey) int {
	if c := cmp.Compare(k.Family, o.Family); c != 0 {
		return c
	}
	if c := k.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	return cmp.Compare(k.Port, o.Port)
}

// PrefixCount is a source prefix and the number of half-open connections
// from it.
type PrefixCount struct {
	Prefix netip.Prefix
	Count  uint64
}

// Listener is one listening address, its queues and its half-open
// connections.
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
	// SynSources is the number of distinct remote addresses among the
	// half-open connections, counted up to a cap; SynSourcesCapped says the
	// cap was reached, so the true number is at least SynSources.
	SynSources       int
	SynSourcesCapped bool
	// TopSources are the remote prefixes (/24 for IPv4, /64 for IPv6) with
	// the most half-open connections, most first, at most five.
	TopSources []PrefixCount
	// SynRecvRetransmitted counts the half-open connections whose SYN-ACK
	// the kernel has retransmitted at least once: the client never
	// answered it (a spoofed source, or a firewall eating the final ACK).
	SynRecvRetransmitted uint64
}

// DestinationKey identifies where outbound connections go: the local
// address they leave from and the remote address and port. connect()
// needs a distinct local port per socket for each such key.
type DestinationKey struct {
	Family     diag.Family
	Local      netip.Addr
	Remote     netip.Addr
	RemotePort uint16
}

// Destination counts the outbound sockets towards one DestinationKey that
// hold a local port.
type Destination struct {
	DestinationKey
	// Used counts the sockets holding a local port, TIME_WAIT included.
	Used uint64
	// TimeWait counts those of them in TIME_WAIT.
	TimeWait uint64
}

// CloseWaitGroup is the CLOSE_WAIT sockets of one local port and owning
// command.
type CloseWaitGroup struct {
	// Port is the local port, "ephemeral" for outbound sockets (local port
	// in ip_local_port_range and not a listening port), "other" for the
	// group that folds what exceeded the group limit.
	Port string
	// Command is the owning process's command name, "" while unknown (the
	// owner is looked up only for sockets older than the minimum age).
	Command string
	// PIDs are owning processes found, at most five.
	PIDs []int
	// Count is the number of CLOSE_WAIT sockets in the group.
	Count uint64
	// Old counts those older than the minimum age (Config.CloseWaitMinAge).
	Old uint64
	// Oldest is the age of the oldest socket, measured from the first sample
	// that saw it.
	Oldest time.Duration
}

// Summary is what the detectors know about one sample of one network
// namespace.
type Summary struct {
	// Time is when the sample was taken.
	Time time.Time
	// Full is true for a sample of every state; otherwise ESTABLISHED and
	// TIME_WAIT data (destinations, TimeWait) come from an earlier sample.
	Full bool
	// Counters, Sockstat and Sysctls are the kernel's values read with the
	// sample; their Present sets say which could be read.
	Counters procnet.Counters
	Sockstat procnet.Sockstat
	Sysctls  procnet.Sysctls
	// Listeners holds the listeners with half-open connections or a
	// non-empty accept queue, sorted by key. A listener absent from a
	// summary had neither.
	Listeners []Listener
	// Destinations come from the latest full sample, taken at
	// DestinationsTime, most used first.
	Destinations     []Destination
	DestinationsTime time.Time
	// DestinationsTruncated says Destinations is cut short: a destination
	// absent from it may still hold ports.
	DestinationsTruncated bool
	// TimeWait is the number of TIME_WAIT sockets in the latest full sample.
	TimeWait uint64
	// CloseWait groups the CLOSE_WAIT sockets by local port and command.
	CloseWait []CloseWaitGroup

	// Peers, Clients and SelfConnects come from the latest full sample,
	// taken at HealthTime (zero before one): see their types.
	Peers        []PeerGroup
	Clients      []ListenerClients
	SelfConnects []SelfConnectedSocket
	HealthTime   time.Time
	// Events is what the eBPF event source counted; nil when it is off.
	Events *Events
	// HalfOpen groups the half-open suspects of the latest sweep for them,
	// taken at HalfOpenTime; empty when no recent sweep found any.
	HalfOpen     []HalfOpenGroup
	HalfOpenTime time.Time
}

// History is a ring of the latest summaries of one namespace, oldest first.
// It keeps summaries for at most a maximum age (measured from the newest)
// and a maximum count. It is not safe for concurrent use.
type History struct {
	buf    []Summary
	head   int // index of the oldest
	n      int
	maxAge time.Duration
}

// NewHistory returns a History keeping summaries up to maxAge old, at most
// maxLen of them (at least 2).
func NewHistory(maxAge time.Duration, maxLen int) *History {
	return &History{buf: make([]Summary, max(maxLen, 2)), maxAge: maxAge}
}

// Push appends s, dropping the oldest summaries when the ring is full or
// they are older than the maximum age. Summaries must be pushed in time
// order; one older than the newest is ignored.
func (h *History) Push(s Summary) {
	if l := h.Latest(); l != nil && s.Time.Before(l.Time) {
		return
	}
	if h.n == len(h.buf) {
		h.buf[h.head] = Summary{}
		h.head = (h.head + 1) % len(h.buf)
		h.n--
	}
	h.buf[(h.head+h.n)%len(h.buf)] = s
	h.n++
	for h.n > 1 && h.maxAge > 0 && s.Time.Sub(h.buf[h.head].Time) > h.maxAge {
		h.buf[h.head] = Summary{}
		h.head = (h.head + 1) % len(h.buf)
		h.n--
	}
}

// Len returns the number of summaries held.
func (h *History) Len() int { return h.n }

// At returns the i-th summary, 0 being the oldest. It returns nil when i is
// out of range.
func (h *History) At(i int) *Summary {
	if i < 0 || i >= h.n {
		return nil
	}
	return &h.buf[(h.head+i)%len(h.buf)]
}

// Latest returns the newest summary, or nil when the history is empty.
func (h *History) Latest() *Summary { return h.At(h.n - 1) }

// indexAtOrBefore returns the index of the newest summary taken at or
// before t, or -1.
func (h *History) indexAtOrBefore(t time.Time) int {
	for i := h.n - 1; i >= 0; i-- {
		if !h.At(i).Time.After(t) {
			return i
		}
	}
	return -1
}
