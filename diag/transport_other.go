//go:build !linux

package diag

import (
	"errors"
	"time"
)

// ErrUnsupported is returned by Dial on platforms without sock_diag.
var ErrUnsupported = errors.New("sock_diag: only supported on Linux")

// DialOptions configure Dial.
type DialOptions struct {
	// NetNS is a network namespace file descriptor; Linux only.
	NetNS int
}

// Dial returns ErrUnsupported: sock_diag exists only on Linux.
func Dial(cfg *DialOptions) (*Conn, error) { return nil, ErrUnsupported }

// DialTransport returns ErrUnsupported: sock_diag exists only on Linux.
func DialTransport(cfg *DialOptions) (Transport, error) { return nil, ErrUnsupported }

func startClock() func() (wall, cpu time.Duration) {
	start := time.Now()
	return func() (time.Duration, time.Duration) { return time.Since(start), 0 }
}
