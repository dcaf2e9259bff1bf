package procnet

// SockstatField names one value of /proc/net/sockstat or sockstat6.
type SockstatField uint8

// The sockstat values this package extracts.
const (
	// SockstatTCPInUse is "TCP: inuse": TCP sockets of the namespace that are
	// not in TIME_WAIT or half-open (request) state.
	SockstatTCPInUse SockstatField = iota
	// SockstatTCPOrphan is "TCP: orphan": sockets no longer attached to a
	// file descriptor (closed but still finishing, capped by tcp_max_orphans).
	// The kernel keeps one count for the whole host: every namespace shows
	// the same number.
	SockstatTCPOrphan
	// SockstatTCPTimeWait is "TCP: tw": TIME_WAIT sockets of the namespace.
	SockstatTCPTimeWait
	// SockstatTCPAlloc is "TCP: alloc": allocated TCP sockets. The kernel
	// keeps this one for the whole host, not per namespace.
	SockstatTCPAlloc
	// SockstatTCPMem is "TCP: mem": pages of memory TCP buffers hold, host
	// wide.
	SockstatTCPMem
	// SockstatTCP6InUse is "TCP6: inuse" from /proc/net/sockstat6.
	SockstatTCP6InUse

	numSockstatFields
)

// SockstatSet is a set of SockstatFields.
type SockstatSet uint8

// Has reports whether f is in the set.
func (s SockstatSet) Has(f SockstatField) bool { return f < numSockstatFields && s&(1<<f) != 0 }

// Add returns the set with f added.
func (s SockstatSet) Add(f SockstatField) SockstatSet {
	if f >= numSockstatFields {
		return s
	}
	return s | 1<<f
}

// Sockstat holds the TCP lines of /proc/net/sockstat and sockstat6. The
// values are gauges. Present records which ones were found. TCPInUse,
// TCPTimeWait and TCP6InUse are per network namespace; TCPOrphan, TCPAlloc
// and TCPMemPages are host-wide (checked on Linux 6.18).
type Sockstat struct {
	TCPInUse    int64
	TCPOrphan   int64
	TCPTimeWait int64
	TCPAlloc    int64
	// TCPMemPages is in pages, not bytes.
	TCPMemPages int64
	TCP6InUse   int64

	Present SockstatSet
}

// Get returns the value of f and whether it was found.
func (s *Sockstat) Get(f SockstatField) (int64, bool) {
	p := s.ptr(f)
	if p == nil || !s.Present.Has(f) {
		return 0, false
	}
	return *p, true
}

func (s *Sockstat) ptr(f SockstatField) *int64 {
	switch f {
	case SockstatTCPInUse:
		return &s.TCPInUse
	case SockstatTCPOrphan:
		return &s.TCPOrphan
	case SockstatTCPTimeWait:
		return &s.TCPTimeWait
	case SockstatTCPAlloc:
		return &s.TCPAlloc
	case SockstatTCPMem:
		return &s.TCPMemPages
	case SockstatTCP6InUse:
		return &s.TCP6InUse
	}
	return nil
}

func lookupSockstat(section, key []byte) (SockstatField, bool) {
	switch string(section) {
	case "TCP":
		switch string(key) {
		case "inuse":
			return SockstatTCPInUse, true
		case "orphan":
			return SockstatTCPOrphan, true
		case "tw":
			return SockstatTCPTimeWait, true
		case "alloc":
			return SockstatTCPAlloc, true
		case "mem":
			return SockstatTCPMem, true
		}
	case "TCP6":
		if string(key) == "inuse" {
			return SockstatTCP6InUse, true
		}
	}
	return 0, false
}

// ParseSockstat parses /proc/net/sockstat or /proc/net/sockstat6, whose
// lines are a section name followed by key/value pairs:
//
//	TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 248
//
// It stores the TCP and TCP6 values it knows into s and marks them in
// s.Present, without resetting s first (so both files can be parsed into
// one Sockstat). Every line must have a section prefix, an even number of
// tokens and integer values. Blank lines are skipped. On error the result
// is a *ParseError.
func ParseSockstat(data []byte, s *Sockstat) error {
	lineNo := 0
	for len(data) > 0 {
		var line []byte
		line, data = cutLine(data)
		lineNo++
		if isBlank(line) {
			continue
		}
		sec, rest, ok := cutSection(line)
		if !ok {
			return parseErr(lineNo, ErrSyntax, "line without a section prefix")
		}
		for {
			var key, v []byte
			key, rest = nextToken(rest)
			if len(key) == 0 {
				break
			}
			v, rest = nextToken(rest)
			if len(v) == 0 {
				return parseErr(lineNo, ErrFieldCount, "%s: key %q has no value", sec, key)
			}
			n, ok := parseInt(v)
			if !ok {
				return parseErr(lineNo, ErrValue, "%s: %s = %q", sec, key, v)
			}
			if f, known := lookupSockstat(sec, key); known {
				*s.ptr(f) = n
				s.Present = s.Present.Add(f)
			}
		}
	}
	return nil
}
