//go:build linux

package diag_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// TestKernelTCPInfo checks the tcp_info decoder against the real kernel: a
// loopback connection that exchanged one message and then idled for 300 ms
// reports, on both ends, ESTABLISHED, no timer, nothing unacknowledged, and
// last received times of at least 300 ms (the kernel counts in jiffies) and
// well under the test's length. With -update-testdata it records the
// server end's tcp_info as a fuzz seed.
func TestKernelTCPInfo(t *testing.T) {
	l := openTCP(t, unix.AF_INET)
	if err := unix.Bind(l, loopback(unix.AF_INET, 0)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(l, 4); err != nil {
		t.Fatal(err)
	}
	port := describe(t, l).port
	c := openTCP(t, unix.AF_INET)
	if err := unix.Connect(c, loopback(unix.AF_INET, port)); err != nil {
		t.Fatal(err)
	}
	srv, _, err := unix.Accept(l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(srv) })
	if _, err := unix.Write(c, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := unix.Read(srv, buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(300 * time.Millisecond)

	conn, err := diag.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seen := 0
	_, err = conn.Dump(diag.Request{Family: diag.AFInet, States: diag.MaskOf(diag.Established), Extensions: 1 << (diag.AttrInfo - 1)}, func(s *diag.Socket) error {
		if s.SrcPort != port && s.DstPort != port {
			return nil
		}
		seen++
		var ti diag.TCPInfo
		ok, err := s.TCPInfo(&ti)
		if err != nil || !ok {
			t.Errorf("socket %v -> %v: tcp_info %v, %v", s.SrcPort, s.DstPort, ok, err)
			return nil
		}
		limit := uint32(time.Since(start).Milliseconds()) + 1000
		if ti.State != diag.Established || s.Timer != diag.TimerNone || ti.Unacked != 0 ||
			ti.LastRecv() < 290 || ti.LastRecv() > limit || ti.Len < 104 || !ti.HasRTT || ti.RTT == 0 {
			t.Errorf("socket %v -> %v, timer %v: %+v", s.SrcPort, s.DstPort, s.Timer, ti)
		}
		if s.SrcPort == port && *updateTestdata {
			p, _, _ := diag.FindAttr(s.Attrs, diag.AttrInfo)
			if err := os.WriteFile(filepath.Join("testdata", "tcpinfo-established.bin"), p, 0o644); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != 2 {
		t.Fatalf("saw %d ends of the connection, want 2", seen)
	}
}
