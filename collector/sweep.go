package collector

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
)

// The half-open sweep. Finding half-open connections needs each
// ESTABLISHED socket's idle time, which only INET_DIAG_INFO (struct
// tcp_info) carries; asking for it triples a dump's bytes and takes each
// socket's lock in the kernel. So it is not part of the regular dumps: a
// separate dump of ESTABLISHED sockets only, with INET_DIAG_INFO, is a kind
// of work of its own (Kind HalfOpen) for the Scheduler, which runs it at
// most every SamplerOptions.HalfOpenInterval and no more often than keeps its
// average CPU within sweepShare of the CPU budget, host-wide with
// --netns=all. Full dumps plan with what it leaves (see SamplerJobs).
const (
	// DefaultHalfOpenInterval is the shortest time between two sweeps.
	DefaultHalfOpenInterval = time.Minute
	// sweepShare is the largest part of the CPU budget the sweep takes:
	// its JobKind's share of what the cheap path and rare dumps leave.
	sweepShare = 0.25
	// maxHalfOpenTracked bounds the suspects a sweep keeps one by one
	// (about 64 bytes each); further ones are counted in the "other" group.
	maxHalfOpenTracked = 100000
	// maxGroupRemotes and maxGroupListeners bound a group's evidence.
	maxGroupRemotes   = 5
	maxGroupListeners = 5
)

// errSweepDisabled is returned by Sweep when SamplerOptions.HalfOpenInterval is
// negative.
var errSweepDisabled = errors.New("half-open sweep disabled")

// HalfOpenSample is what one half-open sweep saw.
type HalfOpenSample struct {
	// Time is when the sweep started; Dump describes its kernel exchange.
	Time time.Time
	Dump diag.Stats
	// NoTimer counts the ESTABLISHED sockets with no timer armed, Suspects
	// those of them that received nothing for longer than
	// detect.Config.HalfOpenMinIdle. NoInfo counts ESTABLISHED sockets
	// skipped because their reply carried no usable tcp_info.
	NoTimer  uint64
	Suspects uint64
	NoInfo   uint64
	// Groups sum the suspects by local port and owning command, most
	// first; Folded counts the groups folded into the last one (port and
	// command "other") by SamplerOptions.MaxHalfOpenGroups.
	Groups []detect.HalfOpenGroup
	Folded int
}

// hoSuspect is one suspect socket of the current sweep.
type hoSuspect struct {
	cookie uint64
	remote netip.Addr
	idle   uint32 // milliseconds
	inode  uint32
	port   uint16
}

// hoOwner is the remembered owner of a suspect socket, by cookie.
type hoOwner struct {
	gen   uint32
	found bool
	tried int64 // unix nanoseconds of the last lookup that missed it
	pid   int32
	comm  string
}

// sweeper holds the sweep's state. conn, sus, owners and gen belong to the
// holder of the dumps lane (Sampler.dumps.mu); latest and cost are guarded
// by Sampler.mu. Its dump statistics are Sampler.stats[HalfOpen].
type sweeper struct {
	interval  time.Duration // zero: disabled
	maxGroups int

	conn   *diag.Conn
	sus    []hoSuspect
	owners map[uint64]hoOwner
	gen    uint32

	latest *HalfOpenSample
	cost   float64 // CPU seconds per sweep, exponentially weighted
}

// SweepInterval returns the interval the half-open sweep asks for, given
// SamplerOptions.HalfOpenInterval and SamplerOptions.Interval: DefaultHalfOpenInterval
// for zero, never below interval, and zero (no sweep) for a negative one.
// Pass it to SamplerJobs.
func SweepInterval(halfOpen, interval time.Duration) time.Duration {
	switch {
	case halfOpen < 0:
		return 0
	case halfOpen == 0:
		halfOpen = DefaultHalfOpenInterval
	}
	return max(halfOpen, interval)
}

func newSweeper(o *SamplerOptions) *sweeper {
	mg := o.MaxHalfOpenGroups
	if mg <= 0 {
		mg = 100
	}
	return &sweeper{interval: SweepInterval(o.HalfOpenInterval, o.Interval), maxGroups: mg, owners: map[uint64]hoOwner{}}
}

func (sw *sweeper) enabled() bool { return sw.interval > 0 }

// sampleHalfOpen runs a sweep as the Scheduler's job of Kind HalfOpen. It
// waits (ErrNotReady) for the first full sample, whose listening ports
// name the suspects' groups. The Sample returned carries the sweep's time
// and dump statistics only.
func (s *Sampler) sampleHalfOpen() (*Sample, error) {
	if !s.sweep.enabled() {
		return nil, errSweepDisabled
	}
	s.mu.RLock()
	ready := s.full != nil
	s.mu.RUnlock()
	if !ready {
		return nil, ErrNotReady
	}
	ho, err := s.Sweep()
	if err != nil {
		return nil, err
	}
	return &Sample{Kind: HalfOpen, Time: ho.Time, Dump: ho.Dump}, nil
}

