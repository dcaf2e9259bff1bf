package diag

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Netlink constants (include/uapi/linux/netlink.h, sock_diag.h, inet_diag.h).
const (
	nlmsgHdrLen = 16

	nlmsgError = 2
	nlmsgDone  = 3

	nlmFRequest  = 0x1
	nlmFMulti    = 0x2
	nlmFDumpIntr = 0x10
	nlmFRoot     = 0x100
	nlmFMatch    = 0x200
	nlmFDump     = nlmFRoot | nlmFMatch

	// MsgTypeSockDiag is SOCK_DIAG_BY_FAMILY, the inet_diag_req_v2 request.
	MsgTypeSockDiag = 20
	// MsgTypeTCPDiagLegacy is TCPDIAG_GETSOCK, the legacy inet_diag_req
	// request: IPv4 and IPv6 in one walk of the kernel's tables.
	MsgTypeTCPDiagLegacy = 18

	// inetDiagMsgLen is sizeof(struct inet_diag_msg).
	inetDiagMsgLen = 72
)

// Header is a netlink message header.
type Header struct {
	Length   uint32
	Type     uint16
	Flags    uint16
	Sequence uint32
	PID      uint32
}

func align4(n int) int { return (n + 3) &^ 3 }

// NextMessage splits the first netlink message off b. It returns the header,
// the message body (aliasing b) and the rest of b after the aligned message.
// It checks lengths before reading and returns ErrTruncated when the header or
// body does not fit.
func NextMessage(b []byte) (h Header, body, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return Header{}, nil, nil, fmt.Errorf("%w: %d bytes left, header needs %d", ErrTruncated, len(b), nlmsgHdrLen)
	}
	h = Header{
		Length:   binary.NativeEndian.Uint32(b[0:4]),
		Type:     binary.NativeEndian.Uint16(b[4:6]),
		Flags:    binary.NativeEndian.Uint16(b[6:8]),
		Sequence: binary.NativeEndian.Uint32(b[8:12]),
		PID:      binary.NativeEndian.Uint32(b[12:16]),
	}
	if h.Length < nlmsgHdrLen || uint64(h.Length) > uint64(len(b)) {
		return Header{}, nil, nil, fmt.Errorf("%w: header says %d bytes, %d available", ErrTruncated, h.Length, len(b))
	}
	body = b[nlmsgHdrLen:h.Length]
	next := align4(int(h.Length))
	if next > len(b) {
		next = len(b)
	}
	return h, body, b[next:], nil
}

// DecodeSocket decodes an inet_diag_msg body into s. It accepts a longer
// message from a newer kernel (the extra bytes are attributes) but not a
// shorter one. Attrs aliases body.
func DecodeSocket(body []byte, s *Socket) error {
	if len(body) < inetDiagMsgLen {
		return fmt.Errorf("%w: inet_diag_msg is %d bytes, need %d", ErrTruncated, len(body), inetDiagMsgLen)
	}
	s.Family = Family(body[0])
	s.State = State(body[1])
	s.Timer = Timer(body[2])
	s.Retrans = body[3]
	s.SrcPort = binary.BigEndian.Uint16(body[4:6])
	s.DstPort = binary.BigEndian.Uint16(body[6:8])
	switch s.Family {
	case AFInet:
		s.Src = netip.AddrFrom4([4]byte(body[8:12]))
		s.Dst = netip.AddrFrom4([4]byte(body[24:28]))
	case AFInet6:
		s.Src = netip.AddrFrom16([16]byte(body[8:24]))
		s.Dst = netip.AddrFrom16([16]byte(body[24:40]))
	default:
		s.Src, s.Dst = netip.Addr{}, netip.Addr{}
	}
	s.Interface = binary.NativeEndian.Uint32(body[40:44])
	s.Cookie = uint64(binary.NativeEndian.Uint32(body[44:48])) | uint64(binary.NativeEndian.Uint32(body[48:52]))<<32
	s.Expires = binary.NativeEndian.Uint32(body[52:56])
	s.RQueue = binary.NativeEndian.Uint32(body[56:60])
	s.WQueue = binary.NativeEndian.Uint32(body[60:64])
	s.UID = binary.NativeEndian.Uint32(body[64:68])
	s.Inode = binary.NativeEndian.Uint32(body[68:72])
	s.Attrs = body[inetDiagMsgLen:]
	return nil
}

// Attribute types of inet_diag replies (INET_DIAG_*).
const (
	AttrMemInfo  = 1
	AttrInfo     = 2
	AttrCong     = 4
	AttrShutdown = 8
)

// NextAttr splits the first rtattr off b: its type, its payload (aliasing b)
// and the rest after the aligned attribute. ok is false when b is empty; err
// is ErrTruncated when the attribute does not fit.
func NextAttr(b []byte) (typ uint16, payload, rest []byte, ok bool, err error) {
	if len(b) == 0 {
		return 0, nil, nil, false, nil
	}
	if len(b) < 4 {
		return 0, nil, nil, false, fmt.Errorf("%w: %d bytes left, attribute header needs 4", ErrTruncated, len(b))
	}
	l := int(binary.NativeEndian.Uint16(b[0:2]))
	typ = binary.NativeEndian.Uint16(b[2:4]) & 0x3fff // strip NLA_F_NESTED and NLA_F_NET_BYTEORDER
	if l < 4 || l > len(b) {
		return 0, nil, nil, false, fmt.Errorf("%w: attribute says %d bytes, %d available", ErrTruncated, l, len(b))
	}
	next := align4(l)
	if next > len(b) {
		next = len(b)
	}
	return typ, b[4:l], b[next:], true, nil
}
