package procnet

import (
	"errors"
	"testing"
)

func TestParseSockstatRecorded(t *testing.T) {
	var s Sockstat
	if err := ParseSockstat(readTestdata(t, "thread-self/net/sockstat"), &s); err != nil {
		t.Fatal(err)
	}
	if err := ParseSockstat(readTestdata(t, "thread-self/net/sockstat6"), &s); err != nil {
		t.Fatal(err)
	}
	// Recorded: "TCP: inuse 1 orphan 0 tw 2 alloc 1 mem 0", "TCP6: inuse 0".
	want := Sockstat{TCPInUse: 1, TCPTimeWait: 2, TCPAlloc: 1, Present: 1<<numSockstatFields - 1}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
}

func TestParseSockstatCases(t *testing.T) {
	var s Sockstat
	in := "sockets: used 11\nTCP: inuse 5 orphan 2 tw 7 alloc 9 mem 100 extra 3\nUDP: inuse 0 mem 0\n"
	if err := ParseSockstat([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if s.TCPInUse != 5 || s.TCPOrphan != 2 || s.TCPTimeWait != 7 || s.TCPAlloc != 9 || s.TCPMemPages != 100 {
		t.Errorf("got %+v", s)
	}
	if s.Present.Has(SockstatTCP6InUse) {
		t.Error("TCP6 inuse present without sockstat6")
	}
	if v, ok := s.Get(SockstatTCPTimeWait); !ok || v != 7 {
		t.Errorf("Get(tw) = %d, %v", v, ok)
	}

	errs := []struct {
		in   string
		want error
		line int
	}{
		{"TCP: inuse\n", ErrFieldCount, 1},
		{"TCP: inuse 1 orphan\n", ErrFieldCount, 1},
		{"sockets: used 1\nTCP: inuse x\n", ErrValue, 2},
		{"TCP inuse 1\n", ErrSyntax, 1},
	}
	for _, tc := range errs {
		var s Sockstat
		err := ParseSockstat([]byte(tc.in), &s)
		var pe *ParseError
		if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Line != tc.line {
			t.Errorf("%q: err = %v, want %v line %d", tc.in, err, tc.want, tc.line)
		}
	}
}
