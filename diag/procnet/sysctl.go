package procnet

import (
	"bytes"
	"math/bits"
	"slices"
	"strconv"
)

// Sysctl names one sysctl this package reads.
type Sysctl uint8

// The sysctls the detectors use. All but tcp_max_orphans are per network
// namespace.
const (
	// SysctlIPLocalPortRange is net.ipv4.ip_local_port_range: the ports
	// connect() picks local ports from (two integers).
	SysctlIPLocalPortRange Sysctl = iota
	// SysctlIPLocalReservedPorts is net.ipv4.ip_local_reserved_ports: ports
	// connect() never picks (a comma list of ports and ranges).
	SysctlIPLocalReservedPorts
	// SysctlTCPTWReuse is net.ipv4.tcp_tw_reuse (0 off, 1 on, 2 loopback).
	SysctlTCPTWReuse
	// SysctlTCPMaxTWBuckets is net.ipv4.tcp_max_tw_buckets.
	SysctlTCPMaxTWBuckets
	// SysctlSomaxconn is net.core.somaxconn, the cap on listen() backlogs.
	SysctlSomaxconn
	// SysctlTCPMaxSynBacklog is net.ipv4.tcp_max_syn_backlog.
	SysctlTCPMaxSynBacklog
	// SysctlTCPSyncookies is net.ipv4.tcp_syncookies (0 off, 1 when the
	// queue overflows, 2 always).
	SysctlTCPSyncookies
	// SysctlTCPMaxOrphans is net.ipv4.tcp_max_orphans. It is host-wide and
	// exists only in the initial network namespace: reading it from any
	// other namespace fails with fs.ErrNotExist.
	SysctlTCPMaxOrphans
	// SysctlTCPFinTimeout is net.ipv4.tcp_fin_timeout, in seconds (it bounds
	// FIN_WAIT2, not TIME_WAIT).
	SysctlTCPFinTimeout
	// SysctlTCPKeepaliveTime is net.ipv4.tcp_keepalive_time, in seconds:
	// how long a connection with SO_KEEPALIVE idles before the first probe
	// (TCP_KEEPIDLE overrides it per socket).
	SysctlTCPKeepaliveTime
	// SysctlTCPKeepaliveIntvl is net.ipv4.tcp_keepalive_intvl, in seconds
	// between unanswered probes (TCP_KEEPINTVL per socket).
	SysctlTCPKeepaliveIntvl
	// SysctlTCPKeepaliveProbes is net.ipv4.tcp_keepalive_probes, the
	// unanswered probes before the kernel drops the connection
	// (TCP_KEEPCNT per socket).
	SysctlTCPKeepaliveProbes

	numSysctls
)

var sysctlNames = [numSysctls]string{
	"net.ipv4.ip_local_port_range",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_tw_reuse",
	"net.ipv4.tcp_max_tw_buckets",
	"net.core.somaxconn",
	"net.ipv4.tcp_max_syn_backlog",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.tcp_max_orphans",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
}

var sysctlPaths = [numSysctls]string{
	"net/ipv4/ip_local_port_range",
	"net/ipv4/ip_local_reserved_ports",
	"net/ipv4/tcp_tw_reuse",
	"net/ipv4/tcp_max_tw_buckets",
	"net/core/somaxconn",
	"net/ipv4/tcp_max_syn_backlog",
	"net/ipv4/tcp_syncookies",
	"net/ipv4/tcp_max_orphans",
	"net/ipv4/tcp_fin_timeout",
	"net/ipv4/tcp_keepalive_time",
	"net/ipv4/tcp_keepalive_intvl",
	"net/ipv4/tcp_keepalive_probes",
}

// IntSysctls returns the sysctls that hold a single integer, in declaration
// order, for callers that export them in a loop.
func IntSysctls() []Sysctl {
	out := make([]Sysctl, 0, numSysctls)
	for k := Sysctl(0); k < numSysctls; k++ {
		if k.isInt() {
			out = append(out, k)
		}
	}
	return out
}

func (k Sysctl) isInt() bool {
	return k < numSysctls && k != SysctlIPLocalPortRange && k != SysctlIPLocalReservedPorts
}

// Name returns the dotted sysctl name, such as "net.core.somaxconn".
func (k Sysctl) Name() string {
	if k >= numSysctls {
		return "unknown"
	}
	return sysctlNames[k]
}

