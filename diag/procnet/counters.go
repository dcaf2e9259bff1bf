package procnet

import "bytes"

// Field names one kernel counter from /proc/net/netstat (section TcpExt) or
// /proc/net/snmp (section Tcp).
type Field uint8

// The counters this package extracts. Their names are the kernel's column
// names.
const (
	// TcpExt, from /proc/net/netstat.
	FieldListenOverflows Field = iota
	FieldListenDrops
	FieldSyncookiesSent
	FieldSyncookiesRecv
	FieldSyncookiesFailed
	FieldTCPReqQFullDoCookies
	FieldTCPReqQFullDrop
	FieldTCPTimeWaitOverflow
	FieldTCPAbortOnTimeout
	FieldTCPAbortOnData
	FieldTCPAbortOnClose
	// Tcp, from /proc/net/snmp.
	FieldCurrEstab
	FieldEstabResets
	FieldOutRsts
	FieldActiveOpens
	FieldPassiveOpens
	FieldAttemptFails

	numFields
)

var fieldNames = [numFields]string{
	"ListenOverflows", "ListenDrops", "SyncookiesSent", "SyncookiesRecv",
	"SyncookiesFailed", "TCPReqQFullDoCookies", "TCPReqQFullDrop",
	"TCPTimeWaitOverflow", "TCPAbortOnTimeout", "TCPAbortOnData",
	"TCPAbortOnClose",
	"CurrEstab", "EstabResets", "OutRsts", "ActiveOpens", "PassiveOpens",
	"AttemptFails",
}

// Fields returns every Field in declaration order, for callers that turn
// counters into metrics in a loop.
func Fields() []Field {
	fs := make([]Field, numFields)
	for i := range fs {
		fs[i] = Field(i)
	}
	return fs
}

// Name returns the kernel's column name, such as "ListenOverflows".
func (f Field) Name() string {
	if f >= numFields {
		return "unknown"
	}
	return fieldNames[f]
}

// Section returns the section the field is read from: "TcpExt"
// (/proc/net/netstat) or "Tcp" (/proc/net/snmp).
func (f Field) Section() string {
	if f < FieldCurrEstab {
		return "TcpExt"
	}
	return "Tcp"
}

// String returns "Section:Name".
func (f Field) String() string { return f.Section() + ":" + f.Name() }

// FieldSet is a set of Fields.
type FieldSet uint32

// Has reports whether f is in the set.
func (s FieldSet) Has(f Field) bool { return f < numFields && s&(1<<f) != 0 }

// Add returns the set with f added.
func (s FieldSet) Add(f Field) FieldSet {
	if f >= numFields {
		return s
	}
	return s | 1<<f
}

// Counters holds the TCP counters of one network namespace. Present records
// which fields the kernel reported: a counter an older kernel lacks stays
// zero and absent, which is not the same as a reported zero.
type Counters struct {
	// TcpExt (/proc/net/netstat).
	ListenOverflows      uint64
	ListenDrops          uint64
	SyncookiesSent       uint64
	SyncookiesRecv       uint64
	SyncookiesFailed     uint64
	TCPReqQFullDoCookies uint64
	TCPReqQFullDrop      uint64
	TCPTimeWaitOverflow  uint64
	TCPAbortOnTimeout    uint64
	TCPAbortOnData       uint64
	TCPAbortOnClose      uint64
	// Tcp (/proc/net/snmp). CurrEstab counts ESTABLISHED and CLOSE_WAIT
	// sockets; it is a gauge, the others are counters.
	CurrEstab    uint64
	EstabResets  uint64
	OutRsts      uint64
	ActiveOpens  uint64
	PassiveOpens uint64
	AttemptFails uint64

	// Present holds the fields found in the input.
	Present FieldSet
}

// ptr returns the address of the struct field for f.
func (c *Counters) ptr(f Field) *uint64 {
	switch f {
	case FieldListenOverflows:
		return &c.ListenOverflows
	case FieldListenDrops:
		return &c.ListenDrops
	case FieldSyncookiesSent:
		return &c.SyncookiesSent
	case FieldSyncookiesRecv:
		return &c.SyncookiesRecv
	case FieldSyncookiesFailed:
		return &c.SyncookiesFailed
	case FieldTCPReqQFullDoCookies:
		return &c.TCPReqQFullDoCookies
	case FieldTCPReqQFullDrop:
		return &c.TCPReqQFullDrop
	case FieldTCPTimeWaitOverflow:
		return &c.TCPTimeWaitOverflow
	case FieldTCPAbortOnTimeout:
		return &c.TCPAbortOnTimeout
	case FieldTCPAbortOnData:
		return &c.TCPAbortOnData
	case FieldTCPAbortOnClose:
		return &c.TCPAbortOnClose
	case FieldCurrEstab:
		return &c.CurrEstab
	case FieldEstabResets:
		return &c.EstabResets
	case FieldOutRsts:
		return &c.OutRsts
	case FieldActiveOpens:
		return &c.ActiveOpens
	case FieldPassiveOpens:
		return &c.PassiveOpens
	case FieldAttemptFails:
		return &c.AttemptFails
	}
	return nil
}

