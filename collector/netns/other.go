//go:build !linux

package netns

import (
	"github.com/tcpstate/tcpstate-exporter/diag"
)

// DefaultRunDirs are the directories where namespaces are bind-mounted on
// Linux.
var DefaultRunDirs = []string{"/run/netns", "/var/run/netns"}

// Discover returns ErrUnsupported outside Linux.
func Discover(procRoot string, runDirs []string) ([]Namespace, DiscoverStats, error) {
	return nil, DiscoverStats{}, ErrUnsupported
}

// Handle is an open network namespace; outside Linux none can be opened.
type Handle struct {
	ns Namespace
}

// Open returns ErrUnsupported outside Linux.
func Open(ns Namespace, procRoot string) (*Handle, error) { return nil, ErrUnsupported }

// Namespace returns the namespace of the handle.
func (h *Handle) Namespace() Namespace { return h.ns }

func (h *Handle) update(ns Namespace) { h.ns = ns }

// Dial returns ErrUnsupported outside Linux.
func (h *Handle) Dial() (*diag.Conn, error) { return nil, ErrUnsupported }

// Do returns ErrUnsupported outside Linux.
func (h *Handle) Do(fn func() error) error { return ErrUnsupported }

// Close does nothing outside Linux.
func (h *Handle) Close() error { return nil }

func (h *Handle) present(procRoot string) bool { return false }