// Path returns the path below /proc/sys, such as "net/core/somaxconn".
func (k Sysctl) Path() string {
	if k >= numSysctls {
		return ""
	}
	return sysctlPaths[k]
}

// String returns the dotted name.
func (k Sysctl) String() string { return k.Name() }

// SysctlSet is a set of Sysctls.
type SysctlSet uint16

// Has reports whether k is in the set.
func (s SysctlSet) Has(k Sysctl) bool { return k < numSysctls && s&(1<<k) != 0 }

// Add returns the set with k added.
func (s SysctlSet) Add(k Sysctl) SysctlSet {
	if k >= numSysctls {
		return s
	}
	return s | 1<<k
}

// Sysctls holds the sysctl values of one network namespace. Present records
// which ones were read successfully.
type Sysctls struct {
	PortRange PortRange
	// ReservedPorts is sorted and holds no overlapping or adjacent ranges.
	// Its backing array is reused across reads.
	ReservedPorts []PortRange

	TCPTWReuse       int64
	TCPMaxTWBuckets  int64
	Somaxconn        int64
	TCPMaxSynBacklog int64
	TCPSyncookies    int64
	TCPMaxOrphans    int64
	TCPFinTimeout    int64
	// The keepalive defaults of sockets with SO_KEEPALIVE: idle seconds
	// before the first probe, seconds between probes, probes before the
	// connection is dropped.
	TCPKeepaliveTime   int64
	TCPKeepaliveIntvl  int64
	TCPKeepaliveProbes int64

	Present SysctlSet
}

func (s *Sysctls) intPtr(k Sysctl) *int64 {
	switch k {
	case SysctlTCPTWReuse:
		return &s.TCPTWReuse
	case SysctlTCPMaxTWBuckets:
		return &s.TCPMaxTWBuckets
	case SysctlSomaxconn:
		return &s.Somaxconn
	case SysctlTCPMaxSynBacklog:
		return &s.TCPMaxSynBacklog
	case SysctlTCPSyncookies:
		return &s.TCPSyncookies
	case SysctlTCPMaxOrphans:
		return &s.TCPMaxOrphans
	case SysctlTCPFinTimeout:
		return &s.TCPFinTimeout
	case SysctlTCPKeepaliveTime:
		return &s.TCPKeepaliveTime
	case SysctlTCPKeepaliveIntvl:
		return &s.TCPKeepaliveIntvl
	case SysctlTCPKeepaliveProbes:
		return &s.TCPKeepaliveProbes
	}
	return nil
}

// Int returns the value of an integer sysctl and whether it was read. It
// returns false for the two port sysctls.
func (s *Sysctls) Int(k Sysctl) (int64, bool) {
	p := s.intPtr(k)
	if p == nil || !s.Present.Has(k) {
		return 0, false
	}
	return *p, true
}

// UsablePorts returns the number of local ports connect() can pick, as
// UsablePorts computes it, and false when either port sysctl is missing.
func (s *Sysctls) UsablePorts() (int, bool) {
	if !s.Present.Has(SysctlIPLocalPortRange) || !s.Present.Has(SysctlIPLocalReservedPorts) {
		return 0, false
	}
	return UsablePorts(s.PortRange, s.ReservedPorts), true
}

// PortRange is an inclusive range of ports, Low <= High.
type PortRange struct {
	Low, High uint16
}

// Size returns the number of ports in the range.
func (r PortRange) Size() int { return int(r.High) - int(r.Low) + 1 }

// String formats the range as the kernel writes it in
// ip_local_reserved_ports: "N" or "N-M".
func (r PortRange) String() string {
	if r.Low == r.High {
		return strconv.Itoa(int(r.Low))
	}
	return strconv.Itoa(int(r.Low)) + "-" + strconv.Itoa(int(r.High))
}

