//go:build linux

package diag_test

import (
	"context"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

var updateTestdata = flag.Bool("update-testdata", false, "record real dumps into testdata/ as fuzz seeds")

type rawSock struct {
	fd    int
	port  uint16
	inode uint64
}

func openTCP(t *testing.T, fam int) int {
	t.Helper()
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func loopback(fam int, port uint16) unix.Sockaddr {
	if fam == unix.AF_INET6 {
		return &unix.SockaddrInet6{Port: int(port), Addr: [16]byte{15: 1}}
	}
	return &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}}
}

func describe(t *testing.T, fd int) rawSock {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	var port int
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	return rawSock{fd: fd, port: uint16(port), inode: st.Ino}
}

// TestKernelDump checks the decoder against the real kernel: a listener
// with backlog 7 and two connections never accepted must show as LISTEN with
// accept queue 2 of 7, with the listener's inode; the client sockets as
// ESTABLISHED towards it. Both request formats must agree.
func TestKernelDump(t *testing.T) {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		l := openTCP(t, fam)
		if err := unix.Bind(l, loopback(fam, 0)); err != nil {
			t.Skipf("no loopback for family %d here: %v", fam, err)
		}
		if err := unix.Listen(l, 7); err != nil {
			t.Fatal(err)
		}
		ls := describe(t, l)
		var clients []rawSock
		for range 2 {
			c := openTCP(t, fam)
			if err := unix.Connect(c, loopback(fam, ls.port)); err != nil {
				t.Fatalf("connect: %v", err)
			}
			clients = append(clients, describe(t, c))
		}

		wantFam := diag.AFInet
		if fam == unix.AF_INET6 {
			wantFam = diag.AFInet6
		}
		for _, m := range []diag.Method{diag.MethodLegacy, diag.MethodV2} {
			c, err := diag.Dial(nil)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			var sawListener bool
			var sawClients, sawServerSide int
			st, err := c.Dump(diag.Request{Method: m}, func(s *diag.Socket) error {
				switch {
				case s.State == diag.Listen && s.SrcPort == ls.port && s.Family == wantFam:
					sawListener = true
					if s.RQueue != 2 || s.WQueue != 7 || uint64(s.Inode) != ls.inode || !s.Src.IsLoopback() {
						t.Errorf("%v: listener %+v: want queue 2/7, inode %d, loopback", m, *s, ls.inode)
					}
				case s.State == diag.Established && s.DstPort == ls.port && s.Family == wantFam:
					for _, cl := range clients {
						if cl.port == s.SrcPort {
							sawClients++
							if uint64(s.Inode) != cl.inode || s.Cookie == 0 {
								t.Errorf("%v: client %+v: want inode %d and a cookie", m, *s, cl.inode)
							}
						}
					}
				case s.State == diag.Established && s.SrcPort == ls.port && s.Family == wantFam:
					sawServerSide++ // in the accept queue: no descriptor, no inode
					if s.Inode != 0 {
						t.Errorf("%v: unaccepted socket has inode %d", m, s.Inode)
					}
				}
				return nil
			})
			c.Close()
			if err != nil {
				t.Fatalf("%v dump: %v", m, err)
			}
			if !sawListener || sawClients != 2 || sawServerSide != 2 {
				t.Errorf("%v family %v: listener %v, clients %d, server side %d; want true, 2, 2", m, wantFam, sawListener, sawClients, sawServerSide)
			}
			if st.Sockets < 5 || st.CPU < 0 || st.Wall <= 0 {
				t.Errorf("%v: stats %+v", m, st)
			}
		}
	}
}

// TestKernelMethodsAgree checks that one legacy walk and two v2 dumps see
// the same sockets in a namespace at rest (the test's own loopback sockets).
func TestKernelMethodsAgree(t *testing.T) {
	l := openTCP(t, unix.AF_INET6)
	if err := unix.Bind(l, loopback(unix.AF_INET6, 0)); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	if err := unix.Listen(l, 16); err != nil {
		t.Fatal(err)
	}
	count := func(m diag.Method) map[uint64]diag.State {
		c, err := diag.Dial(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := map[uint64]diag.State{}
		if _, err := c.Dump(diag.Request{Method: m, States: diag.MaskOf(diag.Listen)}, func(s *diag.Socket) error {
			got[s.Cookie] = s.State
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	a, b := count(diag.MethodLegacy), count(diag.MethodV2)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("legacy saw %d listeners, v2 %d", len(a), len(b))
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			t.Errorf("listener cookie %#x seen by legacy only", k)
		}
	}
}

// TestRecordDumps records real dumps as fuzz seeds when run with
// -update-testdata. Sequence numbers are rewritten to 1, the first sequence
// number diagtest.Transport uses.
func TestRecordDumps(t *testing.T) {
	if !*updateTestdata {
		t.Skip("records testdata only with -update-testdata")
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		l := openTCP(t, fam)
		if err := unix.Bind(l, loopback(fam, 0)); err != nil {
			t.Fatal(err)
		}
		unix.Listen(l, 4)
		c := openTCP(t, fam)
		unix.Connect(c, loopback(fam, describe(t, l).port))
	}
	for _, m := range []diag.Method{diag.MethodLegacy, diag.MethodV2} {
		for _, ext := range []uint8{0, 1 << (diag.AttrInfo - 1)} {
			tr, err := diag.DialTransport(nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := &diagtest.Recorder{Transport: tr}
			c := diag.NewConn(rec)
			if _, err := c.Dump(diag.Request{Method: m, Extensions: ext, Family: familyFor(m)}, func(*diag.Socket) error { return nil }); err != nil {
				t.Fatal(err)
			}
			c.Close()
			for _, d := range rec.Datagrams {
				normalizeSeq(d)
			}
			name := filepath.Join("testdata", "dump-"+m.String()+map[bool]string{true: "-info", false: ""}[ext != 0]+".bin")
			if err := os.WriteFile(name, diagtest.MarshalDatagrams(rec.Datagrams), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func familyFor(m diag.Method) diag.Family {
	if m == diag.MethodV2 {
		return diag.AFInet6
	}
	return diag.AFUnspec
}

func normalizeSeq(d []byte) {
	for len(d) >= 16 {
		l := int(binary.NativeEndian.Uint32(d[:4]))
		binary.NativeEndian.PutUint32(d[8:12], 1)
		l = (l + 3) &^ 3
		if l < 16 || l > len(d) {
			return
		}
		d = d[l:]
	}
}

// TestKernelDumpOtherNamespace dials sock_diag by a namespace handle from
// outside the namespace: the dump shows that namespace's sockets only.
func TestKernelDumpOtherNamespace(t *testing.T) {
	ns := fixture.NewNetnsPrefix(t, "tsdg-")
	set, err := ns.Listen(context.Background(), fixture.IPv6, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := diag.Dial(&diag.DialOptions{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatalf("Dial into %s: %v", ns.Name(), err)
	}
	defer c.Close()
	want := map[uint16]bool{}
	for _, ap := range set.Listeners() {
		want[ap.Port()] = true
	}
	var got []uint16
	if _, err := c.Dump(diag.Request{}, func(s *diag.Socket) error {
		got = append(got, s.SrcPort)
		if s.State != diag.Listen || s.Family != diag.AFInet6 || !want[s.SrcPort] {
			t.Errorf("unexpected socket in %s: %+v", ns.Name(), *s)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("dump of %s saw %d sockets %v, want its %d listeners", ns.Name(), len(got), got, len(want))
	}
}
