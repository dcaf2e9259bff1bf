package collector

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
)

// Owner lookups for CLOSE_WAIT sockets. A lookup scans /proc/PID/fd of
// every process until the inodes are found (about 3.5 µs per open
// descriptor on the node), so it runs only for sockets older than the
// minimum age, at most once per lookupInterval, for at most maxLookupInodes
// sockets, bounded by a timeout (SamplerOptions.LookupTimeout, default
// DefaultLookupTimeout). A scan cut short by the timeout leaves the sockets
// it did not reach for the next lookup, which resumes after the last process
// scanned (see resumingLookup), and doubles both the interval and the
// timeout (up to maxLookupBackoff times), so that a node with many
// descriptors is scanned in full within a few lookups at the same average
// cost. A
// socket whose owner a complete scan did not find (another PID namespace,
// or a process that exited) is retried after lookupRetry. Results are kept
// with the tracked socket (an inode belongs to one socket) until it leaves
// CLOSE_WAIT.
const (
	lookupInterval   = 10 * time.Second
	lookupRetry      = 5 * time.Minute
	maxLookupBackoff = 3
	maxLookupInodes  = 4096
	maxGroupPIDs     = 5
	// DefaultLookupTimeout bounds one owner lookup: about 70,000 open
	// descriptors, 2.5% of a core at one lookup per lookupInterval.
	DefaultLookupTimeout = 250 * time.Millisecond
)

// cwEntry is one tracked CLOSE_WAIT socket.
type cwEntry struct {
	first    int64 // unix nanoseconds of the first dump that saw it
	tried    int64 // unix nanoseconds of the last lookup that missed it
	gen      uint32
	inode    uint32
	port     uint16
	resolved bool
	pid      int32
	comm     string
}

// closeWaitTracker follows CLOSE_WAIT sockets across dumps by cookie, so
// that their age is known, and remembers their owners.
type closeWaitTracker struct {
	max       int
	gen       uint32
	now       int64
	m         map[uint64]cwEntry
	untracked uint64
	// portCmd remembers the command owning each non-ephemeral local port
	// with CLOSE_WAIT sockets, so that young sockets (not looked up) of a
	// port whose old ones were share their group.
	portCmd    map[uint16]string
	lastLookup time.Time
	// backoff counts the latest consecutive lookups cut short.
	backoff int
}

func newCloseWaitTracker(limit int) *closeWaitTracker {
	return &closeWaitTracker{max: limit, m: map[uint64]cwEntry{}, portCmd: map[uint16]string{}}
}

// begin starts a dump taken at now.
func (t *closeWaitTracker) begin(now time.Time) {
	t.gen++
	t.now = now.UnixNano()
	t.untracked = 0
}

// see records a CLOSE_WAIT socket of the current dump.
func (t *closeWaitTracker) see(s *diag.Socket) {
	e, ok := t.m[s.Cookie]
	if !ok {
		if len(t.m) >= t.max {
			t.untracked++
			return
		}
		e = cwEntry{first: t.now, inode: s.Inode, port: s.SrcPort}
	}
	e.gen = t.gen
	t.m[s.Cookie] = e
}

// sweep forgets the sockets the current (complete) dump did not see.
func (t *closeWaitTracker) sweep() {
	for c, e := range t.m {
		if e.gen != t.gen {
			delete(t.m, c)
		}
	}
}

