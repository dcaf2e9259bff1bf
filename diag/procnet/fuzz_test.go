package procnet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// seedFiles adds the recorded files below testdata/proc to the corpus.
func seedFiles(f *testing.F, rels ...string) {
	for _, rel := range rels {
		b, err := os.ReadFile(filepath.Join("testdata", "proc", filepath.FromSlash(rel)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// renderCounters writes the present fields of c in the kernel's format.
func renderCounters(c *Counters) []byte {
	var b bytes.Buffer
	for _, sec := range []string{"TcpExt", "Tcp"} {
		var names, vals []string
		for _, fl := range Fields() {
			if v, ok := c.Get(fl); ok && fl.Section() == sec {
				names = append(names, fl.Name())
				vals = append(vals, strconv.FormatUint(v, 10))
			}
		}
		if len(names) > 0 {
			fmt.Fprintf(&b, "%s: %s\n%s: %s\n", sec, strings.Join(names, " "), sec, strings.Join(vals, " "))
		}
	}
	return b.Bytes()
}

func FuzzParseCounters(f *testing.F) {
	seedFiles(f, "thread-self/net/netstat", "thread-self/net/snmp")
	for _, s := range []string{
		"",
		"\n",
		"TcpExt: ListenOverflows ListenDrops\nTcpExt: 1 2\n",
		"TcpExt: ListenOverflows ListenDrops\nTcpExt: 1 2 3\n",
		"TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n",
		"TcpExt: ListenOverflows\nTcpExt: 1",
		"TcpExt: ListenOverflows\n",
		"TcpExt: ListenOverflows\nTcp: 1\n",
		"Tcp: OutRsts\nTcp: 18446744073709551615\n",
		"Tcp: OutRsts\nTcp: 18446744073709551616\n",
		"Tcp: MaxConn OutRsts\nTcp: -1 5\n",
		"Tcp: OutRsts\nTcp: -5\n",
		"Tcp: OutRsts\nTcp: x\n",
		"Tcp:\tOutRsts \r\nTcp:  7\t\r\n",
		"Tcp: OutRsts\n\nTcp: 1\n",
		": A\n: 1\n",
		"no colon here\n",
		"Tcp: OutRsts OutRsts\nTcp: 1 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Counters
		err := ParseCounters(data, &c)
		want, rerr := refParseCounters(string(data))
		if cerr := checkAgainstRef(err, rerr); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			return
		}
		for _, fl := range Fields() {
			v, ok := c.Get(fl)
			rv, rok := want[fl]
			if ok != rok || v != rv {
				t.Fatalf("%v: parser %d,%v; reference %d,%v", fl, v, ok, rv, rok)
			}
		}
		// Writing the result back out and parsing it again is lossless.
		var again Counters
		if err := ParseCounters(renderCounters(&c), &again); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if again != c {
			t.Fatalf("round trip: %+v != %+v", again, c)
		}
	})
}

func FuzzParseSockstat(f *testing.F) {
	seedFiles(f, "thread-self/net/sockstat", "thread-self/net/sockstat6")
	for _, s := range []string{
		"",
		"TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 248\n",
		"TCP: inuse 1 orphan\n",
		"TCP: inuse -1\n",
		"TCP: inuse x\n",
		"TCP6: inuse 3\nTCP: inuse 9223372036854775807\n",
		"TCP: inuse 9223372036854775808\n",
		"sockets used 3\n",
		"TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 248 future 7\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Sockstat
		err := ParseSockstat(data, &s)
		want, rerr := refParseSockstat(string(data))
		if cerr := checkAgainstRef(err, rerr); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			return
		}
		var b strings.Builder
		for fl := SockstatField(0); fl < numSockstatFields; fl++ {
			v, ok := s.Get(fl)
			rv, rok := want[fl]
			if ok != rok || v != rv {
				t.Fatalf("field %d: parser %d,%v; reference %d,%v", fl, v, ok, rv, rok)
			}
			if ok {
				sec, key := "TCP", [...]string{"inuse", "orphan", "tw", "alloc", "mem", "inuse"}[fl]
				if fl == SockstatTCP6InUse {
					sec = "TCP6"
				}
				fmt.Fprintf(&b, "%s: %s %d\n", sec, key, v)
			}
		}
		var again Sockstat
		if err := ParseSockstat([]byte(b.String()), &again); err != nil || again != s {
			t.Fatalf("round trip: %+v (%v) != %+v", again, err, s)
		}
	})
}

