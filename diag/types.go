package diag

import (
	"fmt"
	"net/netip"
)

// State is a TCP state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// TCP states. NewSynRecv is the kernel's request socket; sock_diag reports
// request sockets as SynRecv, so it never appears in a reply.
const (
	Established   State = 1
	SynSent       State = 2
	SynRecv       State = 3
	FinWait1      State = 4
	FinWait2      State = 5
	TimeWait      State = 6
	Close         State = 7
	CloseWait     State = 8
	LastAck       State = 9
	Listen        State = 10
	Closing       State = 11
	NewSynRecv    State = 12
	BoundInactive State = 13

	// MaxState is the highest state number the package knows.
	MaxState = BoundInactive
)

var stateNames = [...]string{
	Established:   "established",
	SynSent:       "syn_sent",
	SynRecv:       "syn_recv",
	FinWait1:      "fin_wait1",
	FinWait2:      "fin_wait2",
	TimeWait:      "time_wait",
	Close:         "close",
	CloseWait:     "close_wait",
	LastAck:       "last_ack",
	Listen:        "listen",
	Closing:       "closing",
	NewSynRecv:    "new_syn_recv",
	BoundInactive: "bound_inactive",
}

// String returns the state's lower-case name, as used in metric labels.
func (s State) String() string {
	if s >= 1 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state_%d", uint8(s))
}

// StateMask selects states in a request: bit n selects State n (TCPF_*).
type StateMask uint32

// Masks used by the collector.
const (
	// AllStates selects every state from Established to Closing.
	AllStates StateMask = 0xffe
	// RareStates selects every state but Established and TimeWait: the states
	// alerts care about. The kernel still walks every socket of the
	// established hash (every namespace's when the hash is shared) but fills
	// replies for these only, so what it saves depends on how many sockets
	// are ESTABLISHED or in TIME_WAIT; BENCHMARKS.md ("The running
	// exporter") has the measured CPU per rare and per full dump.
	RareStates = AllStates &^ (1<<Established | 1<<TimeWait)
)

// MaskOf returns a mask selecting the given states.
func MaskOf(states ...State) StateMask {
	var m StateMask
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// Has reports whether m selects s.
func (m StateMask) Has(s State) bool { return s < 32 && m&(1<<s) != 0 }

// Family is an address family: AFInet or AFInet6.
type Family uint8

// Address families as the kernel numbers them.
const (
	AFUnspec Family = 0
	AFInet   Family = 2
	AFInet6  Family = 10
)

// String returns "ipv4", "ipv6" or "family_N".
func (f Family) String() string {
	switch f {
	case AFInet:
		return "ipv4"
	case AFInet6:
		return "ipv6"
	case AFUnspec:
		return "unspec"
	}
	return fmt.Sprintf("family_%d", uint8(f))
}

// Timer is the kind of timer pending on a socket (idiag_timer).
type Timer uint8

// Timers reported by inet_diag.
const (
	TimerNone       Timer = 0
	TimerRetransmit Timer = 1
	TimerKeepalive  Timer = 2
	TimerTimeWait   Timer = 3
	TimerZeroWindow Timer = 4
)

// Socket is one decoded inet_diag_msg. The Conn reuses one Socket for a
// whole dump: a callback that keeps data must copy it. Attrs aliases the
// receive buffer and is valid only during the callback.
type Socket struct {
	Family  Family
	State   State
	Timer   Timer
	Retrans uint8

	Src     netip.Addr
	Dst     netip.Addr
	SrcPort uint16
	DstPort uint16
	// Interface is the bound interface index, 0 if none.
	Interface uint32
	// Cookie identifies the socket across dumps.
	Cookie uint64

	// Expires is the time to the pending timer's expiry, in milliseconds.
	Expires uint32
	// RQueue and WQueue are bytes queued, except for a listening socket, where
	// RQueue is the accept-queue length and WQueue its limit.
	RQueue uint32
	WQueue uint32
	UID    uint32
	// Inode is the socket's inode; 0 for TIME_WAIT and request sockets.
	Inode uint32

	// Attrs holds the raw netlink attributes that follow the fixed message.
	Attrs []byte
}