// Sweep runs one half-open sweep: a dump of the ESTABLISHED sockets with
// INET_DIAG_INFO, keeping those with no timer armed that received nothing
// for longer than the detectors' HalfOpenMinIdle, grouped by local port and
// owning process (looked up within the bounds of the CLOSE_WAIT lookups).
// The result is published for View and the next sample's detectors.
func (s *Sampler) Sweep() (*HalfOpenSample, error) {
	s.dumps.mu.Lock()
	defer s.dumps.mu.Unlock()
	sw := s.sweep
	if !sw.enabled() {
		return nil, errSweepDisabled
	}
	smp, err := s.sweepLocked()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.stats[HalfOpen]
	st.Dumps++
	if err != nil {
		st.Errors++
		return nil, err
	}
	st.record(smp.Time, &smp.Dump)
	sw.latest = smp
	c := smp.Dump.CPU.Seconds()
	if sw.cost == 0 {
		sw.cost = c
	} else {
		sw.cost = (1-ewmaWeight)*sw.cost + ewmaWeight*c
	}
	return smp, nil
}

// sweepLocked dumps and groups; Sampler.dumps.mu is held.
func (s *Sampler) sweepLocked() (*HalfOpenSample, error) {
	sw := s.sweep
	if sw.conn == nil {
		c, err := s.opts.Dial()
		if err != nil {
			return nil, fmt.Errorf("opening sock_diag for the half-open sweep: %w", err)
		}
		sw.conn = c
	}
	smp := &HalfOpenSample{Time: time.Now()}
	minIdle := uint32(min(s.opts.Detect.HalfOpenMinIdle.Milliseconds(), math.MaxUint32))
	sw.sus = sw.sus[:0]
	var ti diag.TCPInfo
	var untracked uint64
	req := diag.Request{States: diag.MaskOf(diag.Established), Extensions: 1 << (diag.AttrInfo - 1), Method: s.opts.Method}
	st, err := sw.conn.Dump(req, func(d *diag.Socket) error {
		if d.State != diag.Established || d.Timer != diag.TimerNone {
			return nil
		}
		smp.NoTimer++
		if ok, err := d.TCPInfo(&ti); err != nil || !ok {
			smp.NoInfo++
			return nil
		}
		if ti.LastRecv() < minIdle {
			return nil
		}
		smp.Suspects++
		if len(sw.sus) >= maxHalfOpenTracked {
			untracked++
			return nil
		}
		sw.sus = append(sw.sus, hoSuspect{cookie: d.Cookie, remote: d.Dst.Unmap(), idle: ti.LastRecv(), inode: d.Inode, port: d.SrcPort})
		return nil
	})
	smp.Dump = st
	if err != nil {
		sw.conn.Close()
		sw.conn = nil
		return nil, fmt.Errorf("half-open sweep: %w", err)
	}
	if smp.NoInfo > 0 {
		s.opts.Logger.Debug("half-open sweep skipped sockets without tcp_info", "sockets", smp.NoInfo)
	}
	if err := s.resolveSuspects(smp.Time); err != nil {
		s.opts.Logger.Debug("half-open owner lookup incomplete", "err", err)
	}
	smp.Groups, smp.Folded = s.groupSuspects(untracked)
	return smp, nil
}

// resolveSuspects looks up the owners of the suspects not known yet, at
// most maxLookupInodes of them within SamplerOptions.LookupTimeout, and forgets
// the owners of sockets this sweep did not find.
func (s *Sampler) resolveSuspects(now time.Time) error {
	sw := s.sweep
	sw.gen++
	nowNs, retryNs := now.UnixNano(), lookupRetry.Nanoseconds()
	var cookies, inodes []uint64
	for _, x := range sw.sus {
		o, ok := sw.owners[x.cookie]
		o.gen = sw.gen
		sw.owners[x.cookie] = o
		if x.inode == 0 || ok && (o.found || nowNs-o.tried < retryNs) || len(cookies) >= maxLookupInodes {
			continue
		}
		cookies = append(cookies, x.cookie)
		inodes = append(inodes, uint64(x.inode))
	}
	for c, o := range sw.owners {
		if o.gen != sw.gen {
			delete(sw.owners, c)
		}
	}
	if len(inodes) == 0 || s.opts.LookupOwners == nil {
		return nil
	}
	found, complete, err := s.opts.LookupOwners(inodes, s.opts.LookupTimeout)
	for i, c := range cookies {
		o := sw.owners[c]
		if ps := found[inodes[i]]; len(ps) > 0 {
			o.found, o.pid, o.comm = true, int32(ps[0].PID), SafeLabel(ps[0].Comm)
		} else if complete {
			o.tried = nowNs
		}
		sw.owners[c] = o
	}
	return err
}

