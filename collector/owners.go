package collector

import (
	"slices"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// OwnerLookup maps socket inodes to the processes holding them, spending at
// most timeout; inodes it cannot place are absent from the result, and
// complete is false when the timeout cut the scan short. The default is
// resumingLookup over a procnet.InodeLookup.
type OwnerLookup func(inodes []uint64, timeout time.Duration) (owners map[uint64][]procnet.Process, complete bool, err error)

// maxOwnerHints bounds the processes remembered as likely owners.
const maxOwnerHints = 16

// resumingLookup is the default OwnerLookup. A lookup cut short by its
// timeout is resumed by the next one after the last process it scanned, so
// that on a node with many descriptors successive bounded lookups cover
// every process instead of rescanning the same first ones; and the
// processes that owned CLOSE_WAIT sockets before are scanned first, since a
// leaking process tends to keep leaking. maxPIDs, when positive, also bounds
// each lookup (for tests).
func resumingLookup(il *procnet.InodeLookup, maxPIDs int) OwnerLookup {
	var after int
	var hints []int
	return func(inodes []uint64, timeout time.Duration) (map[uint64][]procnet.Process, bool, error) {
		owners, st, err := il.Lookup(inodes, procnet.LookupOptions{Timeout: timeout, MaxPIDs: maxPIDs, After: after, Hint: hints})
		after = 0
		if st.Incomplete {
			after = st.LastPID
		}
		for _, ps := range owners {
			for _, p := range ps {
				if !slices.Contains(hints, p.PID) {
					hints = append(hints, p.PID)
				}
			}
		}
		if len(hints) > maxOwnerHints {
			hints = slices.Clone(hints[len(hints)-maxOwnerHints:])
		}
		return owners, !st.Incomplete && err == nil, err
	}
}