func FuzzParseSysctlInt(f *testing.F) {
	seedFiles(f, "sys/net/core/somaxconn", "sys/net/ipv4/tcp_tw_reuse", "sys/net/ipv4/tcp_max_tw_buckets",
		"sys/net/ipv4/tcp_fin_timeout", "sys/net/ipv4/tcp_syncookies", "sys/net/ipv4/tcp_max_orphans",
		"sys/net/ipv4/tcp_max_syn_backlog", "sys/net/ipv4/tcp_keepalive_time", "sys/net/ipv4/tcp_keepalive_intvl",
		"sys/net/ipv4/tcp_keepalive_probes")
	for _, s := range []string{"", "\n", "-1\n", "1 2\n", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "+3", "0x10", " 7\t\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseSysctlInt(data)
		trimmed := strings.Trim(string(data), " \t\r\n")
		ref, rerr := strconv.ParseInt(trimmed, 10, 64)
		refOK := rerr == nil && !strings.HasPrefix(trimmed, "+")
		if (err == nil) != refOK {
			t.Fatalf("%q: parser (%d, %v), strconv (%d, %v)", data, n, err, ref, rerr)
		}
		if err == nil && n != ref {
			t.Fatalf("%q: parser %d, strconv %d", data, n, ref)
		}
		var pe *ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *ParseError", err)
		}
	})
}

func FuzzParsePortRange(f *testing.F) {
	seedFiles(f, "sys/net/ipv4/ip_local_port_range")
	for _, s := range []string{"", "1", "1 2 3", "2 1", "0 65535", "0 65536", "1024\t1024\n", "a b", "-1 5"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParsePortRange(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if r.Low > r.High || r.Size() < 1 || r.Size() > 65536 {
			t.Fatalf("bad range %+v", r)
		}
		toks := refFields(strings.Trim(string(data), " \t\r\n"))
		if len(toks) != 2 {
			t.Fatalf("%q parsed as %+v from %d tokens", data, r, len(toks))
		}
		l, err1 := strconv.ParseUint(toks[0], 10, 16)
		h, err2 := strconv.ParseUint(toks[1], 10, 16)
		if err1 != nil || err2 != nil || l != uint64(r.Low) || h != uint64(r.High) {
			t.Fatalf("%q parsed as %+v, strconv says %d %d", data, r, l, h)
		}
		again, err := ParsePortRange(fmt.Appendf(nil, "%d\t%d\n", r.Low, r.High))
		if err != nil || again != r {
			t.Fatalf("round trip %+v: %+v, %v", r, again, err)
		}
		if UsablePorts(r, nil) != r.Size() {
			t.Fatalf("UsablePorts(%v, nil) = %d", r, UsablePorts(r, nil))
		}
	})
}

func FuzzParseReservedPorts(f *testing.F) {
	rec, err := os.ReadFile(filepath.Join("testdata", "proc", "sys", "net", "ipv4", "ip_local_reserved_ports"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec, uint16(32768), uint16(60999))
	for _, s := range []string{"", "\n", "8080", "8080,9000-9010", "9000-9010,9005-9020,100", "1,,2", ",", "5-4", "70000", "1-", "-1", "0-65535", " 1 , 2-3 ", "1-2-3", "32768-60999"} {
		f.Add([]byte(s), uint16(32768), uint16(60999))
	}
	f.Fuzz(func(t *testing.T, data []byte, lo, hi uint16) {
		rs, err := ParseReservedPorts(data, nil)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || len(rs) != 0 {
				t.Fatalf("error %v (result %v)", err, rs)
			}
			return
		}
		// Reference: mark each listed port in a bitmap.
		var want [65536]bool
		for item := range strings.SplitSeq(strings.Trim(string(data), " \t\r\n"), ",") {
			item = strings.Trim(item, " \t\r\n")
			if item == "" {
				continue // only the empty list gets here
			}
			a, b, isRange := strings.Cut(item, "-")
			l, err1 := strconv.ParseUint(a, 10, 16)
			h := l
			var err2 error
			if isRange {
				h, err2 = strconv.ParseUint(b, 10, 16)
			}
			if err1 != nil || err2 != nil || l > h {
				t.Fatalf("parser accepted %q, item %q", data, item)
			}
			for p := l; p <= h; p++ {
				want[p] = true
			}
		}
		var got [65536]bool
		for i, r := range rs {
			if r.Low > r.High {
				t.Fatalf("range %v runs backwards", r)
			}
			if i > 0 && int(r.Low) <= int(rs[i-1].High)+1 {
				t.Fatalf("ranges %v and %v overlap or touch", rs[i-1], r)
			}
			for p := int(r.Low); p <= int(r.High); p++ {
				got[p] = true
			}
		}
		if got != want {
			t.Fatalf("%q: ranges %v do not cover the listed ports", data, rs)
		}
		// Formatting as the kernel does and parsing again gives the same.
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = r.String()
		}
		again, err := ParseReservedPorts([]byte(strings.Join(parts, ",")+"\n"), nil)
		if err != nil || !slices.Equal(again, rs) {
			t.Fatalf("round trip %v: %v, %v", rs, again, err)
		}
		// UsablePorts against a brute-force count.
		r := PortRange{min(lo, hi), max(lo, hi)}
		n := 0
		for p := int(r.Low); p <= int(r.High); p++ {
			if !want[p] {
				n++
			}
		}
		if u := UsablePorts(r, rs); u != n {
			t.Fatalf("UsablePorts(%v, %v) = %d, brute force %d", r, rs, u, n)
		}
	})
}

