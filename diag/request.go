package diag

import (
	"encoding/binary"
	"fmt"
)

// Method selects the request format.
type Method uint8

const (
	// MethodAuto uses MethodLegacy when both families are asked for and
	// MethodV2 otherwise.
	MethodAuto Method = iota
	// MethodLegacy sends TCPDIAG_GETSOCK (struct inet_diag_req): the kernel
	// walks its tables once and returns IPv4 and IPv6 sockets together.
	MethodLegacy
	// MethodV2 sends SOCK_DIAG_BY_FAMILY (struct inet_diag_req_v2), one
	// request per family.
	MethodV2
)

func (m Method) String() string {
	switch m {
	case MethodAuto:
		return "auto"
	case MethodLegacy:
		return "legacy"
	case MethodV2:
		return "v2"
	}
	return fmt.Sprintf("method_%d", uint8(m))
}

// Request describes one dump.
type Request struct {
	// States selects the states to dump; 0 means AllStates.
	States StateMask
	// Family is AFInet, AFInet6, or AFUnspec for both.
	Family Family
	// Extensions is the idiag_ext bitmask: bit (AttrX-1) asks for attribute
	// AttrX. Zero asks for none, the cheapest dump.
	Extensions uint8
	// Method selects the request format.
	Method Method
}

const ipprotoTCP = 6

// wireRequest is one netlink request to send.
type wireRequest struct {
	msgType uint16
	payload []byte
}

// plan returns the netlink requests that make up the dump.
func (r Request) plan() ([]wireRequest, error) {
	states := r.States
	if states == 0 {
		states = AllStates
	}
	switch r.Family {
	case AFUnspec, AFInet, AFInet6:
	default:
		return nil, fmt.Errorf("sock_diag: unsupported family %d", r.Family)
	}
	method := r.Method
	if method == MethodAuto {
		method = MethodV2
		if r.Family == AFUnspec {
			method = MethodLegacy
		}
	}
	switch method {
	case MethodLegacy:
		if r.Family != AFUnspec {
			return nil, fmt.Errorf("sock_diag: the legacy request cannot select family %v", r.Family)
		}
		return []wireRequest{{MsgTypeTCPDiagLegacy, marshalLegacy(states, r.Extensions)}}, nil
	case MethodV2:
		if r.Family == AFUnspec {
			return []wireRequest{
				{MsgTypeSockDiag, marshalV2(AFInet, states, r.Extensions)},
				{MsgTypeSockDiag, marshalV2(AFInet6, states, r.Extensions)},
			}, nil
		}
		return []wireRequest{{MsgTypeSockDiag, marshalV2(r.Family, states, r.Extensions)}}, nil
	}
	return nil, fmt.Errorf("sock_diag: unknown request method %v", method)
}

// marshalV2 encodes struct inet_diag_req_v2 (56 bytes). The socket id stays
// zero: a dump matches on states only.
func marshalV2(f Family, states StateMask, ext uint8) []byte {
	b := make([]byte, 56)
	b[0] = byte(f)
	b[1] = ipprotoTCP
	b[2] = ext
	binary.NativeEndian.PutUint32(b[4:8], uint32(states))
	return b
}

// marshalLegacy encodes struct inet_diag_req (60 bytes): family, src_len,
// dst_len, ext, the 48-byte socket id, states, dbs. The kernel ignores the
// family and dumps both.
func marshalLegacy(states StateMask, ext uint8) []byte {
	b := make([]byte, 60)
	b[0] = byte(AFInet)
	b[3] = ext
	binary.NativeEndian.PutUint32(b[52:56], uint32(states))
	return b
}
