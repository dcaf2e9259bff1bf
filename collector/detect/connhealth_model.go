package detect

import (
	"net/netip"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// Stall says why a peer's sockets are stalled.
type Stall uint8

// Stalls a full dump tells apart by the socket's pending timer.
const (
	// StallRetransmit: the retransmission timer runs (idiag_timer 1) with
	// at least Config.PeerRetransMin consecutive RTO retransmissions: the
	// peer acknowledges nothing.
	StallRetransmit Stall = iota
	// StallZeroWindow: the zero-window probe timer runs (idiag_timer 4):
	// the peer acknowledges but advertises no room, its application does
	// not read.
	StallZeroWindow
)

// Stalls lists every Stall, for iteration.
var Stalls = [...]Stall{StallRetransmit, StallZeroWindow}

// String returns the stall's label value.
func (s Stall) String() string {
	if s == StallZeroWindow {
		return "zero_window"
	}
	return "retransmit"
}

// MaxPeerPorts is the most local and remote ports a PeerGroup lists.
const MaxPeerPorts = 4

// PeerGroup is the stalled sockets of one kind towards one remote address.
// A group with an invalid Remote is the "other" group of its Stall and
// Family: the sockets towards peers beyond the collector's limits.
type PeerGroup struct {
	Stall  Stall
	Family diag.Family
	Remote netip.Addr
	// Sockets counts the stalled sockets towards Remote.
	Sockets uint64
	// MaxRetrans is the highest retransmission count (StallRetransmit) or
	// zero-window probe count (StallZeroWindow) among them.
	MaxRetrans uint8
	// Since is when the collector first saw the group stalled in a full
	// sample, stalled in every full sample since.
	Since time.Time
	// LocalPorts and RemotePorts are distinct ports of the stalled sockets,
	// at most MaxPeerPorts of each, smallest first.
	LocalPorts, RemotePorts []uint16
	// Inode is one stalled socket's inode (0 if none had one); PID and
	// Command its owner, when looked up (0 and "" otherwise).
	Inode   uint32
	PID     int
	Command string
}

// ClientCount is a remote address and its live connections.
type ClientCount struct {
	Addr  netip.Addr
	Count uint64
}

// ListenerClients is a listener's live connections (ESTABLISHED, and
// SYN_RECV request sockets) by remote address.
type ListenerClients struct {
	ListenerKey
	// Connections counts the listener's live connections, those not
	// attributed to a client (the collector's client table was full)
	// included.
	Connections uint64
	// Clients is the number of distinct remote addresses counted.
	Clients int
	// Top are the remote addresses with the most connections, most
	// first, at most the collector's StoredClients.
	Top []ClientCount
	// Other is the connections not in Top.
	Other uint64
}

// SelfConnectedSocket is a socket connected to itself: same local and remote
// address and port.
type SelfConnectedSocket struct {
	Family diag.Family
	Addr   netip.Addr
	Port   uint16
	// Inode is the socket's inode; PID and Command its owner when looked
	// up (0 and "" otherwise).
	Inode   uint32
	PID     int
	Command string
}
