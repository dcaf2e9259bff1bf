package events

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Kind is what a map record counts; the numbers are those of bpf/tcpevents.c.
type Kind uint32

// The event kinds.
const (
	// KindOpen counts connections established; Code is a Direction. Active
	// ones carry the remote address and port, passive ones the local port.
	KindOpen Kind = 1
	// KindClose counts closed connections that had been established; Code is
	// the Direction of their opening, attributed like KindOpen, and the value
	// carries their lifetime when the opening was seen.
	KindClose Kind = 2
	// KindConnectFailure counts connects that ended in SYN_SENT -> CLOSE;
	// Code is the socket's error (an errno, 0 when none was set).
	KindConnectFailure Kind = 3
	// KindResetSent counts resets sent; Code is the kernel's enum
	// sk_rst_reason, or ReasonUnknown on kernels that do not pass one.
	// Keys carry the remote address and the local port that names a
	// service (no remote port: mostly ephemeral). LocalPort is 0 for a
	// reset on a connection this host opened (its port is ephemeral) and
	// for one that answers a segment other than a SYN that matched no
	// socket (a late FIN or ACK of a closed connection: its port may be
	// ephemeral too); a SYN to a closed port keeps that port.
	KindResetSent Kind = 4
	// KindResetReceived counts resets received. Like KindRetransmit, keys
	// carry the remote address and, of the two ports, the one that names
	// the service: the remote port of an active connection (one still in
	// SYN_SENT included), the local port otherwise.
	KindResetReceived Kind = 5
	// KindRetransmit counts retransmitted segments.
	KindRetransmit Kind = 6
	// KindSynAckRetransmit counts retransmitted SYN-ACKs; LocalPort is the
	// listener's port, RemotePort 0.
	KindSynAckRetransmit Kind = 7

	maxKind = KindSynAckRetransmit
)

var kindNames = [...]string{"", "open", "close", "connect_failure", "reset_sent", "reset_received", "retransmit", "synack_retransmit"}