// ParseSysctlInt parses a sysctl file holding one integer, such as
// "4096\n". Surrounding whitespace is ignored. It returns a *ParseError
// wrapping ErrSyntax for empty input or more than one token, and ErrValue
// for a token that is not a 64-bit integer.
func ParseSysctlInt(data []byte) (int64, error) {
	b := trimSpace(data)
	tok, rest := nextToken(b)
	if len(tok) == 0 {
		return 0, parseErr(0, ErrSyntax, "empty value")
	}
	if len(rest) != 0 {
		return 0, parseErr(0, ErrSyntax, "more than one value in %q", b)
	}
	n, ok := parseInt(tok)
	if !ok {
		return 0, parseErr(0, ErrValue, "%q is not an integer", tok)
	}
	return n, nil
}

func parsePort(b []byte) (uint16, bool) {
	u, ok := parseUint(b)
	if !ok || u > 65535 {
		return 0, false
	}
	return uint16(u), true
}

// ParsePortRange parses net.ipv4.ip_local_port_range: two ports separated
// by whitespace ("32768\t60999\n"). Both must be 0-65535 and the first
// must not exceed the second.
func ParsePortRange(data []byte) (PortRange, error) {
	b := trimSpace(data)
	lo, rest := nextToken(b)
	hi, rest := nextToken(rest)
	if len(lo) == 0 || len(hi) == 0 {
		return PortRange{}, parseErr(0, ErrFieldCount, "want two ports, got %q", b)
	}
	if len(rest) != 0 {
		return PortRange{}, parseErr(0, ErrFieldCount, "want two ports, got %q", b)
	}
	l, ok1 := parsePort(lo)
	h, ok2 := parsePort(hi)
	if !ok1 || !ok2 {
		return PortRange{}, parseErr(0, ErrValue, "bad port in %q", b)
	}
	if l > h {
		return PortRange{}, parseErr(0, ErrValue, "low port %d above high port %d", l, h)
	}
	return PortRange{Low: l, High: h}, nil
}

// ParseReservedPorts parses net.ipv4.ip_local_reserved_ports: a comma list
// of ports and inclusive ranges ("8080,9000-9010"), possibly empty.
// Whitespace around items is ignored. It appends to dst[:0] and returns the
// ranges sorted with overlapping and adjacent ones merged, so the result
// never holds a port twice. Pass the previous result as dst to reuse its
// memory.
func ParseReservedPorts(data []byte, dst []PortRange) ([]PortRange, error) {
	out := dst[:0]
	b := trimSpace(data)
	if len(b) == 0 {
		return out, nil
	}
	for item := range bytes.SplitSeq(b, []byte{','}) {
		it := trimSpace(item)
		if len(it) == 0 {
			return dst[:0], parseErr(0, ErrSyntax, "empty item in %q", b)
		}
		loB, hiB, isRange := bytes.Cut(it, []byte{'-'})
		lo, ok := parsePort(loB)
		if !ok {
			return dst[:0], parseErr(0, ErrValue, "bad port %q", it)
		}
		hi := lo
		if isRange {
			if hi, ok = parsePort(hiB); !ok {
				return dst[:0], parseErr(0, ErrValue, "bad port %q", it)
			}
			if lo > hi {
				return dst[:0], parseErr(0, ErrValue, "range %q runs backwards", it)
			}
		}
		out = append(out, PortRange{Low: lo, High: hi})
	}
	return mergeRanges(out), nil
}

// mergeRanges sorts rs and merges overlapping and adjacent ranges in place.
func mergeRanges(rs []PortRange) []PortRange {
	if len(rs) < 2 {
		return rs
	}
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.Low) - int(b.Low) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.Low) <= int(last.High)+1 {
			if r.High > last.High {
				last.High = r.High
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// UsablePorts returns how many ports of r connect() may use as local ports:
// the size of r minus the reserved ports inside r. reserved may be in any
// order and may overlap. It does not account for the kernel's preference
// for even ports in connect() versus odd ports in bind(0), nor for ports
// held by listeners; it is the ceiling of distinct local ports towards one
// destination.
func UsablePorts(r PortRange, reserved []PortRange) int {
	if r.Low > r.High {
		return 0
	}
	var bitmap [65536 / 64]uint64
	for _, rr := range reserved {
		lo, hi := max(rr.Low, r.Low), min(rr.High, r.High)
		for p := int(lo); p <= int(hi); p++ {
			bitmap[p/64] |= 1 << (p % 64)
		}
	}
	reservedIn := 0
	for _, w := range bitmap {
		reservedIn += bits.OnesCount64(w)
	}
	return r.Size() - reservedIn
}
