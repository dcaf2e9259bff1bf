// Package diagtest drives diag.Conn without a kernel: a scripted Transport
// and encoders for the messages the kernel sends. Tests use it to check the
// netlink exchange and to inject faults (errors, truncation, interruption)
// without root.
package diagtest

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// Request is one request a Transport received.
type Request struct {
	Type    uint16
	Payload []byte
	Seq     uint32
}

// Transport is a scripted diag.Transport. For every request it calls
// Handler, which returns the datagrams the "kernel" answers with. Receive
// hands them out in order; once they run out it returns
// os.ErrDeadlineExceeded, as a real socket whose dump never ends would.
type Transport struct {
	// Handler answers a request; nil answers with an empty dump.
	Handler func(r Request) ([][]byte, error)
	// RecvErr, when set, is returned by Receive after the datagrams run out
	// instead of os.ErrDeadlineExceeded.
	RecvErr error

	mu       sync.Mutex
	seq      uint32
	queue    [][]byte
	requests []Request
	closed   bool
}

// ErrClosed is returned by a closed Transport.
var ErrClosed = errors.New("diagtest: transport closed")

// Send records the request and queues the Handler's datagrams.
func (t *Transport) Send(msgType uint16, payload []byte) (uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrClosed
	}
	t.seq++
	r := Request{Type: msgType, Payload: append([]byte(nil), payload...), Seq: t.seq}
	t.requests = append(t.requests, r)
	if t.Handler == nil {
		t.queue = append(t.queue, Done(r.Seq, 0))
		return r.Seq, nil
	}
	dgs, err := t.Handler(r)
	if err != nil {
		return 0, err
	}
	t.queue = append(t.queue, dgs...)
	return r.Seq, nil
}

// Receive copies the next queued datagram into b.
func (t *Transport) Receive(b []byte) (int, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, false, ErrClosed
	}
	if len(t.queue) == 0 {
		if t.RecvErr != nil {
			return 0, false, t.RecvErr
		}
		return 0, false, os.ErrDeadlineExceeded
	}
	d := t.queue[0]
	t.queue = t.queue[1:]
	n := copy(b, d)
	return n, n < len(d), nil
}

// SetReadDeadline is a no-op.
func (t *Transport) SetReadDeadline(time.Time) error { return nil }

// Close marks the transport closed.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return nil
}

// Requests returns the requests received so far.
func (t *Transport) Requests() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Request(nil), t.requests...)
}

// Closed reports whether Close was called.
func (t *Transport) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Message encodes a netlink message with the given header fields and body.
func Message(typ, flags uint16, seq uint32, body []byte) []byte {
	l := 16 + len(body)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint32(b[0:4], uint32(l))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	copy(b[16:], body)
	return b
}

// Done encodes NLMSG_DONE carrying errno (0 or a negative errno).
func Done(seq uint32, errno int32) []byte {
	body := make([]byte, 4)
	binary.NativeEndian.PutUint32(body, uint32(errno))
	return Message(3, 2, seq, body)
}

// Error encodes NLMSG_ERROR with a negative errno and a copy of a request
// header, as the kernel does.
func Error(seq uint32, errno int32) []byte {
	body := make([]byte, 4+16)
	binary.NativeEndian.PutUint32(body[0:4], uint32(errno))
	return Message(2, 0, seq, body)
}

// SocketMessage encodes s as a reply of type typ (diag.MsgTypeSockDiag or
// diag.MsgTypeTCPDiagLegacy) with NLM_F_MULTI.
func SocketMessage(typ uint16, seq uint32, s *diag.Socket) []byte {
	return Message(typ, 2, seq, EncodeSocket(s))
}

// EncodeSocket encodes s as an inet_diag_msg followed by s.Attrs; it is the
// inverse of diag.DecodeSocket.
func EncodeSocket(s *diag.Socket) []byte {
	b := make([]byte, 72+len(s.Attrs))
	b[0], b[1], b[2], b[3] = byte(s.Family), byte(s.State), byte(s.Timer), s.Retrans
	binary.BigEndian.PutUint16(b[4:6], s.SrcPort)
	binary.BigEndian.PutUint16(b[6:8], s.DstPort)
	if s.Src.IsValid() {
		a := s.Src.AsSlice()
		copy(b[8:24], a)
	}
	if s.Dst.IsValid() {
		a := s.Dst.AsSlice()
		copy(b[24:40], a)
	}
	binary.NativeEndian.PutUint32(b[40:44], s.Interface)
	binary.NativeEndian.PutUint32(b[44:48], uint32(s.Cookie))
	binary.NativeEndian.PutUint32(b[48:52], uint32(s.Cookie>>32))
	binary.NativeEndian.PutUint32(b[52:56], s.Expires)
	binary.NativeEndian.PutUint32(b[56:60], s.RQueue)
	binary.NativeEndian.PutUint32(b[60:64], s.WQueue)
	binary.NativeEndian.PutUint32(b[64:68], s.UID)
	binary.NativeEndian.PutUint32(b[68:72], s.Inode)
	copy(b[72:], s.Attrs)
	return b
}