// resolve looks up the owners of sockets older than minAge that have none
// yet, within the bounds above. It returns how many it placed.
func (t *closeWaitTracker) resolve(now time.Time, minAge, timeout time.Duration, lookup OwnerLookup) (int, error) {
	if lookup == nil || (!t.lastLookup.IsZero() && now.Sub(t.lastLookup) < lookupInterval<<t.backoff) {
		return 0, nil
	}
	nowNs, minNs, retryNs := now.UnixNano(), minAge.Nanoseconds(), lookupRetry.Nanoseconds()
	var cookies, inodes []uint64
	for c, e := range t.m {
		if e.resolved || e.inode == 0 || nowNs-e.first < minNs || (e.tried != 0 && nowNs-e.tried < retryNs) {
			continue
		}
		cookies = append(cookies, c)
		inodes = append(inodes, uint64(e.inode))
		if len(cookies) >= maxLookupInodes {
			break
		}
	}
	if len(cookies) == 0 {
		return 0, nil
	}
	t.lastLookup = now
	owners, complete, err := lookup(inodes, timeout<<t.backoff)
	if complete {
		t.backoff = 0
	} else {
		t.backoff = min(t.backoff+1, maxLookupBackoff)
	}
	found := 0
	for _, c := range cookies {
		e := t.m[c]
		if ps := owners[uint64(e.inode)]; len(ps) > 0 {
			e.resolved, e.pid, e.comm = true, int32(ps[0].PID), SafeLabel(ps[0].Comm)
			found++
		} else if complete {
			e.tried = nowNs
		}
		t.m[c] = e
	}
	return found, err
}

// groups sums the tracked sockets by local port and command, most sockets
// first, and folds groups beyond maxGroups into one "other" group. A local
// port for which eph is true (an outbound socket's) is reported as
// "ephemeral".
func (t *closeWaitTracker) groups(minAge time.Duration, eph func(port uint16) bool, maxGroups int) ([]detect.CloseWaitGroup, int) {
	if len(t.m) == 0 {
		clear(t.portCmd)
		return nil, 0
	}
	// Keep the remembered command of every port that still has sockets;
	// give ports without one the (smallest) command of their resolved
	// sockets.
	next := make(map[uint16]string)
	for _, e := range t.m {
		if !eph(e.port) {
			if _, ok := next[e.port]; !ok {
				next[e.port] = t.portCmd[e.port]
			}
		}
	}
	fresh := map[uint16]bool{}
	for _, e := range t.m {
		if e.resolved && !eph(e.port) && (next[e.port] == "" || fresh[e.port] && e.comm < next[e.port]) {
			next[e.port] = e.comm
			fresh[e.port] = true
		}
	}
	t.portCmd = next

	type key struct {
		port uint16
		eph  bool
		cmd  string
	}
	type acc struct {
		count, old uint64
		first      int64
		pids       []int
	}
	minNs := minAge.Nanoseconds()
	accs := map[key]*acc{}
	for _, e := range t.m {
		k := key{port: e.port, eph: eph(e.port)}
		if k.eph {
			k.port = 0
		}
		if e.resolved {
			k.cmd = e.comm
		} else if !k.eph {
			k.cmd = t.portCmd[e.port]
		}
		g := accs[k]
		if g == nil {
			g = &acc{first: e.first}
			accs[k] = g
		}
		g.count++
		if t.now-e.first >= minNs {
			g.old++
		}
		g.first = min(g.first, e.first)
		if e.resolved && len(g.pids) < maxGroupPIDs && !slices.Contains(g.pids, int(e.pid)) {
			g.pids = append(g.pids, int(e.pid))
		}
	}
	gs := make([]detect.CloseWaitGroup, 0, len(accs))
	for k, g := range accs {
		port := "ephemeral"
		if !k.eph {
			port = strconv.Itoa(int(k.port))
		}
		slices.Sort(g.pids)
		gs = append(gs, detect.CloseWaitGroup{
			Port: port, Command: k.cmd, PIDs: g.pids, Count: g.count, Old: g.old,
			Oldest: time.Duration(t.now - g.first),
		})
	}
	slices.SortFunc(gs, func(x, y detect.CloseWaitGroup) int {
		if c := cmp.Compare(y.Count, x.Count); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Port, y.Port); c != 0 {
			return c
		}
		return cmp.Compare(x.Command, y.Command)
	})
	if len(gs) <= maxGroups {
		return gs, 0
	}
	other := detect.CloseWaitGroup{Port: "other", Command: "other"}
	for _, g := range gs[maxGroups:] {
		other.Count += g.Count
		other.Old += g.Old
		other.Oldest = max(other.Oldest, g.Oldest)
	}
	folded := len(gs) - maxGroups
	return append(gs[:maxGroups:maxGroups], other), folded
}
