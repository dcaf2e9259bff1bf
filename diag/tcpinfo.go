package diag

import (
	"encoding/binary"
	"fmt"
)

// Offsets into struct tcp_info (include/uapi/linux/tcp.h). The struct only
// ever grew at its end: a field is present when the kernel's struct reaches
// past it.
const (
	tcpiState        = 0
	tcpiRetransmits  = 2
	tcpiProbes       = 3
	tcpiBackoff      = 4
	tcpiUnacked      = 24
	tcpiLastDataSent = 44
	tcpiLastDataRecv = 52
	tcpiLastAckRecv  = 56
	tcpiRTT          = 68
	tcpiRTTVar       = 72

	// TCPInfoMinLen is the shortest tcp_info DecodeTCPInfo accepts: up to
	// and including tcpi_last_ack_recv. Every kernel since 2.6 sends at
	// least 104 bytes.
	TCPInfoMinLen = tcpiLastAckRecv + 4
	// tcpInfoRTTLen is the length that holds tcpi_rtt and tcpi_rttvar.
	tcpInfoRTTLen = tcpiRTTVar + 4
)

// TCPInfo is the part of struct tcp_info (INET_DIAG_INFO) the exporter
// uses. The times are milliseconds before the dump, as the kernel computes
// them from jiffies.
type TCPInfo struct {
	// State is tcpi_state, the socket's TCP state.
	State State
	// Retransmits is tcpi_retransmits, the consecutive RTO retransmissions
	// of the head segment; Probes tcpi_probes, the zero-window or keepalive
	// probes sent without answer; Backoff tcpi_backoff, the RTO backoff
	// exponent.
	Retransmits uint8
	Probes      uint8
	Backoff     uint8
	// Unacked is tcpi_unacked, segments sent and not acknowledged.
	Unacked uint32
	// LastDataSent is tcpi_last_data_sent, the time since data was last
	// sent; LastDataRecv tcpi_last_data_recv, since data (or a FIN) was
	// last received; LastAckRecv tcpi_last_ack_recv, since an ACK was last
	// received.
	LastDataSent uint32
	LastDataRecv uint32
	LastAckRecv  uint32
	// RTT and RTTVar are tcpi_rtt and tcpi_rttvar in microseconds, valid
	// when HasRTT is set (a struct long enough to carry them).
	RTT    uint32
	RTTVar uint32
	HasRTT bool
	// Len is the length of the struct the kernel sent.
	Len int
}

// LastRecv returns the time since anything (data or an ACK) was last
// received from the peer, in milliseconds.
func (ti *TCPInfo) LastRecv() uint32 { return min(ti.LastDataRecv, ti.LastAckRecv) }

// DecodeTCPInfo decodes the payload of an INET_DIAG_INFO attribute of a TCP
// socket into ti. It accepts a struct of any length from TCPInfoMinLen up:
// a longer one (a newer kernel) has fields this package ignores, a shorter
// one than tcpi_rttvar (older than any kernel seen) leaves HasRTT false. It
// returns ErrTruncated for a payload shorter than TCPInfoMinLen.
func DecodeTCPInfo(b []byte, ti *TCPInfo) error {
	if len(b) < TCPInfoMinLen {
		return fmt.Errorf("%w: tcp_info is %d bytes, need %d", ErrTruncated, len(b), TCPInfoMinLen)
	}
	u32 := func(off int) uint32 { return binary.NativeEndian.Uint32(b[off : off+4]) }
	*ti = TCPInfo{
		State:        State(b[tcpiState]),
		Retransmits:  b[tcpiRetransmits],
		Probes:       b[tcpiProbes],
		Backoff:      b[tcpiBackoff],
		Unacked:      u32(tcpiUnacked),
		LastDataSent: u32(tcpiLastDataSent),
		LastDataRecv: u32(tcpiLastDataRecv),
		LastAckRecv:  u32(tcpiLastAckRecv),
		Len:          len(b),
	}
	if len(b) >= tcpInfoRTTLen {
		ti.RTT, ti.RTTVar, ti.HasRTT = u32(tcpiRTT), u32(tcpiRTTVar), true
	}
	return nil
}

// FindAttr returns the payload of the first attribute of type typ in attrs
// (a socket's Attrs), aliasing attrs. ok is false when there is none; err
// is ErrTruncated when an attribute before it does not fit.
func FindAttr(attrs []byte, typ uint16) (payload []byte, ok bool, err error) {
	for {
		t, p, rest, more, err := NextAttr(attrs)
		if err != nil || !more {
			return nil, false, err
		}
		if t == typ {
			return p, true, nil
		}
		attrs = rest
	}
}

// TCPInfo decodes the socket's INET_DIAG_INFO attribute into ti. ok is
// false when the reply carries none (the request did not ask for it, or the
// kernel sent none for this socket). It allocates nothing.
func (s *Socket) TCPInfo(ti *TCPInfo) (ok bool, err error) {
	p, ok, err := FindAttr(s.Attrs, AttrInfo)
	if err != nil || !ok {
		return false, err
	}
	if err := DecodeTCPInfo(p, ti); err != nil {
		return false, err
	}
	return true, nil
}
