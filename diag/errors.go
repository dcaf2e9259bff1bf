package diag

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors a dump or a decoder can return; test with errors.Is.
var (
	// ErrTruncated reports a message shorter than its header says, or a
	// datagram larger than the receive buffer.
	ErrTruncated = errors.New("sock_diag: truncated message")
	// ErrUnavailable reports that the kernel has no inet_diag handler for the
	// request (module not loaded, or kernel built without it).
	ErrUnavailable = errors.New("sock_diag: inet_diag unavailable")
	// ErrClosed reports use of a closed or failed Conn.
	ErrClosed = errors.New("sock_diag: connection closed")
)

// ErrnoError is an error the kernel returned in an NLMSG_ERROR message or
// inside NLMSG_DONE. It unwraps to the errno, so errors.Is(err,
// os.ErrPermission) holds for EPERM and EACCES.
type ErrnoError struct {
	// Errno is the positive error number.
	Errno syscall.Errno
	// InDone is true when the error arrived as the payload of NLMSG_DONE.
	InDone bool
}

func (e *ErrnoError) Error() string {
	where := "error message"
	if e.InDone {
		where = "NLMSG_DONE"
	}
	return fmt.Sprintf("sock_diag: kernel returned %v in %s", e.Errno, where)
}

// Unwrap returns the errno, and ErrUnavailable for the errnos that mean the
// kernel lacks inet_diag.
func (e *ErrnoError) Unwrap() []error {
	if e.Errno == syscall.ENOENT || e.Errno == syscall.EOPNOTSUPP || e.Errno == syscall.EPROTONOSUPPORT {
		return []error{e.Errno, ErrUnavailable}
	}
	return []error{e.Errno}
}

// kernelErrno turns the kernel's negative errno into an error, nil for 0.
func kernelErrno(v int32, inDone bool) error {
	if v == 0 {
		return nil
	}
	if v < 0 {
		v = -v
	}
	return &ErrnoError{Errno: syscall.Errno(v), InDone: inDone}
}
