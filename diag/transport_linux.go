//go:build linux

package diag

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DialOptions configure Dial.
type DialOptions struct {
	// NetNS is a file descriptor of a network namespace (for example from
	// vishvananda/netns or an open /run/netns/NAME). The netlink socket is
	// created inside it, so every dump reads that namespace. Zero means the
	// caller's own namespace.
	NetNS int
}

// Dial opens a NETLINK_SOCK_DIAG socket. Opening one in the caller's own
// namespace needs no privilege; entering another namespace needs
// CAP_SYS_ADMIN (errors.Is(err, os.ErrPermission) tells).
func Dial(cfg *DialOptions) (*Conn, error) {
	t, err := DialTransport(cfg)
	if err != nil {
		return nil, err
	}
	return NewConn(t), nil
}

// DialTransport opens the netlink socket behind Dial and returns it as a
// Transport, for callers that wrap it (to record a dump, or inject faults).
func DialTransport(cfg *DialOptions) (Transport, error) {
	var nc netlink.Config
	if cfg != nil {
		nc.NetNS = cfg.NetNS
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &nc)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: opening netlink socket: %w", err)
	}
	t, err := newNetlinkTransport(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return t, nil
}

// netlinkTransport writes requests and receives with recvmsg into the
// caller's buffer, through the syscall.RawConn of a socket mdlayher/netlink
// opened (in the namespace asked for): netlink's own Receive allocates a buffer and a message slice per datagram, which at
// a million sockets is thousands of allocations per dump.
type netlinkTransport struct {
	c  *netlink.Conn
	rc syscall.RawConn

	// State of the current recvmsg, kept here so that the read callback is
	// allocated once, not per datagram.
	iov    unix.Iovec
	msg    unix.Msghdr
	n      int
	errno  syscall.Errno
	readFn func(fd uintptr) bool

	// The request being sent and the sequence number of the latest.
	seq     uint32
	wbuf    []byte
	wmsg    []byte
	werr    error
	writeFn func(fd uintptr) bool
}

func newNetlinkTransport(c *netlink.Conn) (*netlinkTransport, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sock_diag: raw access to netlink socket: %w", err)
	}
	// A random first sequence number, as mdlayher/netlink chooses.
	t := &netlinkTransport{c: c, rc: rc, seq: rand.Uint32()}
	t.readFn = t.recvmsg
	t.writeFn = t.write
	return t, nil
}

func (t *netlinkTransport) recvmsg(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&t.msg)), 0)
		switch e {
		case 0:
			t.n, t.errno = int(r), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the poller
		default:
			t.n, t.errno = 0, e
			return true
		}
	}
}

// Send writes one request with NLM_F_REQUEST|NLM_F_DUMP through the
// socket's RawConn. mdlayher/netlink's Send starts a goroutine per call to
// watch its context, which on the cheap path (a LISTEN-only dump every
// second for every namespace) cost more than the dump; this does not.
func (t *netlinkTransport) Send(msgType uint16, payload []byte) (uint32, error) {
	t.seq++
	n := unix.NLMSG_HDRLEN + len(payload)
	if cap(t.wbuf) < n {
		t.wbuf = make([]byte, n)
	}
	b := t.wbuf[:n]
	binary.NativeEndian.PutUint32(b[0:4], uint32(n))
	binary.NativeEndian.PutUint16(b[4:6], msgType)
	binary.NativeEndian.PutUint16(b[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:12], t.seq)
	binary.NativeEndian.PutUint32(b[12:16], 0) // the kernel fills in the sender
	copy(b[unix.NLMSG_HDRLEN:], payload)
	t.wmsg = b
	err := t.rc.Write(t.writeFn)
	t.wmsg = nil
	if err == nil {
		err = t.werr
	}
	if err != nil {
		return 0, os.NewSyscallError("write", err)
	}
	return t.seq, nil
}

func (t *netlinkTransport) write(fd uintptr) bool {
	for {
		_, err := unix.Write(int(fd), t.wmsg)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the poller
		}
		t.werr = err
		return true
	}
}

func (t *netlinkTransport) Receive(b []byte) (int, bool, error) {
	if len(b) == 0 {
		return 0, false, fmt.Errorf("sock_diag: empty receive buffer")
	}
	t.iov.Base = &b[0]
	t.iov.SetLen(len(b))
	t.msg = unix.Msghdr{Iov: &t.iov, Iovlen: 1}
	if err := t.rc.Read(t.readFn); err != nil {
		return 0, false, err
	}
	// Drop the reference to b so the transport does not pin the caller's buffer.
	t.iov.Base = nil
	if t.errno != 0 {
		return 0, false, t.errno
	}
	return t.n, t.msg.Flags&unix.MSG_TRUNC != 0, nil
}

func (t *netlinkTransport) SetReadDeadline(d time.Time) error { return t.c.SetReadDeadline(d) }

func (t *netlinkTransport) Close() error { return t.c.Close() }

// startClock locks the calling goroutine to its OS thread, so that the
// thread's CPU time is the dump's, and returns a function that unlocks it and
// reports wall and CPU time.
func startClock() func() (wall, cpu time.Duration) {
	runtime.LockOSThread()
	start := time.Now()
	cpu0 := threadCPU()
	return func() (time.Duration, time.Duration) {
		cpu := threadCPU() - cpu0
		runtime.UnlockOSThread()
		return time.Since(start), cpu
	}
}

// threadCPU returns the calling thread's CPU time from
// CLOCK_THREAD_CPUTIME_ID, which is exact for the running thread (getrusage
// RUSAGE_THREAD moves only at scheduler ticks).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
