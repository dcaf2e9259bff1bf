package procnet

import (
	"strconv"
	"time"
)

// Process identifies a process that holds a socket.
type Process struct {
	// PID is the process (thread group) ID as seen in the proc root.
	PID int
	// Comm is the command name from /proc/PID/comm (at most 15 bytes, as the
	// kernel truncates it).
	Comm string
}

// LookupOptions bounds an inode lookup. The zero value scans every process
// until all inodes are found.
type LookupOptions struct {
	// MaxPIDs stops the scan after this many processes; 0 means no limit.
	MaxPIDs int
	// Timeout stops the scan once this much time has passed; 0 means no
	// limit. It is checked before each process and every 256 descriptors.
	Timeout time.Duration
	// AllOwners keeps scanning after every inode has been found, so that a
	// socket shared by several processes (inherited across fork, passed over
	// a unix socket) lists all of them. Without it the scan stops at the
	// first owner of the last inode found, and a shared socket may list only
	// the owners seen so far.
	AllOwners bool
	// Hint lists processes to scan before the rest, such as the owners a
	// previous lookup found. When they hold every inode the scan ends after
	// them, which turns a scan of the whole node into a few reads. Each
	// process is scanned at most once; hints that do not exist count as
	// vanished.
	Hint []int
	// After resumes a scan that a limit cut short (LookupStats.LastPID):
	// processes are scanned in ascending ID order starting above After and
	// wrapping around, so that successive bounded lookups cover every
	// process instead of rescanning the lowest IDs each time.
	After int
}

// LookupStats says what a lookup did.
type LookupStats struct {
	// PIDsScanned counts processes whose descriptor table was opened or
	// attempted.
	PIDsScanned int
	// FDsScanned counts descriptor links read.
	FDsScanned int
	// Vanished counts processes that exited while being scanned.
	Vanished int
	// Denied counts processes whose descriptors could not be read for lack
	// of permission (another user's process without CAP_SYS_PTRACE).
	Denied int
	// Failed counts processes skipped for any other error.
	Failed int
	// Incomplete is true when MaxPIDs or Timeout ended the scan while
	// inodes were still missing (or, with AllOwners, before the last
	// process).
	Incomplete bool
	// LastPID is the last process scanned, to pass as After to a lookup
	// that should carry on where a limit stopped this one.
	LastPID int
	// Elapsed is the wall time the lookup took.
	Elapsed time.Duration
}

// String formats a Process as "comm[pid]".
func (p Process) String() string { return p.Comm + "[" + strconv.Itoa(p.PID) + "]" }
