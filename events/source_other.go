//go:build !linux

package events

import "errors"

// ErrUnsupported is returned on platforms other than Linux.
var ErrUnsupported = errors.New("events: only supported on Linux")

// SourceOptions configure the event source (Open).
type SourceOptions struct {
	Netns uint64
}

// Source is unavailable on this platform.
type Source struct{}

// Check always fails on this platform.
func Check() error { return ErrUnsupported }

// Open always fails on this platform.
func Open(SourceOptions) (*Source, error) { return nil, ErrUnsupported }

// NetnsCookie always fails on this platform.
func NetnsCookie() (uint64, error) { return 0, ErrUnsupported }

// Read always fails on this platform.
func (s *Source) Read() (*Snapshot, error) { return nil, ErrUnsupported }

// Prune always fails on this platform.
func (s *Source) Prune(func(uint64) bool) (int, error) { return 0, ErrUnsupported }

// ResetReason returns "unknown".
func (s *Source) ResetReason(uint32) string { return "unknown" }

// HasResetReason returns false.
func (s *Source) HasResetReason() bool { return false }

// Close does nothing.
func (s *Source) Close() error { return nil }
