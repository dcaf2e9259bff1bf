package podinfo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// podSegment matches the path segment that kubelet gives a pod's cgroup:
//
//	pod<uid>                                   cgroupfs driver
//	kubepods-burstable-pod<uid_with_underscores>.slice   systemd driver
//	kubelet-kubepods-besteffort-pod<uid>.slice           systemd, kubelet cgroup root
//
// The UID is a UUID, or for a static pod the 32 hex digits of its config
// hash. The systemd driver writes the dashes of a UUID as underscores.
var podSegment = regexp.MustCompile(`^(?:[a-z0-9_.-]*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?$`)

// UIDFromPath returns the pod UID in a cgroup path, "" if the path is not
// inside a pod's cgroup. A path relative to a cgroup namespace (with ".."
// segments) works as long as it still names the pod's segment.
func UIDFromPath(path string) string {
	segs := strings.Split(path, "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if m := podSegment.FindStringSubmatch(segs[i]); m != nil {
			return strings.ReplaceAll(m[1], "_", "-")
		}
	}
	return ""
}

// ParseCgroup reads a /proc/PID/cgroup file ("hierarchy:controllers:path"
// lines, v1 and v2) and returns the pod UID of the process, "" if it is not
// in a pod. The unified (v2) line wins when lines disagree.
func ParseCgroup(r io.Reader) (string, error) {
	var first string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return "", fmt.Errorf("podinfo: cgroup line %d %q: want hierarchy:controllers:path", n, line)
		}
		if _, err := strconv.ParseUint(parts[0], 10, 32); err != nil {
			return "", fmt.Errorf("podinfo: cgroup line %d %q: bad hierarchy ID", n, line)
		}
		uid := UIDFromPath(parts[2])
		if uid == "" {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			return uid, nil
		}
		if first == "" {
			first = uid
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("podinfo: reading cgroup file: %w", err)
	}
	return first, nil
}

// maxCgroupFile bounds the bytes of a cgroup file PodUID reads: a real one
// is a few hundred.
const maxCgroupFile = 64 << 10

// ErrNoProcess reports a process that no longer exists.
var ErrNoProcess = errors.New("podinfo: no such process")

// PodUID returns the pod UID of process pid from procRoot/PID/cgroup, ""
// when the process is in no pod. A process that is gone gives ErrNoProcess.
// A cgroup file that is not a regular file (a FIFO in a --path.procfs
// tree) is refused with procnet.ErrNotRegular rather than waited on, and
// at most maxCgroupFile bytes of it are read.
func PodUID(procRoot string, pid int) (string, error) {
	f, err := procnet.OpenRegular(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: %d", ErrNoProcess, pid)
	}
	if err != nil {
		return "", fmt.Errorf("podinfo: %w", err)
	}
	defer f.Close()
	uid, err := ParseCgroup(io.LimitReader(f, maxCgroupFile))
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	return uid, nil
}