// groupSuspects sums the suspects by local port and command, most first,
// and folds the groups beyond the limit, with the untracked suspects, into
// one "other" group. A local port is named by number when it is a
// listening port (or not an ephemeral one), "ephemeral" otherwise.
func (s *Sampler) groupSuspects(untracked uint64) ([]detect.HalfOpenGroup, int) {
	sw := s.sweep
	if len(sw.sus) == 0 && untracked == 0 {
		return nil, 0
	}
	// The longest idle first, so that each group's remotes are its
	// longest idle ones.
	slices.SortFunc(sw.sus, func(x, y hoSuspect) int { return cmp.Compare(y.idle, x.idle) })
	listeners := map[uint16][]string{}
	s.mu.RLock()
	if smp := s.full; smp != nil {
		lst := smp.Listeners
		if s.rare != nil && s.rare.Time.After(smp.Time) {
			lst = s.rare.Listeners
		}
		for _, l := range lst {
			if ls := listeners[l.Port]; len(ls) < maxGroupListeners {
				listeners[l.Port] = append(ls, netip.AddrPortFrom(l.Addr, l.Port).String())
			}
		}
	}
	s.mu.RUnlock()

	type key struct {
		port string
		cmd  string
	}
	idx := map[key]int{}
	var gs []detect.HalfOpenGroup
	for _, x := range sw.sus {
		k := key{port: "ephemeral"}
		listening := s.dumps.agg.ports.has(x.port)
		if listening || !s.dumps.agg.outbound(x.port) {
			k.port = strconv.Itoa(int(x.port))
		}
		o := sw.owners[x.cookie]
		if o.found {
			k.cmd = o.comm
		}
		i, ok := idx[k]
		if !ok {
			i = len(gs)
			idx[k] = i
			g := detect.HalfOpenGroup{Port: k.port, Command: k.cmd}
			if listening {
				g.Listeners = listeners[x.port]
			}
			gs = append(gs, g)
		}
		g := &gs[i]
		g.Count++
		g.OldestIdle = max(g.OldestIdle, time.Duration(x.idle)*time.Millisecond)
		if o.found && len(g.PIDs) < maxGroupPIDs && !slices.Contains(g.PIDs, int(o.pid)) {
			g.PIDs = append(g.PIDs, int(o.pid))
		}
		if r := x.remote.String(); len(g.Remotes) < maxGroupRemotes && !slices.Contains(g.Remotes, r) {
			g.Remotes = append(g.Remotes, r)
		}
	}
	for i := range gs {
		slices.Sort(gs[i].PIDs)
	}
	slices.SortFunc(gs, func(x, y detect.HalfOpenGroup) int {
		if c := cmp.Compare(y.Count, x.Count); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Port, y.Port); c != 0 {
			return c
		}
		return cmp.Compare(x.Command, y.Command)
	})
	if len(gs) <= sw.maxGroups && untracked == 0 {
		return gs, 0
	}
	other := detect.HalfOpenGroup{Port: "other", Command: "other", Count: untracked}
	folded := 0
	if len(gs) > sw.maxGroups {
		for _, g := range gs[sw.maxGroups:] {
			other.Count += g.Count
			other.OldestIdle = max(other.OldestIdle, g.OldestIdle)
		}
		folded = len(gs) - sw.maxGroups
		gs = gs[:sw.maxGroups:sw.maxGroups]
	}
	return append(gs, other), folded
}

// record adds a successful dump, started at t, to the statistics.
func (st *KindStats) record(t time.Time, d *diag.Stats) {
	st.CPU += d.CPU
	if !st.LastTime.IsZero() {
		st.Interval = t.Sub(st.LastTime)
	}
	st.LastTime = t
	st.LastDuration = d.Wall
	st.LastSockets = d.Sockets
}

// halfOpenSummaryLocked gives the detectors the latest sweep's groups while
// it is recent: no older than three planned intervals (a sweep or two may
// fail) and the detectors' StaleAfter. s.mu is held.
func (s *Sampler) halfOpenSummaryLocked(sum *detect.Summary) {
	ho := s.sweep.latest
	if ho == nil {
		return
	}
	fresh := max(3*s.planned(HalfOpen), s.opts.Detect.StaleAfter)
	if sum.Time.Sub(ho.Time) > fresh {
		return
	}
	sum.HalfOpen = ho.Groups
	sum.HalfOpenTime = ho.Time
}

// HalfOpenView is the sweep's part of a View.
type HalfOpenView struct {
	// Enabled is false when SamplerOptions.HalfOpenInterval is negative.
	Enabled bool
	// Latest is the latest successful sweep, nil before one.
	Latest *HalfOpenSample
	// Stats are the sweep's dump statistics; Planned its current interval.
	Stats KindStats
	// BudgetShare is the part of the CPU budget the sweep takes at its
	// planned interval, from its average cost.
	BudgetShare float64
}

// halfOpenViewLocked fills the View's sweep part from its statistics st
// (with the planned interval). s.mu is held.
func (s *Sampler) halfOpenViewLocked(st *KindStats) HalfOpenView {
	sw := s.sweep
	v := HalfOpenView{Enabled: sw.enabled(), Latest: sw.latest, Stats: *st}
	if !v.Enabled || st.Planned <= 0 {
		return v
	}
	v.BudgetShare = sw.cost / st.Planned.Seconds() / s.opts.CPUBudget
	return v
}

// closeSweep releases the sweep's sock_diag connection.
func (s *Sampler) closeSweep() error {
	s.dumps.mu.Lock()
	defer s.dumps.mu.Unlock()
	if s.sweep.conn == nil {
		return nil
	}
	err := s.sweep.conn.Close()
	s.sweep.conn = nil
	return err
}
