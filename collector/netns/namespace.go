package netns

import (
	"errors"
	"strconv"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// Key identifies a network namespace: the device and inode of its nsfs file,
// as stat(2) reports them for /proc/PID/ns/net or a bind mount of it.
type Key struct {
	Dev   uint64
	Inode uint64
}

// Namespace is a network namespace found by Discover.
type Namespace struct {
	Key
	// PID is the lowest process ID found in the namespace, 0 when it was
	// found only through a bind mount. PIDs holds up to MaxPIDs of the
	// lowest, PID first.
	PID  int
	PIDs []int
	// Path is a bind mount of the namespace in a run directory (for
	// example /run/netns/NAME), "" when there is none.
	Path string
	// IsHost is set for the agent's own namespace.
	IsHost bool
}

// MaxPIDs is how many process IDs Discover keeps per namespace: enough to
// find another when the first exits, or a process whose cgroup names its pod.
const MaxPIDs = 4

// Label returns the value of the netns label: collector.HostTarget for the
// agent's own namespace, else the inode in decimal.
func (n Namespace) Label() string {
	if n.IsHost {
		return collector.HostTarget
	}
	return strconv.FormatUint(n.Inode, 10)
}

// DiscoverStats counts what one Discover call saw.
type DiscoverStats struct {
	// Processes is the number of process directories scanned.
	Processes int
	// Vanished counts processes (or bind mounts) that went away during the
	// scan, and zombies, which have no namespace links.
	Vanished int
	// Denied counts processes whose namespace link could not be read for
	// lack of privilege (CAP_SYS_PTRACE for other users' processes).
	Denied int
	// Mounts counts namespace bind mounts found in the run directories.
	Mounts int
	// NotNamespace counts run-directory entries that are not namespace
	// files, such as a mount point left behind by a failed `ip netns add`.
	NotNamespace int
}

// Errors of this package; test with errors.Is.
var (
	// ErrGone reports a namespace that no longer exists, or a Handle
	// that was closed because its namespace went away.
	ErrGone = errors.New("netns: namespace gone")
	// ErrUnsupported is returned on systems without network namespaces.
	ErrUnsupported = errors.New("netns: network namespaces are supported on Linux only")
)
