package procnet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "proc", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCountersRecorded(t *testing.T) {
	var c Counters
	netstat := readTestdata(t, "thread-self/net/netstat")
	snmp := readTestdata(t, "thread-self/net/snmp")
	if err := ParseCounters(netstat, &c); err != nil {
		t.Fatalf("netstat: %v", err)
	}
	if err := ParseCounters(snmp, &c); err != nil {
		t.Fatalf("snmp: %v", err)
	}
	// The recording comes from a 6.x kernel, which has every field.
	for _, f := range Fields() {
		if !c.Present.Has(f) {
			t.Errorf("%v missing from recorded files", f)
		}
	}
	want, rerr := refParseCounters(string(netstat) + string(snmp))
	if rerr != nil {
		t.Fatalf("reference parser: %v", rerr)
	}
	for _, f := range Fields() {
		got, _ := c.Get(f)
		if got != want[f] {
			t.Errorf("%v = %d, reference %d", f, got, want[f])
		}
	}
	// Spot checks against values read by eye from the recording.
	if c.OutRsts != 2 || c.ActiveOpens != 36 || c.PassiveOpens != 2 {
		t.Errorf("Tcp OutRsts/ActiveOpens/PassiveOpens = %d/%d/%d, want 2/36/2", c.OutRsts, c.ActiveOpens, c.PassiveOpens)
	}
}

func TestParseCountersValues(t *testing.T) {
	in := "TcpExt: SyncookiesSent ListenOverflows Foo ListenDrops TCPReqQFullDoCookies\n" +
		"TcpExt: 7 18446744073709551615 -1 3 0\n" +
		"\n" +
		"Tcp: RtoAlgorithm MaxConn CurrEstab OutRsts\n" +
		"Tcp: 1 -1 42 9\n"
	var c Counters
	if err := ParseCounters([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c.SyncookiesSent != 7 || c.ListenOverflows != 1<<64-1 || c.ListenDrops != 3 || c.CurrEstab != 42 || c.OutRsts != 9 {
		t.Errorf("got %+v", c)
	}
	// A reported zero is present; a column the kernel did not print is not.
	if v, ok := c.Get(FieldTCPReqQFullDoCookies); !ok || v != 0 {
		t.Errorf("TCPReqQFullDoCookies = %d, %v; want 0, true", v, ok)
	}
	for _, f := range []Field{FieldTCPTimeWaitOverflow, FieldTCPReqQFullDrop, FieldEstabResets, FieldActiveOpens} {
		if _, ok := c.Get(f); ok {
			t.Errorf("%v reported present, input lacks it", f)
		}
	}
	// A Tcp column name under TcpExt is not the Tcp field.
	var d Counters
	if err := ParseCounters([]byte("TcpExt: CurrEstab\nTcpExt: 5\n"), &d); err != nil || d.Present != 0 {
		t.Errorf("TcpExt:CurrEstab: err %v, present %b", err, d.Present)
	}
}

func TestParseCountersOlderKernel(t *testing.T) {
	// Take the recording and drop one column from both lines, as a kernel
	// without that counter would print it.
	netstat := string(readTestdata(t, "thread-self/net/netstat"))
	lines := strings.Split(netstat, "\n")
	names, vals := strings.Fields(lines[0]), strings.Fields(lines[1])
	var keptN, keptV []string
	for i := range names {
		if names[i] != "TCPTimeWaitOverflow" {
			keptN, keptV = append(keptN, names[i]), append(keptV, vals[i])
		}
	}
	if len(keptN) != len(names)-1 {
		t.Fatal("recording lacks TCPTimeWaitOverflow")
	}
	lines[0], lines[1] = strings.Join(keptN, " "), strings.Join(keptV, " ")
	var c Counters
	if err := ParseCounters([]byte(strings.Join(lines, "\n")), &c); err != nil {
		t.Fatal(err)
	}
	if c.Present.Has(FieldTCPTimeWaitOverflow) {
		t.Error("TCPTimeWaitOverflow present after removing it")
	}
	if !c.Present.Has(FieldListenOverflows) || !c.Present.Has(FieldTCPAbortOnClose) {
		t.Error("other TcpExt fields lost")
	}
}

func TestParseCountersErrors(t *testing.T) {
	cases := []struct {
		name, in string
		want     error
		line     int
	}{
		{"value line short", "TcpExt: A B C\nTcpExt: 1 2\n", ErrFieldCount, 2},
		{"value line long", "TcpExt: A B\nTcpExt: 1 2 3\n", ErrFieldCount, 2},
		{"non-numeric known", "TcpExt: ListenDrops\nTcpExt: x\n", ErrValue, 2},
		{"non-numeric other", "Ip: Forwarding\nIp: two\n", ErrValue, 2},
		{"negative known", "Tcp: OutRsts\nTcp: -1\n", ErrValue, 2},
		{"overflow known", "Tcp: OutRsts\nTcp: 18446744073709551616\n", ErrValue, 2},
		{"section mismatch", "TcpExt: A\nTcp: 1\n", ErrSectionMismatch, 2},
		{"truncated", "Tcp: A B\nTcp: 1 2\nTcpExt: A\n", ErrTruncated, 3},
		{"no prefix", "hello world\n", ErrSyntax, 1},
		{"value without prefix", "Tcp: A\n1\n", ErrSyntax, 2},
		{"blank value line", "Tcp: A\n\nTcp: 1\n", ErrSyntax, 2},
		{"empty section name", ": A\n: 1\n", ErrSyntax, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Counters
			err := ParseCounters([]byte(tc.in), &c)
			var pe *ParseError
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Line != tc.line {
				t.Fatalf("err = %v, want %v at line %d", err, tc.want, tc.line)
			}
			if cerr := checkAgainstRef(err, func() *refErr { _, r := refParseCounters(tc.in); return r }()); cerr != nil {
				t.Error(cerr)
			}
		})
	}
}

func TestParseCountersEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "  \n\t\n"} {
		var c Counters
		if err := ParseCounters([]byte(in), &c); err != nil || c.Present != 0 {
			t.Errorf("%q: err %v, present %b", in, err, c.Present)
		}
	}
}

func TestFieldNames(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Fields() {
		if seen[f.String()] {
			t.Errorf("duplicate %v", f)
		}
		seen[f.String()] = true
		in := f.Section() + ": " + f.Name() + "\n" + f.Section() + ": 123\n"
		var c Counters
		if err := ParseCounters([]byte(in), &c); err != nil {
			t.Fatal(err)
		}
		if v, ok := c.Get(f); !ok || v != 123 || c.Present != FieldSet(0).Add(f) {
			t.Errorf("%v: got %d %v present %b", f, v, ok, c.Present)
		}
	}
	if len(seen) != 17 {
		t.Errorf("%d fields, want 17", len(seen))
	}
}
