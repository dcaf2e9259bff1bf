package diag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Transport is the seam between the dump logic and a netlink socket. The
// Linux implementation wraps a mdlayher/netlink connection; tests use a
// scripted one (see package diagtest).
type Transport interface {
	// Send sends one request message with NLM_F_REQUEST|NLM_F_DUMP and
	// returns the sequence number it carried.
	Send(msgType uint16, payload []byte) (seq uint32, err error)
	// Receive reads one datagram into b. truncated reports that the datagram
	// did not fit.
	Receive(b []byte) (n int, truncated bool, err error)
	// SetReadDeadline bounds the following Receive calls.
	SetReadDeadline(t time.Time) error
	// Close releases the socket.
	Close() error
}

// DefaultBufferSize is the receive buffer of a Conn. The kernel fills at most
// ~32 KiB per datagram for a dump; twice that leaves room.
const DefaultBufferSize = 64 << 10

// DefaultTimeout bounds a whole dump.
const DefaultTimeout = 30 * time.Second

// Conn runs dumps over one netlink socket. It is not safe for concurrent
// use. After a dump fails for any reason other than its callback's error the
// Conn is unusable (the kernel may still hold the rest of the dump) and every
// later call returns an error wrapping ErrClosed: close it and dial again.
type Conn struct {
	t       Transport
	buf     []byte // the receive buffer, held only during a dump
	sock    Socket
	timeout time.Duration
	failed  error
}

// NewConn returns a Conn over t. Most callers use Dial.
func NewConn(t Transport) *Conn {
	return &Conn{t: t, timeout: DefaultTimeout}
}

// bufPool holds receive buffers. A Conn takes one for the length of a dump
// and gives it back, so that many Conns dumping in turn (one per network
// namespace) share a few buffers instead of holding one each.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, DefaultBufferSize)
	return &b
}}

// SetTimeout sets the bound on each dump; d <= 0 disables it.
func (c *Conn) SetTimeout(d time.Duration) { c.timeout = d }

// Close closes the underlying socket.
func (c *Conn) Close() error {
	if c.failed == nil {
		c.failed = ErrClosed
	}
	return c.t.Close()
}

// Stats describes one dump.
type Stats struct {
	// Sockets is the number of sockets handed to the callback.
	Sockets int
	// Messages counts netlink messages read, Datagrams the recv calls and
	// Bytes their total size.
	Messages  int
	Datagrams int
	Bytes     int
	// Skipped counts messages ignored: stale sequence numbers or types that
	// are neither sockets, errors nor the end of the dump.
	Skipped int
	// Interrupted is set when a reply carried NLM_F_DUMP_INTR. The dump
	// does not fail for it. inet_diag does not check its dumps for
	// consistency and does not set the flag: a dump is never an atomic
	// snapshot, flagged or not.
	Interrupted bool
	// Wall is the elapsed time of the dump; CPU the user and system time the
	// dumping thread spent, which includes the kernel's work of filling the
	// replies (zero where the platform cannot measure it).
	Wall time.Duration
	CPU  time.Duration
}

// Dump runs the dump described by req and calls fn for every socket, in the
// kernel's order. s is reused for the next socket: copy what you keep. If fn
// returns an error the dump stops, the Conn becomes unusable, and Dump
// returns that error. Stats are returned also on error.
func (c *Conn) Dump(req Request, fn func(s *Socket) error) (st Stats, err error) {
	if c.failed != nil {
		return st, fmt.Errorf("sock_diag: dump on a failed connection: %w (%w)", ErrClosed, c.failed)
	}
	plan, perr := req.plan()
	if perr != nil {
		return st, perr
	}
	stop := startClock()
	defer func() { st.Wall, st.CPU = stop() }()
	bp := bufPool.Get().(*[]byte)
	c.buf = *bp
	defer func() {
		c.buf = nil
		bufPool.Put(bp)
	}()
	if c.timeout > 0 {
		if err := c.t.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return st, fmt.Errorf("sock_diag: setting read deadline: %w", err)
		}
	}
	for _, w := range plan {
		if err := c.dumpOne(w, fn, &st); err != nil {
			c.failed = err
			return st, err
		}
	}
	return st, nil
}

// errDone ends the message loop at NLMSG_DONE.
var errDone = errors.New("done")

func (c *Conn) dumpOne(w wireRequest, fn func(*Socket) error, st *Stats) error {
	seq, err := c.t.Send(w.msgType, w.payload)
	if err != nil {
		return fmt.Errorf("sock_diag: sending request: %w", err)
	}
	for {
		n, truncated, err := c.t.Receive(c.buf)
		if err != nil {
			return fmt.Errorf("sock_diag: receiving dump: %w", err)
		}
		if truncated {
			return fmt.Errorf("%w: datagram larger than the %d-byte receive buffer", ErrTruncated, len(c.buf))
		}
		st.Datagrams++
		st.Bytes += n
		err = c.handleDatagram(c.buf[:n], seq, w.msgType, fn, st)
		if errors.Is(err, errDone) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// handleDatagram decodes every message of one datagram.
func (c *Conn) handleDatagram(b []byte, seq uint32, replyType uint16, fn func(*Socket) error, st *Stats) error {
	for len(b) > 0 {
		h, body, rest, err := NextMessage(b)
		if err != nil {
			return err
		}
		b = rest
		st.Messages++
		if h.Sequence != seq {
			st.Skipped++
			continue
		}
		if h.Flags&nlmFDumpIntr != 0 {
			st.Interrupted = true
		}
		switch h.Type {
		case replyType:
			if err := DecodeSocket(body, &c.sock); err != nil {
				return err
			}
			st.Sockets++
			if err := fn(&c.sock); err != nil {
				return err
			}
		case nlmsgDone:
			// Since Linux 4.x a dump's NLMSG_DONE carries an int: 0 or a
			// negative errno for a dump that failed part way.
			if len(body) >= 4 {
				if err := kernelErrno(int32(binary.NativeEndian.Uint32(body[:4])), true); err != nil {
					return err
				}
			}
			return errDone
		case nlmsgError:
			if len(body) < 4 {
				return fmt.Errorf("%w: NLMSG_ERROR with %d-byte body", ErrTruncated, len(body))
			}
			if err := kernelErrno(int32(binary.NativeEndian.Uint32(body[:4])), false); err != nil {
				return err
			}
			// An acknowledgement (errno 0) is not expected for a dump; skip it.
			st.Skipped++
		default:
			st.Skipped++
		}
	}
	return nil
}