// dirent encodes one linux_dirent64 record as getdents64 would.
func dirent(name string) []byte {
	reclen := (direntHeaderLen + len(name) + 1 + 7) &^ 7
	b := make([]byte, reclen)
	binary.NativeEndian.PutUint64(b[0:], 1)
	binary.NativeEndian.PutUint64(b[8:], 2)
	binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
	b[18] = 10 // DT_LNK
	copy(b[direntHeaderLen:], name)
	return b
}

func FuzzNextDirent(f *testing.F) {
	f.Add(slices.Concat(dirent("."), dirent(".."), dirent("3"), dirent("12345")))
	f.Add(dirent("self"))
	f.Add([]byte{})
	f.Add(make([]byte, 18))
	f.Add(dirent("x")[:20])
	f.Add(append(dirent("1"), 0, 0, 0))
	f.Fuzz(func(t *testing.T, buf []byte) {
		n := 0
		for len(buf) > 0 {
			name, rest, err := nextDirent(buf)
			if err != nil {
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrSyntax) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(rest) > len(buf)-direntHeaderLen || bytes.IndexByte(name, 0) >= 0 {
				t.Fatalf("record of %d bytes: name %q, %d left", len(buf), name, len(rest))
			}
			// Re-encoding the name gives a record that decodes to it.
			if len(name) < 1<<15 {
				again, tail, err := nextDirent(dirent(string(name)))
				if err != nil || !bytes.Equal(again, name) || len(tail) != 0 {
					t.Fatalf("re-encode %q: %q %v", name, again, err)
				}
			}
			buf = rest
			n++
		}
	})
}

func FuzzParseSocketLink(f *testing.F) {
	for _, s := range []string{"socket:[12345]", "socket:[]", "socket:[18446744073709551615]", "socket:[18446744073709551616]", "pipe:[1]", "socket:[1", "socket:1]", "anon_inode:[eventpoll]", "/dev/null", "socket:[-1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ino, ok := parseSocketLink([]byte(s))
		inner, found := strings.CutPrefix(s, "socket:[")
		inner, found2 := strings.CutSuffix(inner, "]")
		ref, err := strconv.ParseUint(inner, 10, 64)
		refOK := found && found2 && err == nil && !strings.HasPrefix(inner, "+")
		if ok != refOK || (ok && ino != ref) {
			t.Fatalf("%q: parser %d,%v; reference %d,%v", s, ino, ok, ref, refOK)
		}
		if ok {
			if back, ok := parseSocketLink(fmt.Appendf(nil, "socket:[%d]", ino)); !ok || back != ino {
				t.Fatalf("round trip %d: %d %v", ino, back, ok)
			}
		}
		pid, ok := parsePID([]byte(s))
		if ok && (strconv.Itoa(pid) != s || pid <= 0) {
			t.Fatalf("parsePID(%q) = %d", s, pid)
		}
		if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 1<<31 && strconv.Itoa(n) == s && !ok {
			t.Fatalf("parsePID rejected %q", s)
		}
	})
}
