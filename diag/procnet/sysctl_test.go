package procnet

import (
	"errors"
	"slices"
	"testing"
)

func TestParseSysctlInt(t *testing.T) {
	good := map[string]int64{"4096\n": 4096, "0": 0, " -1 \n": -1, "9223372036854775807\n": 1<<63 - 1}
	for in, want := range good {
		got, err := ParseSysctlInt([]byte(in))
		if err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]error{"": ErrSyntax, "\n": ErrSyntax, "1 2\n": ErrSyntax, "x\n": ErrValue, "9223372036854775808": ErrValue, "+1": ErrValue}
	for in, want := range bad {
		if _, err := ParseSysctlInt([]byte(in)); !errors.Is(err, want) {
			t.Errorf("%q: err %v, want %v", in, err, want)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	got, err := ParsePortRange(readTestdata(t, "sys/net/ipv4/ip_local_port_range"))
	if err != nil || got != (PortRange{32768, 60999}) || got.Size() != 28232 {
		t.Errorf("recorded: %v, %v", got, err)
	}
	if got, err := ParsePortRange([]byte("1024 1024")); err != nil || got.Size() != 1 {
		t.Errorf("single port: %v %v", got, err)
	}
	bad := map[string]error{"": ErrFieldCount, "1\n": ErrFieldCount, "1 2 3\n": ErrFieldCount, "2 1\n": ErrValue, "1 65536\n": ErrValue, "a b": ErrValue}
	for in, want := range bad {
		if _, err := ParsePortRange([]byte(in)); !errors.Is(err, want) {
			t.Errorf("%q: err %v, want %v", in, err, want)
		}
	}
}

func TestParseReservedPorts(t *testing.T) {
	got, err := ParseReservedPorts(readTestdata(t, "sys/net/ipv4/ip_local_reserved_ports"), nil)
	if err != nil || len(got) != 0 {
		t.Errorf("recorded (empty): %v, %v", got, err)
	}
	got, err = ParseReservedPorts([]byte("9000-9010,8080, 9005-9020 ,100,101,50000\n"), nil)
	want := []PortRange{{100, 101}, {8080, 8080}, {9000, 9020}, {50000, 50000}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	// dst is reused.
	again, err := ParseReservedPorts([]byte("1"), got)
	if err != nil || len(again) != 1 || &again[0] != &got[0] {
		t.Errorf("dst not reused: %v %v", again, err)
	}
	bad := map[string]error{",": ErrSyntax, "1,,2": ErrSyntax, "5-4": ErrValue, "70000": ErrValue, "1-": ErrValue, "-1": ErrValue, "a": ErrValue}
	for in, want := range bad {
		if _, err := ParseReservedPorts([]byte(in), nil); !errors.Is(err, want) {
			t.Errorf("%q: err %v, want %v", in, err, want)
		}
	}
}

func TestUsablePorts(t *testing.T) {
	r := PortRange{32768, 60999}
	cases := []struct {
		reserved []PortRange
		want     int
	}{
		{nil, 28232},
		{[]PortRange{{8080, 8080}}, 28232},                   // outside
		{[]PortRange{{40000, 40009}}, 28222},                 // inside
		{[]PortRange{{30000, 32777}}, 28222},                 // overlaps the low end
		{[]PortRange{{60990, 65535}}, 28222},                 // overlaps the high end
		{[]PortRange{{40000, 40009}, {40005, 40014}}, 28217}, // overlapping entries count once
		{[]PortRange{{0, 65535}}, 0},                         // everything reserved
		{[]PortRange{{32768, 32768}, {60999, 60999}}, 28230}, // both edges
		{[]PortRange{{50000, 50000}, {50000, 50000}}, 28231}, // duplicates
	}
	for _, tc := range cases {
		if got := UsablePorts(r, tc.reserved); got != tc.want {
			t.Errorf("UsablePorts(%v, %v) = %d, want %d", r, tc.reserved, got, tc.want)
		}
	}
	s := Sysctls{PortRange: r, ReservedPorts: []PortRange{{40000, 40009}}}
	if _, ok := s.UsablePorts(); ok {
		t.Error("UsablePorts ok without the sysctls present")
	}
	s.Present = s.Present.Add(SysctlIPLocalPortRange).Add(SysctlIPLocalReservedPorts)
	if n, ok := s.UsablePorts(); !ok || n != 28222 {
		t.Errorf("Sysctls.UsablePorts = %d, %v", n, ok)
	}
}

func TestSysctlNames(t *testing.T) {
	ints := IntSysctls()
	if len(ints) != int(numSysctls)-2 {
		t.Errorf("IntSysctls = %v", ints)
	}
	for _, k := range ints {
		var s Sysctls
		*s.intPtr(k) = 5
		s.Present = s.Present.Add(k)
		if v, ok := s.Int(k); !ok || v != 5 {
			t.Errorf("%v: Int = %d %v", k, v, ok)
		}
	}
	if _, ok := (&Sysctls{Present: ^SysctlSet(0)}).Int(SysctlIPLocalPortRange); ok {
		t.Error("Int(port range) reported ok")
	}
	if SysctlSomaxconn.Name() != "net.core.somaxconn" || SysctlSomaxconn.Path() != "net/core/somaxconn" {
		t.Errorf("somaxconn: %q %q", SysctlSomaxconn.Name(), SysctlSomaxconn.Path())
	}
}
