//go:build !linux

package procnet

import (
	"errors"
	"fmt"
)

// InodeLookup finds the processes that own socket inodes. It is only
// implemented on Linux.
type InodeLookup struct{}

// NewInodeLookup returns an InodeLookup that always fails on this platform.
func NewInodeLookup(procRoot string) *InodeLookup { return &InodeLookup{} }

// Lookup returns an error wrapping errors.ErrUnsupported.
func (l *InodeLookup) Lookup(inodes []uint64, opts LookupOptions) (map[uint64][]Process, LookupStats, error) {
	return nil, LookupStats{}, fmt.Errorf("procnet: socket owner lookup: %w", errors.ErrUnsupported)
}