func (k Kind) String() string {
	if k >= 1 && k <= maxKind {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// Direction is the Code of KindOpen and KindClose records.
type Direction uint32

// The directions of a connection.
const (
	// DirectionUnknown: the connection was opened before the programs were
	// loaded (or its per-socket record could not be stored).
	DirectionUnknown Direction = 0
	DirectionActive  Direction = 1
	DirectionPassive Direction = 2
)

func (d Direction) String() string {
	switch d {
	case DirectionActive:
		return "active"
	case DirectionPassive:
		return "passive"
	}
	return "unknown"
}

// ReasonUnknown is the Code of KindResetSent records from kernels whose
// tcp_send_reset tracepoint has no reason argument (before Linux 6.10).
const ReasonUnknown = 0xffffffff

// LifetimeBuckets are the upper bounds of the lifetime histogram's buckets;
// a last bucket, +Inf, follows. They mirror bounds in bpf/tcpevents.c.
var LifetimeBuckets = [...]time.Duration{
	time.Millisecond,
	5 * time.Millisecond,
	25 * time.Millisecond,
	100 * time.Millisecond,
	500 * time.Millisecond,
	time.Second,
	5 * time.Second,
	30 * time.Second,
	2 * time.Minute,
	10 * time.Minute,
	time.Hour,
}

// Sizes of the records in the maps, as the C compiler lays them out.
const (
	KeySize   = 40
	ValueSize = 8 * (2 + len(LifetimeBuckets) + 1)
)

// Key is a decoded map key. Records of the totals map carry only Netns, Kind
// and Code.
type Key struct {
	Netns      uint64
	Kind       Kind
	Code       uint32
	Addr       netip.Addr // remote address; invalid in totals
	LocalPort  uint16
	RemotePort uint16
}

// Value is a decoded map value.
type Value struct {
	Count       uint64
	LifetimeSum time.Duration
	// Lifetime counts closed connections per bucket (not cumulative); the
	// last entry is +Inf.
	Lifetime [len(LifetimeBuckets) + 1]uint64
}

// Errors of the decoders.
var (
	ErrRecordSize = errors.New("events: map record of unexpected size")
	ErrRecordKind = errors.New("events: map record of unknown kind")
	ErrFamily     = errors.New("events: map record of unknown address family")
)

const (
	afInet  = 2
	afInet6 = 10
)

// DecodeKey decodes a key of the totals or details map (struct key in
// bpf/tcpevents.c, native byte order).
func DecodeKey(b []byte) (Key, error) {
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("%w: key of %d bytes, want %d", ErrRecordSize, len(b), KeySize)
	}
	ne := binary.NativeEndian
	k := Key{
		Netns:      ne.Uint64(b[0:]),
		Kind:       Kind(ne.Uint32(b[8:])),
		Code:       ne.Uint32(b[12:]),
		LocalPort:  ne.Uint16(b[32:]),
		RemotePort: ne.Uint16(b[34:]),
	}
	if k.Kind < 1 || k.Kind > maxKind {
		return Key{}, fmt.Errorf("%w: %d", ErrRecordKind, uint32(k.Kind))
	}
	switch fam := b[36]; fam {
	case 0:
	case afInet:
		k.Addr = netip.AddrFrom4([4]byte(b[16:20]))
	case afInet6:
		k.Addr = netip.AddrFrom16([16]byte(b[16:32]))
	default:
		return Key{}, fmt.Errorf("%w: %d", ErrFamily, fam)
	}
	return k, nil
}

// encodeKey is DecodeKey's inverse, for tests and for deleting entries.
func encodeKey(k Key) []byte {
	b := make([]byte, KeySize)
	ne := binary.NativeEndian
	ne.PutUint64(b[0:], k.Netns)
	ne.PutUint32(b[8:], uint32(k.Kind))
	ne.PutUint32(b[12:], k.Code)
	switch {
	case k.Addr.Is4():
		a := k.Addr.As4()
		copy(b[16:], a[:])
		b[36] = afInet
	case k.Addr.IsValid():
		a := k.Addr.As16()
		copy(b[16:], a[:])
		b[36] = afInet6
	}
	ne.PutUint16(b[32:], k.LocalPort)
	ne.PutUint16(b[34:], k.RemotePort)
	return b
}

// DecodeValue decodes a value of the totals or details map (struct value).
func DecodeValue(b []byte) (Value, error) {
	if len(b) != ValueSize {
		return Value{}, fmt.Errorf("%w: value of %d bytes, want %d", ErrRecordSize, len(b), ValueSize)
	}
	ne := binary.NativeEndian
	v := Value{Count: ne.Uint64(b[0:])}
	sum := ne.Uint64(b[8:])
	if sum > 1<<63-1 {
		sum = 1<<63 - 1
	}
	v.LifetimeSum = time.Duration(sum)
	for i := range v.Lifetime {
		v.Lifetime[i] = ne.Uint64(b[16+8*i:])
	}
	return v, nil
}

// encodeValue is DecodeValue's inverse, for tests.
func encodeValue(v Value) []byte {
	b := make([]byte, ValueSize)
	ne := binary.NativeEndian
	ne.PutUint64(b[0:], v.Count)
	ne.PutUint64(b[8:], uint64(v.LifetimeSum))
	for i, n := range v.Lifetime {
		ne.PutUint64(b[16+8*i:], n)
	}
	return b
}

// Record is one decoded map entry.
type Record struct {
	Key
	Value
}

// Namespace holds the records of one network namespace.
type Namespace struct {
	// Totals are exact per (kind, code) unless Drops.Totals rose.
	Totals []Record
	// Details break the totals down by remote address and ports; they
	// miss what Drops.Details counts.
	Details []Record
}

// Total returns the sum of the totals of a kind over every code.
func (n *Namespace) Total(k Kind) uint64 {
	var s uint64
	for _, r := range n.Totals {
		if r.Kind == k {
			s += r.Count
		}
	}
	return s
}

// Drops counts events lost because a map was full (or, for Storage, the
// per-socket start time could not be stored), summed over CPUs, since load.
type Drops struct {
	Totals, Details, Storage uint64
}

// Snapshot is one read of the maps.
type Snapshot struct {
	Namespaces map[uint64]*Namespace
	Drops      Drops
	// Skipped counts records that did not decode; Err is the first such
	// error.
	Skipped int
	Err     error

	// sizeHint is each namespace's record count of the previous read
	// (totals, details), the capacity its slices start with.
	sizeHint map[uint64][2]int
}

// add files a raw record into the snapshot, counting one that does not
// decode.
func (s *Snapshot) add(details bool, kb, vb []byte) {
	k, err := DecodeKey(kb)
	if err == nil {
		var v Value
		v, err = DecodeValue(vb)
		if err == nil {
			ns := s.Namespaces[k.Netns]
			if ns == nil {
				ns = &Namespace{}
				if h, ok := s.sizeHint[k.Netns]; ok {
					ns.Totals = make([]Record, 0, h[0]+h[0]/8+1)
					ns.Details = make([]Record, 0, h[1]+h[1]/8+1)
				}
				s.Namespaces[k.Netns] = ns
			}
			if details {
				ns.Details = append(ns.Details, Record{k, v})
			} else {
				ns.Totals = append(ns.Totals, Record{k, v})
			}
			return
		}
	}
	s.Skipped++
	if s.Err == nil {
		s.Err = err
	}
}
