//go:build linux

package netns

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// DefaultRunDirs are the directories where `ip netns` and container runtimes
// bind-mount namespaces. On most systems /var/run is a link to /run; the
// duplicates collapse by inode.
var DefaultRunDirs = []string{"/run/netns", "/var/run/netns"}

// statKey stats path, following the magic /proc/PID/ns/net link, and
// returns the namespace key.
func statKey(path string) (Key, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Key{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return Key{Dev: uint64(st.Dev), Inode: st.Ino}, nil
}

// fstatKey returns the namespace key of an open descriptor.
func fstatKey(fd int) (Key, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Key{}, fmt.Errorf("fstat: %w", err)
	}
	return Key{Dev: uint64(st.Dev), Inode: st.Ino}, nil
}

// Discover lists the network namespaces on the node: those of every process
// under procRoot (normally /proc; with hostPID, the node's processes) and the
// bind mounts in runDirs (missing directories are skipped). It deduplicates
// them by device and inode, marks the agent's own (procRoot/self/ns/net) as
// the host and always includes it, and returns them host first, then by
// inode.
//
// Processes that exit during the scan are skipped and counted in
// DiscoverStats.Vanished, processes that cannot be inspected in Denied. An
// error means procRoot, the agent's own namespace or a run directory could
// not be read at all.
func Discover(procRoot string, runDirs []string) ([]Namespace, DiscoverStats, error) {
	var st DiscoverStats
	own, err := statKey(filepath.Join(procRoot, "self", "ns", "net"))
	if err != nil {
		return nil, st, fmt.Errorf("netns: finding the agent's own namespace: %w", err)
	}
	found := map[Key]*Namespace{own: {Key: own, IsHost: true}}
	get := func(k Key) *Namespace {
		ns := found[k]
		if ns == nil {
			ns = &Namespace{Key: k}
			found[k] = ns
		}
		return ns
	}

	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, st, fmt.Errorf("netns: listing processes: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		st.Processes++
		k, err := statKey(filepath.Join(procRoot, e.Name(), "ns", "net"))
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrPermission):
			st.Denied++
			continue
		default:
			// ENOENT or ESRCH: the process exited, or is a zombie.
			st.Vanished++
			continue
		}
		if k.Dev != own.Dev {
			// Not an nsfs file: a fake or broken procfs entry.
			st.NotNamespace++
			continue
		}
		ns := get(k)
		ns.PIDs = addPID(ns.PIDs, pid)
	}

	for _, dir := range runDirs {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, st, fmt.Errorf("netns: listing namespace mounts: %w", err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			k, err := statKey(p)
			if err != nil {
				st.Vanished++
				continue
			}
			// Every namespace file lives on the one nsfs device; a plain
			// file here is a mount point without a namespace on it.
			if k.Dev != own.Dev {
				st.NotNamespace++
				continue
			}
			st.Mounts++
			if ns := get(k); ns.Path == "" {
				ns.Path = p
			}
		}
	}

	out := make([]Namespace, 0, len(found))
	for _, ns := range found {
		if len(ns.PIDs) > 0 {
			ns.PID = ns.PIDs[0]
		}
		out = append(out, *ns)
	}
	slices.SortFunc(out, func(a, b Namespace) int {
		if a.IsHost != b.IsHost {
			if a.IsHost {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.Inode, b.Inode); c != 0 {
			return c
		}
		return cmp.Compare(a.Dev, b.Dev)
	})
	return out, st, nil
}

// addPID inserts pid into the sorted list, keeping the MaxPIDs lowest.
func addPID(pids []int, pid int) []int {
	i, _ := slices.BinarySearch(pids, pid)
	if i >= MaxPIDs {
		return pids
	}
	pids = slices.Insert(pids, i, pid)
	if len(pids) > MaxPIDs {
		pids = pids[:MaxPIDs]
	}
	return pids
}