// Get returns the value of f and whether the kernel reported it.
func (c *Counters) Get(f Field) (uint64, bool) {
	p := c.ptr(f)
	if p == nil || !c.Present.Has(f) {
		return 0, false
	}
	return *p, true
}

// set stores v for f and marks it present.
func (c *Counters) set(f Field, v uint64) {
	if p := c.ptr(f); p != nil {
		*p = v
		c.Present = c.Present.Add(f)
	}
}

// clear zeroes the fields of one section and removes them from Present.
func (c *Counters) clear(section string) {
	for f := Field(0); f < numFields; f++ {
		if f.Section() == section {
			*c.ptr(f) = 0
			c.Present &^= 1 << f
		}
	}
}

// lookupField maps a section and column name to a Field.
func lookupField(section, name []byte) (Field, bool) {
	switch string(section) {
	case "TcpExt":
		switch string(name) {
		case "ListenOverflows":
			return FieldListenOverflows, true
		case "ListenDrops":
			return FieldListenDrops, true
		case "SyncookiesSent":
			return FieldSyncookiesSent, true
		case "SyncookiesRecv":
			return FieldSyncookiesRecv, true
		case "SyncookiesFailed":
			return FieldSyncookiesFailed, true
		case "TCPReqQFullDoCookies":
			return FieldTCPReqQFullDoCookies, true
		case "TCPReqQFullDrop":
			return FieldTCPReqQFullDrop, true
		case "TCPTimeWaitOverflow":
			return FieldTCPTimeWaitOverflow, true
		case "TCPAbortOnTimeout":
			return FieldTCPAbortOnTimeout, true
		case "TCPAbortOnData":
			return FieldTCPAbortOnData, true
		case "TCPAbortOnClose":
			return FieldTCPAbortOnClose, true
		}
	case "Tcp":
		switch string(name) {
		case "CurrEstab":
			return FieldCurrEstab, true
		case "EstabResets":
			return FieldEstabResets, true
		case "OutRsts":
			return FieldOutRsts, true
		case "ActiveOpens":
			return FieldActiveOpens, true
		case "PassiveOpens":
			return FieldPassiveOpens, true
		case "AttemptFails":
			return FieldAttemptFails, true
		}
	}
	return 0, false
}

// ParseCounters parses the header/value line pairs of /proc/net/netstat or
// /proc/net/snmp:
//
//	TcpExt: SyncookiesSent SyncookiesRecv ...
//	TcpExt: 0 0 ...
//
// and stores the counters it knows into c, marking them in c.Present. It
// does not reset c first, so the two files can be parsed into the same
// Counters; Reader.ReadCounters resets it. Sections and columns it does not
// use are checked for shape (matching prefixes, equal column counts,
// integer values) and otherwise ignored. Blank lines between pairs are
// skipped. If a section appears twice, the later values win.
//
// On error c may hold some of the fields; the error is a *ParseError
// wrapping ErrSyntax, ErrFieldCount, ErrSectionMismatch, ErrTruncated or
// ErrValue.
func ParseCounters(data []byte, c *Counters) error {
	lineNo := 0
	for len(data) > 0 {
		var hdr, val []byte
		hdr, data = cutLine(data)
		lineNo++
		if isBlank(hdr) {
			continue
		}
		sec, names, ok := cutSection(hdr)
		if !ok {
			return parseErr(lineNo, ErrSyntax, "header line without a section prefix")
		}
		if len(data) == 0 {
			return parseErr(lineNo, ErrTruncated, "section %q has no value line", sec)
		}
		val, data = cutLine(data)
		lineNo++
		vsec, vals, ok := cutSection(val)
		if !ok {
			return parseErr(lineNo, ErrSyntax, "value line without a section prefix")
		}
		if !bytes.Equal(sec, vsec) {
			return parseErr(lineNo, ErrSectionMismatch, "header %q, values %q", sec, vsec)
		}
		for col := 1; ; col++ {
			var name, v []byte
			name, names = nextToken(names)
			v, vals = nextToken(vals)
			if len(name) == 0 && len(v) == 0 {
				break
			}
			if len(name) == 0 || len(v) == 0 {
				return parseErr(lineNo, ErrFieldCount, "section %q column %d", sec, col)
			}
			if f, known := lookupField(sec, name); known {
				u, ok := parseUint(v)
				if !ok {
					return parseErr(lineNo, ErrValue, "%s:%s = %q", sec, name, v)
				}
				c.set(f, u)
			} else if !isInt(v) {
				return parseErr(lineNo, ErrValue, "%s:%s = %q", sec, name, v)
			}
		}
	}
	return nil
}
