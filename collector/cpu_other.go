//go:build !linux

package collector

import "time"

// threadCPU cannot be measured outside Linux.
func threadCPU() time.Duration { return 0 }

// threadID is 0 outside Linux.
func threadID() int { return 0 }

// processCPU cannot be measured outside Linux.
func processCPU() time.Duration { return 0 }