// Attr encodes one rtattr with padding.
func Attr(typ uint16, payload []byte) []byte {
	l := 4 + len(payload)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[4:], payload)
	return b
}

// Datagram concatenates messages into one datagram.
func Datagram(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = append(b, m...)
	}
	return b
}

// Reply answers a request with the given sockets, split into datagrams of at
// most perDatagram messages, and a final NLMSG_DONE. It sets each socket's
// family to AFInet6 or AFInet from its source address.
func Reply(r Request, perDatagram int, socks []diag.Socket) [][]byte {
	if perDatagram < 1 {
		perDatagram = 1
	}
	var out [][]byte
	var cur []byte
	n := 0
	for i := range socks {
		cur = append(cur, SocketMessage(r.Type, r.Seq, &socks[i])...)
		n++
		if n == perDatagram {
			out = append(out, cur)
			cur, n = nil, 0
		}
	}
	cur = append(cur, Done(r.Seq, 0)...)
	return append(out, cur)
}

// Recorder wraps a real Transport and keeps a copy of every datagram it
// receives, to record real dumps as test data.
type Recorder struct {
	diag.Transport
	mu        sync.Mutex
	Datagrams [][]byte
}

// Receive reads from the wrapped transport and records the datagram.
func (r *Recorder) Receive(b []byte) (int, bool, error) {
	n, trunc, err := r.Transport.Receive(b)
	if err == nil {
		r.mu.Lock()
		r.Datagrams = append(r.Datagrams, append([]byte(nil), b[:n]...))
		r.mu.Unlock()
	}
	return n, trunc, err
}

// MarshalDatagrams encodes datagrams as a file: each one preceded by its
// length as a little-endian uint32.
func MarshalDatagrams(dgs [][]byte) []byte {
	var out []byte
	for _, d := range dgs {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(d)))
		out = append(out, d...)
	}
	return out
}

// UnmarshalDatagrams is the inverse of MarshalDatagrams. A trailing partial
// record is returned as a final, shorter datagram, so fuzzed input always
// yields something to feed.
func UnmarshalDatagrams(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 4 {
		n := int(binary.LittleEndian.Uint32(b[:4]))
		b = b[4:]
		if n > len(b) {
			n = len(b)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// States returns the state mask the request asks for, from either request
// format.
func (r Request) States() diag.StateMask {
	off := 4 // inet_diag_req_v2: family, protocol, ext, pad, states
	if r.Type == diag.MsgTypeTCPDiagLegacy {
		off = 52 // inet_diag_req: family, src_len, dst_len, ext, id, states
	}
	if len(r.Payload) < off+4 {
		return 0
	}
	return diag.StateMask(binary.NativeEndian.Uint32(r.Payload[off : off+4]))
}

// Dialer returns a dial function for a scripted kernel holding socks: every
// dump answers with the sockets in the states it asks for, seven messages
// to a datagram. As the real kernel does, a SOCK_DIAG_BY_FAMILY request gets
// only its family's sockets (the legacy request both), and request sockets
// (NewSynRecv) are answered with state SynRecv.
func Dialer(socks []diag.Socket) func() (*diag.Conn, error) {
	return func() (*diag.Conn, error) {
		return diag.NewConn(&Transport{Handler: func(r Request) ([][]byte, error) {
			mask := r.States()
			var sel []diag.Socket
			for _, s := range socks {
				if s.State == diag.NewSynRecv {
					s.State = diag.SynRecv
				}
				if r.Type == diag.MsgTypeSockDiag && len(r.Payload) > 0 && s.Family != diag.Family(r.Payload[0]) {
					continue
				}
				if mask.Has(s.State) {
					sel = append(sel, s)
				}
			}
			return Reply(r, 7, sel), nil
		}}), nil
	}
}
